"""Opening a shared SQLite file in WAL mode: the switch waits out another process's lock."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from medrefine.sqlite import connect


class _Locked(sqlite3.Connection):
    """A connection whose first ``busy`` WAL switches find the file locked, as SQLite answers
    at once (no busy wait) when two processes switch a new file together."""

    busy = 2
    tries = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "PRAGMA journal_mode=WAL":
            type(self).tries += 1
            if type(self).tries <= type(self).busy:
                raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)


def test_the_wal_switch_is_tried_again_while_the_file_is_locked(tmp_path: Path) -> None:
    _Locked.tries, _Locked.busy = 0, 2
    db = connect(tmp_path / "a.sqlite3", 5.0, factory=_Locked)
    assert _Locked.tries == 3
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_locked_past_the_timeout_is_an_error(tmp_path: Path) -> None:
    _Locked.tries, _Locked.busy = 0, 10**9
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        connect(tmp_path / "a.sqlite3", 0.2, factory=_Locked)
    assert _Locked.tries > 1


def _open(path: str) -> str:
    try:
        db = connect(Path(path), 10.0)
        db.executescript("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY);")
        db.close()
        return ""
    except sqlite3.Error as exc:
        return str(exc)


def test_processes_opening_a_new_file_together_all_get_it(tmp_path: Path) -> None:
    # without the retry, about one start in five of six such processes failed "locked"
    paths = [str(tmp_path / f"{i}.sqlite3") for i in range(3)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        for path in paths:
            assert pool.map(_open, [path] * 6) == [""] * 6
