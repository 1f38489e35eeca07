"""A site in PostgreSQL: one database serves the replicas of several machines.

``mr.Site.open("postgresql://user:password@host/db", model)`` keeps the site here instead of a
SQLite file. The tables (``medrefine_site_meta``, ``medrefine_site_images``,
``medrefine_site_versions``) live in the schema the connection's ``search_path`` names first, one
site per schema. What is stored, and its checks, are the SQLite store's
(:mod:`medrefine.site.store`): images and heads as bytes with their SHA-256, checked on every
read. An append runs in one transaction holding the versions table's lock, so concurrent
accepts from any number of processes wait for each other and none is lost.

Needs the ``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

import json
import time
from typing import Any

from medrefine.errors import InputError, NotFoundError
from medrefine.pg import Connection
from medrefine.site.store import Make, VersionRecord, checksum, version_from_row

_SCHEMA = """
CREATE TABLE IF NOT EXISTS medrefine_site_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS medrefine_site_images (
    id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS medrefine_site_versions (
    version BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, images TEXT NOT NULL,
    class_names TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, head BYTEA,
    head_sha256 TEXT, validation TEXT);
"""
_SELECT = (
    "SELECT version, kind, images, class_names, created_at, head, head_sha256, validation "
    "FROM medrefine_site_versions"
)
_SCHEMA_LOCK = 0x6D7273697465  # "mrsite": serialises the tables' creation between processes


class PgStore:
    """A site in a PostgreSQL database, shared by every process that opens it.

    Args:
        url: ``postgresql://[user[:password]@]host[:port]/database[?options]``.
    """

    def __init__(self, url: str) -> None:
        host = url.split("://", 1)[1].rsplit("@", 1)[-1]
        self.where = f"postgresql://{host}"
        self._conn = Connection(url, "a postgresql:// site", f"the site database {self.where}")
        with self._conn.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA)

    def _damaged(self, what: str) -> InputError:
        return InputError(f"site {self.where} is damaged: {what} does not match its checksum")

    def _record(self, row: tuple[Any, ...]) -> VersionRecord:
        return version_from_row(row, self._damaged)

    def meta(self) -> dict[str, str]:
        return {
            str(k): str(v) for k, v in self._conn.rows("SELECT key, value FROM medrefine_site_meta")
        }

    def init(self, meta: dict[str, str]) -> dict[str, str]:
        """Set ``meta`` if none is stored; returns what is stored."""
        with self._conn.transaction() as db:
            db.execute("LOCK TABLE medrefine_site_meta IN EXCLUSIVE MODE")
            if db.execute("SELECT 1 FROM medrefine_site_meta LIMIT 1").fetchone() is None:
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO medrefine_site_meta VALUES (%s, %s)", sorted(meta.items())
                    )
        return self.meta()

    def append(self, image: bytes | None, make: Make) -> VersionRecord:
        """Store ``image`` (if any) and the version ``make(latest, image_id)`` describes, in one
        transaction that holds the versions table (one writer at a time, across processes)."""
        with self._conn.transaction() as db:
            db.execute("LOCK TABLE medrefine_site_versions IN EXCLUSIVE MODE")
            image_id = None
            if image is not None:
                row = db.execute(
                    "INSERT INTO medrefine_site_images (data, sha256) VALUES (%s, %s) RETURNING id",
                    (image, checksum(image)),
                ).fetchone()
                image_id = int(row[0])
            row = db.execute(f"{_SELECT} ORDER BY version DESC LIMIT 1").fetchone()
            kind, images, names = make(None if row is None else self._record(row), image_id)
            now = time.time()
            version = db.execute(
                "INSERT INTO medrefine_site_versions (kind, images, class_names, created_at) "
                "VALUES (%s, %s, %s, %s) RETURNING version",
                (kind, json.dumps(list(images)), json.dumps(list(names)), now),
            ).fetchone()[0]
        return VersionRecord(int(version), kind, images, names, now)

    def set_head(self, version: int, head: bytes | None, validation: dict[str, object]) -> None:
        self._conn.rows(
            "UPDATE medrefine_site_versions SET head = %s, head_sha256 = %s, validation = %s "
            "WHERE version = %s",
            (head, None if head is None else checksum(head), json.dumps(validation), version),
        )

    def latest(self) -> VersionRecord | None:
        rows = self._conn.rows(f"{_SELECT} ORDER BY version DESC LIMIT 1")
        return self._record(rows[0]) if rows else None

    def get(self, version: int) -> VersionRecord:
        rows = self._conn.rows(f"{_SELECT} WHERE version = %s", (version,))
        if not rows:
            raise NotFoundError(f"site version {version} is not kept in {self.where}")
        return self._record(rows[0])

    def versions(self) -> list[VersionRecord]:
        return [self._record(r) for r in self._conn.rows(f"{_SELECT} ORDER BY version")]

    def image(self, image_id: int) -> bytes:
        rows = self._conn.rows(
            "SELECT data, sha256 FROM medrefine_site_images WHERE id = %s", (image_id,)
        )
        if not rows:
            raise NotFoundError(f"accepted image {image_id} is not kept in {self.where}")
        data = bytes(rows[0][0])
        if checksum(data) != rows[0][1]:
            raise self._damaged(f"accepted image {image_id}")
        return data

    def purge(self, keep: int) -> None:
        with self._conn.transaction() as db:
            db.execute("LOCK TABLE medrefine_site_versions IN EXCLUSIVE MODE")
            db.execute(
                "DELETE FROM medrefine_site_versions WHERE version NOT IN "
                "(SELECT version FROM medrefine_site_versions ORDER BY version DESC LIMIT %s)",
                (keep,),
            )
            used = {
                i
                for (images,) in db.execute("SELECT images FROM medrefine_site_versions")
                for i in json.loads(images)
            }
            stored = [i for (i,) in db.execute("SELECT id FROM medrefine_site_images")]
            gone = [(i,) for i in stored if i not in used]
            if gone:
                with db.cursor() as cur:
                    cur.executemany("DELETE FROM medrefine_site_images WHERE id = %s", gone)

    def delete(self) -> None:
        """Drop the site's tables (every version and image) and close the connection."""
        with self._conn.transaction() as db:
            db.execute(
                "DROP TABLE IF EXISTS medrefine_site_versions, medrefine_site_images, "
                "medrefine_site_meta"
            )
        self._conn.close()
