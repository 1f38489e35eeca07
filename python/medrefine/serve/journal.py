"""The journal: every accepted interaction of every session, in SQLite, before it is acknowledged.

One file, ``journal.sqlite3`` in the journal directory. ``sessions`` holds how a session was opened
(model, image digest and geometry, preset, the site version it started from); ``events`` its
interactions in order: ``add`` (a serialised ``medrefine.v1.Mark``), ``refine``, ``undo``,
``redo``, ``reset``, ``add_class`` (the name, UTF-8). Replaying the events on the same image and
model, from the same site head, gives the same mask, since refinement is deterministic. WAL mode:
a committed event survives the process being killed; several processes may open the same file
(SQLite locks it), which is how a session moves to another replica. No pixel data is stored.

Each event has a sequence number per session (1, 2, ...). A server's copy of a session knows the
number it reflects: every call compares it with :meth:`Journal.head`, and every append expects it
(:meth:`Journal.append` with ``expect``), so a copy another process has moved on is noticed and
never written from (:class:`ConflictError`). :class:`SessionJournal` is what a server needs of a
journal; :mod:`medrefine.serve.pg_journal` keeps the same in PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from medrefine.sqlite import connect as wal_connect

EventKind = Literal["add", "refine", "undo", "redo", "reset", "add_class"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    geometry TEXT NOT NULL,
    preset INTEGER NOT NULL,
    created REAL NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    site_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""


@dataclass(frozen=True)
class SessionRecord:
    """How a journaled session was opened.

    Attributes:
        id: the session id. model: model name. digest: SHA-256 (hex) of the image's raw bytes.
        geometry: ``{"shape": [...], "dtype": "<f4", "spacing": [...], "affine": [...]}``.
        preset: the ``medrefine.v1.Preset`` value. closed: CloseSession was called.
        site_version: the version of the model's site the session started from (0: none).
    """

    id: str
    model: str
    digest: str
    geometry: dict[str, object]
    preset: int
    closed: bool
    site_version: int = 0


@dataclass(frozen=True)
class Head:
    """Where a session's journal stands: ``seq`` events so far; ``closed`` by CloseSession."""

    seq: int
    closed: bool


class ConflictError(Exception):
    """Another process got there first: an append that expected the session at one sequence
    number found it had appended since (the caller's copy is stale), or a new session's id was
    recorded by another process meanwhile (``new``)."""

    def __init__(self, session_id: str, expect: int | None, *, new: bool = False) -> None:
        what = "was created" if new else f"moved past event {expect}"
        super().__init__(f"session {session_id!r} {what} in another process")


class SessionJournal(Protocol):
    """What a server needs of its journal (:class:`Journal` in SQLite, or
    :class:`medrefine.serve.pg_journal.PgJournal` in PostgreSQL). Every method is thread-safe
    and every write is committed when it returns."""

    def open_session(self, record: SessionRecord) -> None: ...

    def append(
        self, session_id: str, kind: EventKind, payload: bytes = b"", expect: int | None = None
    ) -> int: ...

    def head(self, session_id: str) -> Head | None: ...

    def close_session(self, session_id: str) -> None: ...

    def record(self, session_id: str) -> SessionRecord | None: ...

    def events(self, session_id: str) -> list[tuple[EventKind, bytes]]: ...

    def close(self) -> None: ...


class Journal:
    """Thread-safe append-only log of sessions and their interactions (SQLite)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "journal.sqlite3"
        self._lock = threading.Lock()
        self._db = wal_connect(self.path, 30.0, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
            if "site_version" not in columns:  # a journal written before sites
                try:
                    self._db.execute(
                        "ALTER TABLE sessions ADD COLUMN site_version INTEGER NOT NULL DEFAULT 0"
                    )
                except sqlite3.OperationalError as exc:  # another process added it just now
                    if "duplicate column" not in str(exc):
                        raise
            self._db.commit()

    def open_session(self, record: SessionRecord) -> None:
        """Record a new session (replaces nothing: the id must be new).

        Raises:
            ConflictError: another process recorded a session of this id first.
        """
        try:
            self._insert_session(record)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(record.id, None, new=True) from exc

    def _insert_session(self, record: SessionRecord) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO sessions (id, model, digest, geometry, preset, created, site_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        """Append one interaction; committed when this returns. Returns its sequence number
        (1, 2, ...: the number of the session's events so far).

        Args:
            expect: the sequence number of the session's last event as the caller knows it
                (None: append after whatever is there). Another process that appended since
                makes this raise :class:`ConflictError` and appends nothing.
        """
        with self._lock:
            try:
                with self._db:
                    if expect is None:
                        self._db.execute(
                            "INSERT INTO events (session_id, seq, kind, payload) VALUES (?, "
                            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE session_id = ?), "
                            "?, ?)",
                            (session_id, session_id, kind, payload),
                        )
                    else:
                        self._db.execute(
                            "INSERT INTO events (session_id, seq, kind, payload) "
                            "VALUES (?, ?, ?, ?)",
                            (session_id, expect + 1, kind, payload),
                        )
                    row = self._db.execute(
                        "SELECT MAX(seq) FROM events WHERE session_id = ?", (session_id,)
                    ).fetchone()
            except sqlite3.IntegrityError as exc:
                raise ConflictError(session_id, expect) from exc
        return int(row[0])

    def head(self, session_id: str) -> Head | None:
        """The session's last sequence number and closed flag (None: never journaled)."""
        with self._lock:
            row = self._db.execute(
                "SELECT closed, (SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?) "
                "FROM sessions WHERE id = ?",
                (session_id, session_id),
            ).fetchone()
        return None if row is None else Head(int(row[1]), bool(row[0]))

    def close_session(self, session_id: str) -> None:
        """Mark a session closed: it cannot be reopened."""
        with self._lock, self._db:
            self._db.execute("UPDATE sessions SET closed = 1 WHERE id = ?", (session_id,))

    def record(self, session_id: str) -> SessionRecord | None:
        """The session's open record, or None if the journal never saw it."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, model, digest, geometry, preset, closed, site_version FROM sessions "
                "WHERE id = ?",
                (session_id,),
            ).fetchone()
        if row is None:
            return None
        return SessionRecord(
            row[0], row[1], row[2], json.loads(row[3]), row[4], bool(row[5]), int(row[6])
        )

    def events(self, session_id: str) -> list[tuple[EventKind, bytes]]:
        """The session's interactions, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, payload FROM events WHERE session_id = ? ORDER BY seq",
                (session_id,),
            ).fetchall()
        return [(kind, bytes(payload)) for kind, payload in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
