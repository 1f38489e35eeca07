"""Two servers on one journal that create the same new session id at once: the second is told
the session now lives elsewhere (reopen it by id), never an untyped INTERNAL."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrefine.serve.journal import ConflictError, Journal, SessionJournal, SessionRecord
from medrefine.serve.journals import open_journal

from .pg import pg_url  # noqa: F401  (fixture)


def _record(session_id: str) -> SessionRecord:
    return SessionRecord(session_id, "nuclei-unet2d", "ab" * 32, {"shape": [8, 8]}, 0, False)


def _second_open_conflicts(first: SessionJournal, second: SessionJournal) -> None:
    first.open_session(_record("same-id"))
    with pytest.raises(ConflictError, match="'same-id' was created in another process"):
        second.open_session(_record("same-id"))
    record = second.record("same-id")
    assert record is not None and record.model == "nuclei-unet2d"  # the first one stands
    second.open_session(_record("other-id"))  # the journal is still usable
    assert first.record("other-id") is not None


def test_sqlite_journal_refuses_a_second_session_of_one_id(tmp_path: Path) -> None:
    _second_open_conflicts(Journal(tmp_path), Journal(tmp_path))


def test_postgresql_journal_refuses_a_second_session_of_one_id(pg_url: str) -> None:  # noqa: F811
    first, second = open_journal(pg_url), open_journal(pg_url)
    assert first is not None and second is not None
    try:
        _second_open_conflicts(first, second)
    finally:
        first.close()
        second.close()
