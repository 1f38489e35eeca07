"""A fresh PostgreSQL schema per test, in the database ``MEDREFINE_TEST_POSTGRES`` names.

``.ci/run`` installs PostgreSQL from the distribution, starts it and sets the variable. Without
it the PostgreSQL tests skip, except under ``CI=true``, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from .replicas import PG_ENV


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires the PostgreSQL tests to run")
    pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A ``postgresql://`` URL whose ``search_path`` is a new, empty schema (dropped after)."""
    base = os.environ.get(PG_ENV)
    if not base:
        _unavailable(f"{PG_ENV} is not set (a postgresql:// URL of a test database)")
    assert base is not None
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (the postgres extra)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        _unavailable(f"cannot reach {PG_ENV}: {str(exc).splitlines()[0]}")
    joiner = "&" if "?" in base else "?"
    yield f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")
