"""Admission: set_image's cost estimated before anything is computed, refused over a budget
(naming the estimate and the limit), and tiled instead where the network allows it."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

import medrefine as mr
from medrefine.engine.budget import admission
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.session.backend import resolve_backend
from medrefine.errors import InputError, ResourceError

MIB = 1 << 20


class _Plain(nn.Module):
    """Convolutions without a whole-image statistic: tileable exactly (radius 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _plain() -> mr.SplitModel:
    torch.manual_seed(0)
    prep = mr.Preprocessing(2, channels=1, multiple=1)
    return mr.SplitModel.from_module(_Plain().eval(), ["head"], 2, 2, preprocessing=prep)


def test_the_default_refuses_512_cubed_on_the_3d_model_before_computing() -> None:
    # It was admitted (exactly max_voxels) and ran for over 600 s, holding 11.7 GB.
    session = mr.Session(mr.load_model("hippocampus-unet3d"), cache=FeatureCache(0))
    volume = np.zeros((512, 512, 512), np.uint8)
    start = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        session.set_image(volume)
    assert time.perf_counter() - start < 30  # the backbone never ran
    message = str(info.value)
    assert "(512, 512, 512)" in message and "max_set_image_seconds" in message
    assert "limit of 60 s" in message and " GiB at its peak and " in message
    estimate = float(message.split(" GiB at its peak and ")[1].split(" s")[0])
    assert estimate > 60
    assert session.set_image(np.zeros((16, 20, 24), np.float32)).shape == (16, 20, 24)


def test_the_default_admits_the_memory_benchmarks_session() -> None:
    model = mr.load_model("hippocampus-unet3d")
    found = admission.estimate(
        model, resolve_backend(model, None), (128, 256, 256), mr.SessionLimits()
    )
    assert found is not None and found.path == "slabs"
    assert found.seconds < 60 and found.peak_bytes < 8 << 30
    limits = mr.SessionLimits()
    assert admission.admit(model, resolve_backend(model, None), (128, 256, 256), limits) is limits


def test_a_memory_budget_refuses_by_name_and_the_session_stays_usable() -> None:
    limits = mr.SessionLimits(max_set_image_bytes=100 * MIB)
    session = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache(0), limits=limits)
    image = np.zeros((3, 512, 512), np.uint8)
    with pytest.raises(ResourceError, match=r"max_set_image_bytes\) of 100 MiB") as info:
        session.set_image(image)
    assert "(512, 512)" in str(info.value) and "cannot be tiled" in str(info.value)
    assert session.set_image(image[:, :64, :64]).shape == (64, 64)


def test_over_the_memory_budget_a_tileable_network_runs_in_tiles() -> None:
    model = _plain()
    image = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    whole = mr.Session(model, cache=FeatureCache(0), limits=mr.SessionLimits())
    want = whole.set_image(image)
    backend = resolve_backend(model, None)
    found = admission.estimate(model, backend, (512, 512), mr.SessionLimits())
    assert found is not None and found.path == "whole"
    after = admission.estimate(model, backend, (512, 512), mr.SessionLimits(), cached=True)
    assert after is not None and after.peak_bytes < found.peak_bytes
    budget = int((after.peak_bytes + found.peak_bytes) / 2)  # under the whole pass's peak
    limits = mr.SessionLimits(max_set_image_bytes=budget)
    tiled = admission.admit(model, backend, (512, 512), limits)
    assert tiled.max_tile_voxels is not None and tiled.max_tile_voxels < 512 * 512
    estimate = admission.estimate(model, backend, (512, 512), tiled)
    assert estimate is not None and estimate.path == "tiles" and estimate.peak_bytes <= budget
    session = mr.Session(model, cache=FeatureCache(0), limits=limits)
    np.testing.assert_array_equal(session.set_image(image), want)


def test_features_in_the_cache_cost_no_backbone_time() -> None:
    model = mr.load_model("nuclei-unet2d")
    cache = FeatureCache()
    image = mr.load_sample("nuclei-stained").image
    want = mr.Session(model, cache=cache).set_image(image)
    hurried = mr.SessionLimits(max_set_image_seconds=1e-6)
    with pytest.raises(ResourceError, match="max_set_image_seconds"):
        mr.Session(model, cache=FeatureCache(0), limits=hurried).set_image(image)
    np.testing.assert_array_equal(
        mr.Session(model, cache=cache, limits=hurried).set_image(image), want
    )


def test_more_than_the_machine_has_is_refused_whatever_the_limits() -> None:
    available = admission.available_bytes()
    assert available is not None  # Linux: /proc/meminfo
    model = mr.load_model("nuclei-unet2d")
    per_pixel = admission.estimate(
        model, resolve_backend(model, None), (1024, 1024), mr.SessionLimits()
    )
    assert per_pixel is not None
    side = int(math.sqrt(2 * available / (per_pixel.held_bytes / 1024**2)))
    limits = mr.SessionLimits(
        max_voxels=side * side, max_set_image_bytes=None, max_set_image_seconds=None
    )
    session = mr.Session(model, cache=FeatureCache(0), limits=limits)
    with pytest.raises(ResourceError, match=r"this machine has available \(MemAvailable\)"):
        session.set_image(np.zeros((side, side), np.uint8))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_set_image_seconds", "60"),
        ("max_set_image_seconds", 0),
        ("max_set_image_seconds", float("nan")),
        ("max_set_image_seconds", True),
        ("max_set_image_bytes", -1),
        ("max_set_image_bytes", 1.5),
    ],
)
def test_budgets_are_checked(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        mr.SessionLimits(**{field: value})  # type: ignore[arg-type]
