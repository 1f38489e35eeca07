"""Session(device=...): features and head on one device; a device that cannot run names why."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.backends import TorchBackend
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.budget.features import backbone, resolve_device
from medrefine.errors import InputError, ResourceError
from medrefine.models.split import SplitModel


def test_an_explicit_cpu_device_gives_the_default_masks(model2d: SplitModel) -> None:
    image = np.random.default_rng(0).normal(size=(40, 36)).astype(np.float32)
    masks = []
    for device in (None, "cpu"):
        session = mr.Session(model2d, cache=FeatureCache(max_bytes=0), device=device)
        assert session.device == torch.device("cpu")
        first = session.set_image(image)
        session.add(mr.Click(label=1, point=(20, 18), radius=2))
        masks.append((first, session.refine().mask))
        assert session._require_image().runner.features[0].device.type == "cpu"
        assert next(session._require_image().head.parameters()).device.type == "cpu"
    for a, b in zip(*masks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cuda_without_a_usable_gpu_names_what_is_missing(
    model2d: SplitModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ResourceError, match="CUDA") as info:
        mr.Session(model2d, device="cuda")
    assert "built without CUDA" in str(info.value) or "sees no CUDA device" in str(info.value)


def test_cuda_build_without_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ResourceError, match=r"CUDA 12\.8\) sees no CUDA device"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("device", ["meta", "tpu", 3.5])
def test_devices_that_hold_no_session_are_refused(device: object) -> None:
    with pytest.raises(InputError, match="device"):
        resolve_device(device)  # type: ignore[arg-type]


def test_a_torch_backend_on_the_session_device_skips_the_host_copy(
    model2d: SplitModel,
) -> None:
    """On the "meta" device (shapes only, no data) a copy to the host would raise: the
    features stay where the backbone ran, as they would on a GPU."""
    backend = TorchBackend(copy.deepcopy(model2d.backbone), "meta")
    x = model2d.preprocessing(np.zeros((16, 16), dtype=np.float32))
    out = backbone(backend, x, torch.device("meta"))
    assert out[0].device.type == "meta" and out[0].shape[2:] == (16, 16)
    with pytest.raises(InputError):  # the CPU contract of features(): a copy out of "meta"
        backbone(backend, x, torch.device("cpu"))
