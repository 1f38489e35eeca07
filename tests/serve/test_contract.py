"""What the proto promises a client written from it alone: the reopen and closed reasons as
trailing metadata, the bearer scheme in any case, typed errors for every status a client can
act on, and the channel layout said in the upload header."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine import errors
from medrefine.client import (
    RemoteNotFoundError,
    RemoteSession,
    RemoteUnauthenticatedError,
    RemoteUnavailableError,
    stub,
)
from medrefine.engine.budget.cache import FeatureCache
from medrefine.serve import ServerConfig
from medrefine.v1 import refine_pb2 as pb

from .conftest import Served, marks_2d, start


def _reason(exc: grpc.RpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get("medrefine-reason")


def test_reasons_say_reopen_or_not(served: Served, nuclei: np.ndarray) -> None:
    with grpc.insecure_channel(served.target) as channel:
        refiner = stub(channel)
        with pytest.raises(grpc.RpcError) as never:
            refiner.AddMarks(pb.AddMarksRequest(session_id="never-opened-here"))
        assert never.value.code() is grpc.StatusCode.NOT_FOUND
        assert _reason(never.value) == "SESSION_NOT_LIVE"
        with RemoteSession(served.target, "nuclei-unet2d") as remote:
            remote.set_image(nuclei)
            sid = remote.session_id
            remote.close_session()
        mark = pb.Mark(click=pb.Click(label=1, point=[3, 3], radius=1))
        with pytest.raises(grpc.RpcError) as closed:
            refiner.AddMarks(pb.AddMarksRequest(session_id=sid, marks=[mark]))
        assert closed.value.code() is grpc.StatusCode.NOT_FOUND
        assert _reason(closed.value) == "SESSION_CLOSED"
        assert "closed" in (closed.value.details() or "")
        assert "open it again" not in (closed.value.details() or "")


def test_a_closed_session_is_not_reopened_by_the_client(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        sid = remote.session_id
        with RemoteSession(served.target, "nuclei-unet2d", session_id=sid) as other:
            other.set_image(nuclei)
            other.close_session()
        with pytest.raises(RemoteNotFoundError, match="closed") as exc:
            remote.add(marks_2d()[0])
        assert exc.value.reason == "SESSION_CLOSED"


def test_the_bearer_scheme_is_case_insensitive_and_errors_are_typed(nuclei: np.ndarray) -> None:
    s = start(ServerConfig(models=("nuclei-unet2d",), token="s3cret"))
    try:
        with grpc.insecure_channel(s.target) as channel:
            refiner = stub(channel)
            for scheme in ("Bearer", "bearer", "BEARER"):
                meta = (("authorization", f"{scheme} s3cret"),)
                assert refiner.ListModels(pb.ListModelsRequest(), metadata=meta, timeout=10).models
            for value in ("Basic s3cret", "Bearer wrong", "s3cret"):
                with pytest.raises(grpc.RpcError) as refused:
                    refiner.ListModels(
                        pb.ListModelsRequest(), metadata=(("authorization", value),), timeout=10
                    )
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        wrong = RemoteSession(s.target, "nuclei-unet2d", token="wrong")
        with wrong, pytest.raises(RemoteUnauthenticatedError, match="wrong bearer token"):
            wrong.set_image(nuclei)
    finally:
        s.server.stop(grace=0)
    with RemoteSession(s.target, "nuclei-unet2d", timeout=5) as gone:
        with pytest.raises(RemoteUnavailableError) as down:
            gone.set_image(nuclei)
        assert down.value.code is grpc.StatusCode.UNAVAILABLE


def test_channels_last_travels_in_the_upload_header(served: Served, nuclei: np.ndarray) -> None:
    picture = np.ascontiguousarray(np.moveaxis(nuclei[:, :40, :48], 0, -1))  # (40, 48, 3)
    local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
    expected = local.set_image(picture, channels_last=True)
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        np.testing.assert_array_equal(remote.set_image(picture, channels_last=True), expected)
        assert remote.image_shape == (40, 48)
        remote.add(mr.Scribble(1, [(10, 10), (20, 30)], 1))
        local.add(mr.Scribble(1, [(10, 10), (20, 30)], 1))
        np.testing.assert_array_equal(remote.refine().mask, local.refine().mask)
    ambiguous = np.ascontiguousarray(nuclei[:, 0:40, 0:3])  # (3, 40, 3): which axis is C?
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        with pytest.raises(errors.InputError, match="channels_last") as refused:
            remote.set_image(ambiguous)
        assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert remote.set_image(ambiguous, channels_last=False).shape == (40, 3)
