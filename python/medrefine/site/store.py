"""Where a site's images and versions live: in memory, or in one SQLite file.

A *version* is an immutable record: the accepted images it holds (ids), the site's class names,
its fitted head and the held-out check's result. Every change (an accept, a rollback, a reset)
appends a version; the newest is the site's state. Images and heads are stored as bytes with
their SHA-256, checked on every read, so a damaged file is refused by name instead of training
a head on garbage.

The SQLite store serves several processes on one file: an accept appends its image and its
version in one ``BEGIN IMMEDIATE`` transaction (concurrent accepts wait for each other, none is
lost), and the file is in WAL mode so readers never block a writer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from medrefine.errors import InputError, NotFoundError
from medrefine.sqlite import connect as wal_connect

#: The layout of a site's storage; a file of another format is refused by name.
FORMAT = 1


@dataclass(frozen=True)
class VersionRecord:
    """One stored version (see the module docstring).

    Attributes:
        version: its number (1, 2, ...; newer is larger).
        kind: ``"accept"``, ``"rollback"`` or ``"reset"``.
        images: ids of the accepted images it holds, oldest first.
        class_names: the site's classes at this version, by label.
        created_at: seconds since the epoch.
        head: the fitted head's state (``torch.save`` bytes), or None before a fit or when
            there is nothing to fit.
        validation: the held-out check as JSON (:meth:`Validation.to_json`), or None.
    """

    version: int
    kind: str
    images: tuple[int, ...]
    class_names: tuple[str, ...]
    created_at: float
    head: bytes | None = None
    validation: dict[str, object] | None = None


#: How an append describes its version from the newest one and the new image's id (if any):
#: ``(kind, image ids, class names)``.
Make = Callable[[VersionRecord | None, int | None], tuple[str, tuple[int, ...], tuple[str, ...]]]


class SiteStore(Protocol):
    """What a :class:`~medrefine.site.Site` needs of its storage."""

    where: str

    def meta(self) -> dict[str, str]: ...

    def init(self, meta: dict[str, str]) -> dict[str, str]: ...

    def append(self, image: bytes | None, make: Make) -> VersionRecord: ...

    def set_head(self, version: int, head: bytes | None, validation: dict[str, object]) -> None: ...

    def latest(self) -> VersionRecord | None: ...

    def get(self, version: int) -> VersionRecord: ...

    def versions(self) -> list[VersionRecord]: ...

    def image(self, image_id: int) -> bytes: ...

    def purge(self, keep: int) -> None: ...

    def delete(self) -> None: ...


def checksum(data: bytes) -> str:
    """SHA-256 of ``data``, hex: what a store keeps beside every head and image."""
    return hashlib.sha256(data).hexdigest()


def version_from_row(row: tuple[Any, ...], damaged: Callable[[str], InputError]) -> VersionRecord:
    """A :class:`VersionRecord` from a stored row (version, kind, images JSON, class names JSON,
    created, head bytes, head checksum, validation JSON), in either database.

    Raises:
        InputError: ``damaged(what)``, the head does not match its checksum.
    """
    version, kind, images, names, created, head, head_sha, validation = row
    if head is not None and checksum(bytes(head)) != head_sha:
        raise damaged(f"the head of version {version}")
    return VersionRecord(
        int(version),
        str(kind),
        tuple(json.loads(str(images))),
        tuple(json.loads(str(names))),
        float(created),
        None if head is None else bytes(head),
        None if validation is None else json.loads(str(validation)),
    )


class MemoryStore:
    """A site kept in this process only (:class:`~medrefine.site.Site` ``(model)``)."""

    where = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, str] = {}
        self._images: dict[int, bytes] = {}
        self._versions: dict[int, VersionRecord] = {}

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._meta)

    def init(self, meta: dict[str, str]) -> dict[str, str]:
        """Set ``meta`` if none is stored; returns what is stored."""
        with self._lock:
            if not self._meta:
                self._meta = dict(meta)
            return dict(self._meta)

    def append(
        self,
        image: bytes | None,
        make: Make,
    ) -> VersionRecord:
        """Store ``image`` (if any) and the version ``make(latest, image_id)`` describes
        (its kind, image ids, class names), atomically; returns the new version."""
        with self._lock:
            image_id = None
            if image is not None:
                image_id = max(self._images, default=0) + 1
                self._images[image_id] = image
            latest = self._versions[max(self._versions)] if self._versions else None
            kind, images, names = make(latest, image_id)
            record = VersionRecord(max(self._versions, default=0) + 1, kind, images, names,
                                   time.time())  # fmt: skip
            self._versions[record.version] = record
            return record

    def set_head(self, version: int, head: bytes | None, validation: dict[str, object]) -> None:
        with self._lock:
            self._versions[version] = replace(
                self._versions[version], head=head, validation=validation
            )

    def latest(self) -> VersionRecord | None:
        with self._lock:
            return self._versions[max(self._versions)] if self._versions else None

    def get(self, version: int) -> VersionRecord:
        with self._lock:
            if version not in self._versions:
                raise NotFoundError(f"site version {version} is not kept")
            return self._versions[version]

    def versions(self) -> list[VersionRecord]:
        with self._lock:
            return [self._versions[v] for v in sorted(self._versions)]

    def image(self, image_id: int) -> bytes:
        with self._lock:
            return self._images[image_id]

    def purge(self, keep: int) -> None:
        with self._lock:
            for v in sorted(self._versions)[:-keep]:
                del self._versions[v]
            used = {i for r in self._versions.values() for i in r.images}
            for i in [i for i in self._images if i not in used]:
                del self._images[i]

    def delete(self) -> None:
        with self._lock:
            self._meta, self._images, self._versions = {}, {}, {}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, images TEXT NOT NULL,
    class_names TEXT NOT NULL, created_at REAL NOT NULL, head BLOB, head_sha256 TEXT,
    validation TEXT);
"""


class SqliteStore:
    """A site in one SQLite file, shared by every process that opens it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._local = threading.local()
        try:
            with self._connect() as db:
                db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not a site file: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = wal_connect(self.path, 60.0, isolation_level=None)  # busy timeout 60 s
            self._local.db = db
        return db

    def _damaged(self, what: str) -> InputError:
        return InputError(f"site file {self.path} is damaged: {what} does not match its checksum")

    def meta(self) -> dict[str, str]:
        rows = self._connect().execute("SELECT key, value FROM meta").fetchall()
        return {str(k): str(v) for k, v in rows}

    def init(self, meta: dict[str, str]) -> dict[str, str]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            if not db.execute("SELECT 1 FROM meta LIMIT 1").fetchone():
                db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.meta()

    def _record(self, row: tuple[Any, ...]) -> VersionRecord:
        return version_from_row(row, self._damaged)

    def append(
        self,
        image: bytes | None,
        make: Make,
    ) -> VersionRecord:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes
        try:
            image_id = None
            if image is not None:
                cur = db.execute(
                    "INSERT INTO images (data, sha256) VALUES (?, ?)", (image, checksum(image))
                )
                image_id = int(cur.lastrowid or 0)
            row = db.execute(f"{_SELECT} ORDER BY version DESC LIMIT 1").fetchone()
            kind, images, names = make(None if row is None else self._record(row), image_id)
            now = time.time()
            cur = db.execute(
                "INSERT INTO versions (kind, images, class_names, created_at) VALUES (?, ?, ?, ?)",
                (kind, json.dumps(list(images)), json.dumps(list(names)), now),
            )
            version = int(cur.lastrowid or 0)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return VersionRecord(version, kind, images, names, now)

    def set_head(self, version: int, head: bytes | None, validation: dict[str, object]) -> None:
        self._connect().execute(
            "UPDATE versions SET head = ?, head_sha256 = ?, validation = ? WHERE version = ?",
            (head, None if head is None else checksum(head), json.dumps(validation), version),
        )

    def latest(self) -> VersionRecord | None:
        row = self._connect().execute(f"{_SELECT} ORDER BY version DESC LIMIT 1").fetchone()
        return None if row is None else self._record(row)

    def get(self, version: int) -> VersionRecord:
        row = self._connect().execute(f"{_SELECT} WHERE version = ?", (version,)).fetchone()
        if row is None:
            raise NotFoundError(f"site version {version} is not kept in {self.path}")
        return self._record(row)

    def versions(self) -> list[VersionRecord]:
        rows = self._connect().execute(f"{_SELECT} ORDER BY version").fetchall()
        return [self._record(r) for r in rows]

    def image(self, image_id: int) -> bytes:
        row = (
            self._connect()
            .execute("SELECT data, sha256 FROM images WHERE id = ?", (image_id,))
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"accepted image {image_id} is not kept in {self.path}")
        data = bytes(row[0])
        if checksum(data) != row[1]:
            raise self._damaged(f"accepted image {image_id}")
        return data

    def purge(self, keep: int) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM versions WHERE version NOT IN "
                "(SELECT version FROM versions ORDER BY version DESC LIMIT ?)",
                (keep,),
            )
            used = {
                i for (images,) in db.execute("SELECT images FROM versions")
                for i in json.loads(images)
            }  # fmt: skip
            stored = [i for (i,) in db.execute("SELECT id FROM images")]
            db.executemany(
                "DELETE FROM images WHERE id = ?", [(i,) for i in stored if i not in used]
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def delete(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


_SELECT = (
    "SELECT version, kind, images, class_names, created_at, head, head_sha256, validation "
    "FROM versions"
)
