"""One PostgreSQL connection per journal or site store, opened on first use and again after it
was lost (database restarted, network), used by one thread at a time under its lock.

Needs the ``postgres`` extra (``pip install "medrefine[postgres]"``: psycopg 3).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medrefine.errors import InputError, first_line


class Connection:
    """The autocommit connection to ``url`` and the lock its users hold while they use it.

    Args:
        url: ``postgresql://[user[:password]@]host[:port]/database[?options]`` (libpq's URL).
        needs: what needs the database, for the message when psycopg is missing
            (``"a postgresql:// journal"``).
        what: the database as messages name it (``"the journal database"``).

    Attributes:
        psycopg: the driver module (its ``OperationalError``, ``errors``).
        lock: held by the caller around :meth:`get` and every use of its connection.

    Raises:
        InputError: psycopg is not installed.
    """

    def __init__(self, url: str, needs: str, what: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise InputError(f'{needs} needs psycopg 3: pip install "medrefine[postgres]"') from exc
        self.psycopg: Any = psycopg
        self.lock = threading.Lock()
        self._url, self._what = url, what
        self._db: Any = None

    def get(self) -> Any:
        """The connection, opened again if it was lost; the caller holds :attr:`lock`.

        Raises:
            InputError: the database cannot be reached (the message names it).
        """
        if self._db is None or self._db.closed:
            try:
                self._db = self.psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            except self.psycopg.OperationalError as exc:
                raise InputError(f"cannot reach {self._what}: {first_line(exc, 2000)}") from exc
        return self._db

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (autocommitted) under :attr:`lock` and return its rows; a
        connection that failed (``OperationalError``) is closed, to be opened again next time.
        """
        with self.lock:
            db = self.get()
            try:
                cur = db.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
            except self.psycopg.OperationalError:
                db.close()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """The connection inside one transaction (committed on leaving, rolled back on an
        exception), :attr:`lock` held throughout."""
        with self.lock:
            db = self.get()
            with db.transaction():
                yield db

    def close(self) -> None:
        """Close the connection (the next :meth:`get` opens a new one)."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __del__(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None and not db.closed:
            db.close()
