"""The server admits each image by its estimated set_image cost, per request and against a
budget for all live sessions together: RESOURCE_EXHAUSTED with the estimate and the limit."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine import errors
from medrefine.client import RemoteError, RemoteSession
from medrefine.engine.budget import admission
from medrefine.engine.session.backend import resolve_backend
from medrefine.serve import ServerConfig

from .conftest import start


def _code(exc: pytest.ExceptionInfo[Exception]) -> grpc.StatusCode:
    assert isinstance(exc.value, RemoteError)
    return exc.value.code


def test_an_image_over_a_sessions_budget_is_refused(nuclei: np.ndarray) -> None:
    config = ServerConfig(models=("nuclei-unet2d",), max_set_image_bytes=64 << 20)
    s = start(config)
    try:
        with RemoteSession(s.target, "nuclei-unet2d") as remote:
            with pytest.raises(errors.ResourceError, match="max_set_image_bytes") as exc:
                remote.set_image(np.zeros((3, 512, 512), np.uint8))
            assert _code(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "(512, 512)" in str(exc.value) and "at its peak" in str(exc.value)
            assert remote.set_image(nuclei).shape == (96, 112)  # the server still serves
    finally:
        s.server.stop(grace=0)


def test_the_servers_memory_budget_counts_every_live_session(nuclei: np.ndarray) -> None:
    model = mr.load_model("nuclei-unet2d")
    limits = ServerConfig().session_limits()
    found = admission.estimate(model, resolve_backend(model, "torch"), (96, 112), limits)
    assert found is not None and found.held_bytes > 0
    # one set_image fits; a second, beside the first session's held memory, does not
    budget = int(found.peak_bytes + found.held_bytes / 2)
    s = start(ServerConfig(models=("nuclei-unet2d",), memory_budget_bytes=budget))
    try:
        with RemoteSession(s.target, "nuclei-unet2d") as one:
            one.set_image(nuclei)
            with RemoteSession(s.target, "nuclei-unet2d") as two:
                with pytest.raises(errors.ResourceError, match="memory budget") as exc:
                    two.set_image(nuclei)
                assert _code(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "1 open sessions" in str(exc.value)
            one.close_session()
        with RemoteSession(s.target, "nuclei-unet2d") as three:
            assert three.set_image(nuclei).shape == (96, 112)  # the first one's share is back
    finally:
        s.server.stop(grace=0)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_the_servers_budget_is_checked(bad: object) -> None:
    with pytest.raises(errors.InputError, match="memory_budget_bytes"):
        ServerConfig(memory_budget_bytes=bad)  # type: ignore[arg-type]
