"""Deadlines and lost answers keep the proto's promise: a refine whose deadline passes does not
commit; a refine the server committed but whose answer the client never got (connection cut,
server killed) is found by the client's next call, which mirrors the server's mask and reports
that the refine took effect."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine.client import Reconciled, RemoteSession, RemoteUnavailableError, stub
from medrefine.engine.budget.cache import FeatureCache
from medrefine.serve import convert
from medrefine.serve.journal import Journal
from medrefine.v1 import refine_pb2 as pb

from .conftest import marks_2d, marks_3d
from .replicas import Relay, Replica, after_a_cut, replicas

pytestmark = pytest.mark.slow  # real server processes

T = TypeVar("T")


def _again(call: Callable[[], T]) -> T:
    """``call``, again if it went out on a connection the relay had just cut."""
    return after_a_cut(call)[0]


def _server_mask(target: str, session_id: str) -> np.ndarray:
    """The session's whole mask as the server holds it (GetMask on a channel of its own)."""
    with grpc.insecure_channel(target) as channel:
        chunks = list(stub(channel).GetMask(pb.GetMaskRequest(session_id=session_id), timeout=60))
    header = chunks[0].header
    delta = pb.MaskDelta(
        box_start=[0] * len(header.shape),
        box_stop=header.shape,
        bits_per_label=header.bits_per_label,
        data=b"".join(c.data for c in chunks[1:]),
    )
    return convert.apply_delta(None, delta, header.shape)


def test_a_refine_whose_deadline_passed_while_it_waited_does_not_commit(
    tmp_path: Path, hippo: np.ndarray
) -> None:
    """The second refine waits for the first (calls on a session are serialised) past its
    deadline; its click is already satisfied, so it would take no gradient step at all."""
    args = ["--models", "hippocampus-unet3d", "--journal-dir", str(tmp_path / "journal")]
    server = Replica(tmp_path, "server", [*args, "--log-level", "WARNING"])
    try:
        started = threading.Event()
        with RemoteSession(server.target, "hippocampus-unet3d", session_id="late-1") as remote:
            remote.set_image(np.tile(hippo, (3, 2, 2)))  # (102, 94, 80): a refine takes 0.1-0.5 s
            for mark in marks_3d():
                remote.add(mark)
            first = threading.Thread(target=remote.refine, args=(lambda p: started.set(),))
            first.start()
            assert started.wait(120)
            with grpc.insecure_channel(server.target) as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
                click = pb.Mark(click=pb.Click(label=0, point=[0, 0, 0], radius=0))
                late = pb.RefineRequest(session_id="late-1", marks=[click])
                # The first refine has at least 19 of its 20 steps (4 ms or more each) to go and
                # the late one waits for them: its 50 ms pass before it can commit.
                with pytest.raises(grpc.RpcError) as exc:
                    list(stub(channel).Refine(late, timeout=0.05))
                assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            first.join()
            assert [i.kind for i in remote.history] == ["refine"]  # only the first one
            assert remote.sync() is None  # nothing was unknown to this client
            assert len(remote.pending) == 0 and remote.mask_version == 2
        events = [kind for kind, _ in Journal(tmp_path / "journal").events("late-1")]
        assert events == ["add", "add", "add", "refine", "add"]  # the click stays queued
    finally:
        server.kill()


def _wait_for_refine(journal: Path, session_id: str) -> None:
    deadline = time.monotonic() + 120
    while "refine" not in [kind for kind, _ in Journal(journal).events(session_id)]:
        assert time.monotonic() < deadline, "the server never committed the refine"
        time.sleep(0.02)


@pytest.mark.parametrize("loss", ["connection cut", "server killed"])
def test_a_lost_answer_is_reconciled_by_the_next_call(
    tmp_path: Path, nuclei: np.ndarray, loss: str
) -> None:
    journal = tmp_path / "journal"
    args = ["--models", "nuclei-unet2d", "--journal-dir", str(journal), "--log-level", "WARNING"]
    marks = marks_2d()
    with replicas(tmp_path, 2, args) as (a, b):
        relay = Relay(a.target)
        remote = RemoteSession(relay.target, "nuclei-unet2d", session_id="lost-1")
        try:
            before = remote.set_image(nuclei)
            remote.add(marks[0])
            relay.hold_replies()
            failure: list[BaseException] = []

            def refine() -> None:
                try:
                    remote.refine()
                except BaseException as exc:
                    failure.append(exc)

            worker = threading.Thread(target=refine)
            worker.start()
            _wait_for_refine(journal, "lost-1")  # committed; its answer is held back
            if loss == "server killed":
                a.kill()
                relay.route(b.target)
            relay.cut()
            worker.join(60)
            assert not worker.is_alive()
            if failure:
                assert len(failure) == 1 and isinstance(failure[0], RemoteUnavailableError)
                assert remote.mask_version == 1  # the client still shows the network's mask
                _again(lambda: remote.add(marks[1]))  # the next call settles the lost refine
                assert remote.reconciled == Reconciled("refine", took_effect=True, version=2)
            else:
                # now and then the refine returns normally instead: the call, which never got
                # an answer, went out again on the new connection (gRPC's transparent retry,
                # as far as can be seen), and the server there (A again after a cut, B
                # rebuilt from the journal after a kill) found the refine done and answered
                # with its mask; nothing is left unknown
                assert remote.reconciled is None and remote.mask_version == 2
                _again(lambda: remote.add(marks[1]))
            server = b if loss == "server killed" else a
            np.testing.assert_array_equal(remote.mask, _server_mask(server.target, "lost-1"))
            local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
            local.set_image(nuclei)
            local.add(marks[0])
            np.testing.assert_array_equal(remote.mask, local.refine().mask)
            assert not np.array_equal(remote.mask, before)
            assert remote.pending == (marks[1],)
            local.add(marks[1])
            np.testing.assert_array_equal(remote.refine().mask, local.refine().mask)
        finally:
            remote.close()
            relay.close()
