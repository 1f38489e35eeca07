"""Every failure reaches the client as its status code and medrefine error type, with a message
naming the problem; deadlines and cancels leave the session as it was."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine import errors
from medrefine.client import RemoteError, RemoteSession
from medrefine.serve import ServerConfig
from medrefine.types import RefineProgress
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

from .conftest import Served, marks_2d, marks_3d, start


def _code(exc: pytest.ExceptionInfo[Exception]) -> grpc.StatusCode:
    assert isinstance(exc.value, RemoteError)
    return exc.value.code


def test_invalid_argument_names_the_problem(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        with pytest.raises(errors.InputError, match="label 7") as exc:
            remote.add(mr.Click(7, (5, 5)))
        assert _code(exc) is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(errors.InputError, match=r"dimension|coordinates|outside|out of") as exc:
            remote.add(mr.Click(1, (5, 5, 5)))
        with pytest.raises(errors.InputError, match="class name") as exc:
            remote.add_class("nucleus")
        assert remote.pending == ()
    with RemoteSession(served.target, "nuclei-unet2d") as bad:
        with pytest.raises(errors.InputError, match="spatial axes") as exc:
            bad.set_image(np.zeros((2, 3, 4, 5), np.float32))
        assert _code(exc) is grpc.StatusCode.INVALID_ARGUMENT


def test_not_found(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "no-such-model") as remote:
        with pytest.raises(errors.NotFoundError, match="no-such-model") as exc:
            remote.set_image(nuclei)
        assert _code(exc) is grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.RefinerStub(channel)
        with pytest.raises(grpc.RpcError) as raw:
            stub.Undo(pb.SessionRequest(session_id="never-opened"))
        assert raw.value.code() is grpc.StatusCode.NOT_FOUND
        assert "never-opened" in raw.value.details()


def test_failed_precondition(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        with pytest.raises(errors.StateError, match="set_image"):
            remote.refine()  # caught by the client: no session yet
        remote.set_image(nuclei)
        with pytest.raises(errors.StateError, match="nothing to undo") as exc:
            remote.undo()
        assert _code(exc) is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(errors.StateError, match="no marks") as exc:
            remote.refine()
        assert _code(exc) is grpc.StatusCode.FAILED_PRECONDITION


def test_resource_exhausted(nuclei: np.ndarray) -> None:
    config = ServerConfig(
        models=("nuclei-unet2d",), max_sessions=1, max_image_bytes=40_000, max_marks_per_call=2
    )
    s = start(config)
    try:
        small = np.ascontiguousarray(nuclei[:, :64, :64])  # 12288 bytes
        with RemoteSession(s.target, "nuclei-unet2d") as remote:
            with pytest.raises(errors.ResourceError, match=r"49152 bytes .* 40000") as exc:
                remote.set_image(np.zeros((3, 128, 128), np.uint8))
            assert _code(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
        with RemoteSession(s.target, "nuclei-unet2d") as one:
            one.set_image(small)
            with RemoteSession(s.target, "nuclei-unet2d") as two:
                with pytest.raises(errors.ResourceError, match="1 sessions") as exc:
                    two.set_image(np.ascontiguousarray(small[:, ::-1]))
                assert _code(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
            with grpc.insecure_channel(s.target) as channel:
                stub = pb_grpc.RefinerStub(channel)
                marks = [pb.Mark(click=pb.Click(label=1, point=[3, 3], radius=1))] * 3
                with pytest.raises(grpc.RpcError) as raw:
                    stub.AddMarks(pb.AddMarksRequest(session_id=one.session_id, marks=marks))
                assert raw.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "3 marks" in raw.value.details()
    finally:
        s.server.stop(grace=0)


def test_deadline_stops_a_refine_and_leaves_the_session(served: Served, hippo: np.ndarray) -> None:
    with RemoteSession(served.target, "hippocampus-unet3d") as remote:
        before = remote.set_image(hippo)
        for mark in marks_3d():
            remote.add(mark)
        remote.timeout = 0.02  # far shorter than a 3D refine
        with pytest.raises(errors.CancelledError) as exc:
            remote.refine()
        assert _code(exc) is grpc.StatusCode.DEADLINE_EXCEEDED
        remote.timeout = None
        assert remote.history == ()  # waits for the stopped refine: calls are serialised
        np.testing.assert_array_equal(remote.get_mask(), before)
        assert remote.refine().iterations > 0  # the queued marks are still there


def test_cancel_from_the_progress_callback(served: Served, hippo: np.ndarray) -> None:
    class StopError(Exception):
        pass

    seen: list[int] = []

    def stop_at_two(p: RefineProgress) -> None:
        seen.append(p.iteration)
        if p.iteration == 2:
            raise StopError

    with RemoteSession(served.target, "hippocampus-unet3d") as remote:
        before = remote.set_image(hippo)
        for mark in marks_3d():
            remote.add(mark)
        with pytest.raises(StopError):
            remote.refine(progress=stop_at_two)  # the same call as Session.refine's
        assert seen == [0, 1, 2]
        assert remote.history == ()
        np.testing.assert_array_equal(remote.get_mask(), before)
        assert remote.refine().iterations > 2


def test_a_bad_request_leaves_other_sessions_working(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as good:
        good.set_image(nuclei)
        with grpc.insecure_channel(served.target) as channel:
            stub = pb_grpc.RefinerStub(channel)
            header = pb.OpenSessionHeader(
                model="nuclei-unet2d", shape=[3, 8, 8], dtype=pb.DTYPE_FLOAT32
            )
            stream = [pb.OpenSessionRequest(header=header), pb.OpenSessionRequest(chunk=b"x" * 7)]
            with pytest.raises(grpc.RpcError) as raw:
                stub.OpenSession(iter(stream))
            assert raw.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "7 bytes" in raw.value.details() and "768" in raw.value.details()
        good.add(marks_2d()[0])
        assert good.refine().mask.shape == (96, 112)
