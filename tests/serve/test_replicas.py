"""One session, one truth, on replicas sharing a journal (SQLite, or PostgreSQL): a server whose
copy of a session another server has moved on notices it at its next call, reloads (the client
reopens by id), and never answers from the stale copy; a replay gives the last acknowledged mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medrefine as mr
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache

from .conftest import marks_2d
from .replicas import Relay, after_a_cut, replicas

pytestmark = pytest.mark.slow  # real server processes

MODEL = "nuclei-unet2d"


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the replicas journal: a directory, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "journal")
    url: str = request.getfixturevalue("pg_url")
    return url


def _args(journal: str) -> list[str]:
    flag = "--journal" if journal.startswith("postgresql://") else "--journal-dir"
    return ["--models", MODEL, flag, journal, "--log-level", "WARNING"]


def _local(image: np.ndarray) -> mr.Session:
    session = mr.Session(mr.load_model(MODEL), cache=FeatureCache())
    session.set_image(image)
    return session


def test_a_stale_replica_notices_and_carries_on_from_the_journal(
    tmp_path: Path, journal: str, nuclei: np.ndarray
) -> None:
    marks = marks_2d()
    local = _local(nuclei)
    with replicas(tmp_path, 2, _args(journal)) as (a, b):
        on_a = RemoteSession(a.target, MODEL, session_id="case-split")
        on_b = RemoteSession(b.target, MODEL, session_id="case-split")
        try:
            on_a.set_image(nuclei)
            on_a.add(marks[0])
            on_a.refine()
            np.testing.assert_array_equal(on_b.set_image(nuclei), on_a.mask)  # B replays
            assert on_b.resumed
            on_b.add(marks[1])
            on_b.refine()  # through B: A's live copy is now one refine behind
            on_a.add(marks[2])
            refined = on_a.refine().mask
            for mark in marks[:3]:
                local.add(mark)
                if mark is not marks[2]:
                    local.refine()
            np.testing.assert_array_equal(refined, local.refine().mask)
            assert [i.kind for i in on_a.history] == ["refine"] * 3
            np.testing.assert_array_equal(on_b.undo(), local.undo())  # B is stale in turn
            np.testing.assert_array_equal(on_a.redo(), local.redo())
            np.testing.assert_array_equal(on_b.get_mask(), local.mask)
            assert on_a.mask_version == on_b.mask_version == 6
        finally:
            on_a.close()
            on_b.close()


def test_three_replicas_behind_a_balancer_that_switches_mid_session(
    tmp_path: Path, journal: str, nuclei: np.ndarray
) -> None:
    """One client through a relay that moves it A -> B -> A -> C; a second client then opens
    the id on C and gets the client's last answer."""
    marks = marks_2d()
    local = _local(nuclei)
    with replicas(tmp_path, 3, _args(journal)) as servers:
        relay = Relay(servers[0].target)
        remote = RemoteSession(relay.target, MODEL, session_id="case-ring")
        try:
            remote.set_image(nuclei)
            answers = []
            for step, server in enumerate([servers[0], servers[1], servers[0], servers[2]]):
                relay.route(server.target)
                relay.cut()
                _, failed = after_a_cut(lambda step=step: remote.add(marks[step]))
                if failed:  # sent on the cut connection: the server never saw it
                    assert remote.reconciled is not None
                    assert not remote.reconciled.took_effect
                local.add(marks[step])
                answers.append(remote.refine().mask)
                np.testing.assert_array_equal(answers[-1], local.refine().mask)
            label = remote.add_class("lesion")
            assert label == local.add_class("lesion")
            np.testing.assert_array_equal(remote.undo(), local.undo())
            last = remote.mask
            with RemoteSession(servers[2].target, MODEL, session_id="case-ring") as other:
                np.testing.assert_array_equal(other.set_image(nuclei), last)
                assert other.class_names == local.class_names
                assert len(other.history) == len(local.history) == 4
        finally:
            remote.close()
            relay.close()
