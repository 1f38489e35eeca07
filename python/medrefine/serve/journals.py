"""Choosing the journal a server writes to from its address (``medrefine serve --journal``)."""

from __future__ import annotations

from pathlib import Path

from medrefine.serve.journal import Journal, SessionJournal
from medrefine.serve.pg_journal import PgJournal

#: URL prefixes that name a PostgreSQL database.
PG_SCHEMES = ("postgresql://", "postgres://")


def open_journal(where: str | Path | None) -> SessionJournal | None:
    """The journal at ``where``: a ``postgresql://`` URL (:class:`PgJournal`), a directory
    (SQLite, ``journal.sqlite3`` in it), or None (nothing journaled)."""
    if where is None:
        return None
    if isinstance(where, str) and where.startswith(PG_SCHEMES):
        return PgJournal(where)
    return Journal(Path(where))
