"""The journal in PostgreSQL: replicas on several machines share one database.

``medrefine serve --journal postgresql://user:password@host/db`` journals here instead of a SQLite
file; the tables (``medrefine_sessions``, ``medrefine_events``) are created on first use, in the
schema the connection's ``search_path`` names first. What is stored is what the SQLite journal
stores (:mod:`medrefine.serve.journal`): how each session was opened and its interactions in
order, no pixels. Every write is one autocommitted statement, committed when the method returns;
an append that expects the session at sequence number ``n`` inserts ``(session, n + 1)``, which
the primary key lets exactly one process do (:class:`~medrefine.serve.journal.ConflictError` for
the others).

Needs the ``postgres`` extra (``pip install "medrefine[postgres]"``: psycopg 3). One connection
per journal, used by one thread at a time; a connection lost (database restarted, network) is
opened again on the next call.
"""

from __future__ import annotations

import json
import time

from medrefine.pg import Connection
from medrefine.serve.journal import ConflictError, EventKind, Head, SessionRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS medrefine_sessions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    geometry TEXT NOT NULL,
    preset INTEGER NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    closed BOOLEAN NOT NULL DEFAULT FALSE,
    site_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS medrefine_events (
    session_id TEXT NOT NULL REFERENCES medrefine_sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""
#: Serialises the schema's creation between processes (CREATE TABLE IF NOT EXISTS races).
_SCHEMA_LOCK = 0x6D6564726566  # "medref"


class PgJournal:
    """Thread-safe append-only log of sessions and their interactions (PostgreSQL).

    Args:
        url: ``postgresql://[user[:password]@]host[:port]/database[?options]`` (libpq's URL).
    """

    def __init__(self, url: str) -> None:
        self._conn = Connection(url, "a postgresql:// journal", "the journal database")
        with self._conn.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA)

    def open_session(self, record: SessionRecord) -> None:
        """Record a new session (replaces nothing: the id must be new).

        Raises:
            ConflictError: another process recorded a session of this id first.
        """
        try:
            self._insert_session(record)
        except self._conn.psycopg.errors.UniqueViolation as exc:
            raise ConflictError(record.id, None, new=True) from exc

    def _insert_session(self, record: SessionRecord) -> None:
        self._conn.rows(
            "INSERT INTO medrefine_sessions "
            "(id, model, digest, geometry, preset, created, site_version) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                record.id,
                record.model,
                record.digest,
                json.dumps(record.geometry),
                record.preset,
                time.time(),
                record.site_version,
            ),
        )

    def append(
        self, session_id: str, kind: EventKind, payload: bytes = b"", expect: int | None = None
    ) -> int:
        """Append one interaction; its sequence number (see :meth:`Journal.append`)."""
        try:
            if expect is None:
                rows = self._conn.rows(
                    "INSERT INTO medrefine_events (session_id, seq, kind, payload) VALUES (%s, "
                    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM medrefine_events "
                    "WHERE session_id = %s), %s, %s) RETURNING seq",
                    (session_id, session_id, kind, payload),
                )
            else:
                rows = self._conn.rows(
                    "INSERT INTO medrefine_events (session_id, seq, kind, payload) "
                    "VALUES (%s, %s, %s, %s) RETURNING seq",
                    (session_id, expect + 1, kind, payload),
                )
        except self._conn.psycopg.errors.UniqueViolation as exc:
            raise ConflictError(session_id, expect) from exc
        return int(rows[0][0])

    def head(self, session_id: str) -> Head | None:
        """The session's last sequence number and closed flag (None: never journaled)."""
        rows = self._conn.rows(
            "SELECT closed, (SELECT COALESCE(MAX(seq), 0) FROM medrefine_events "
            "WHERE session_id = %s) FROM medrefine_sessions WHERE id = %s",
            (session_id, session_id),
        )
        return Head(int(rows[0][1]), bool(rows[0][0])) if rows else None

    def close_session(self, session_id: str) -> None:
        """Mark a session closed: it cannot be reopened."""
        self._conn.rows("UPDATE medrefine_sessions SET closed = TRUE WHERE id = %s", (session_id,))

    def record(self, session_id: str) -> SessionRecord | None:
        """The session's open record, or None if the journal never saw it."""
        rows = self._conn.rows(
            "SELECT id, model, digest, geometry, preset, closed, site_version "
            "FROM medrefine_sessions WHERE id = %s",
            (session_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return SessionRecord(r[0], r[1], r[2], json.loads(r[3]), r[4], bool(r[5]), int(r[6]))

    def events(self, session_id: str) -> list[tuple[EventKind, bytes]]:
        """The session's interactions, oldest first."""
        rows = self._conn.rows(
            "SELECT kind, payload FROM medrefine_events WHERE session_id = %s ORDER BY seq",
            (session_id,),
        )
        return [(kind, bytes(payload)) for kind, payload in rows]

    def close(self) -> None:
        self._conn.close()
