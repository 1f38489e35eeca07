"""Opening a SQLite file that several processes share in WAL mode (the journal, a site).

Switching a file to WAL takes an exclusive lock, and SQLite answers "database is locked" at once,
without waiting out the busy timeout, when another process holds the file in that moment (two
replicas starting together on a new journal). :func:`connect` retries the switch until its
timeout instead.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any


def connect(path: Path, timeout: float, **kwargs: Any) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode whose statements wait up to ``timeout`` seconds for
    another process's lock (``kwargs`` go to :func:`sqlite3.connect`).

    Raises:
        sqlite3.OperationalError: the file stayed locked for ``timeout`` seconds, or another
            error of SQLite's.
    """
    db = sqlite3.connect(path, timeout=timeout, **kwargs)
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.05)
