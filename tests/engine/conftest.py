"""Fixtures of the engine's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medrefine.engine.head.verdict import VERDICTS


@pytest.fixture()
def fresh_verdicts() -> Iterator[None]:
    """No head-check verdict kept from other tests, and none of this test's left behind (tests
    that count or patch the checks)."""
    VERDICTS.clear()
    yield
    VERDICTS.clear()
