"""The server runs backbones on the backend it is told to, says which, and masks do not change."""

from __future__ import annotations

import numpy as np
import pytest

import medrefine as mr
from medrefine.client import RemoteSession, list_models
from medrefine.engine.budget.cache import FeatureCache
from medrefine.errors import InputError, ResourceError
from medrefine.serve import ServerConfig, create_server

from .conftest import marks_2d, start


def test_onnxruntime_backend_serves_the_torch_masks(nuclei: np.ndarray) -> None:
    served = start(ServerConfig(models=("nuclei-unet2d",), backend="onnxruntime"))
    try:
        (info,) = list_models(served.target).models
        assert info.backend == "onnxruntime-CPUExecutionProvider"
        local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache(0))
        with RemoteSession(served.target, model="nuclei-unet2d") as remote:
            np.testing.assert_array_equal(remote.set_image(nuclei), local.set_image(nuclei))
            for mark in marks_2d():
                remote.add(mark)
                local.add(mark)
            np.testing.assert_array_equal(remote.refine().mask, local.refine().mask)
    finally:
        served.server.stop(grace=1.0)


def test_an_unavailable_or_unknown_backend_fails_at_start() -> None:
    with pytest.raises(ResourceError, match="onnxruntime-gpu"):
        create_server("127.0.0.1:0", ServerConfig(models=("nuclei-unet2d",), backend="cuda"))
    with pytest.raises(InputError, match="backend must be one of"):
        ServerConfig(backend="tpu")
