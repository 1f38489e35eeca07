"""The backbone in overlapping tiles gives the whole-image features and the same session mask."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import medrefine as mr
from medrefine.backends import TorchBackend
from medrefine.backends.tiling import backbone_radius, plan_tiles, tiled_features
from medrefine.errors import InputError, ResourceError, UnsupportedModelError
from medrefine.models.split import SplitModel
from medrefine.models.unet import UNet
from splits import split  # the fixture networks are split as everywhere in the suite


def _local(net: UNet) -> SplitModel:
    """The fixture U-Net with its instance norms (statistics over the whole image) removed, so
    each feature depends only on a neighbourhood, as a tileable backbone must."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, (nn.InstanceNorm2d, nn.InstanceNorm3d)):
                setattr(module, child, nn.Identity())
    assert not any(isinstance(m, nn.InstanceNorm2d | nn.InstanceNorm3d) for m in net.modules())
    return split(net)


def _image(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(size=shape).astype(np.float32)


def _blob(shape: tuple[int, ...], height: float) -> np.ndarray:
    """A disk/ball of ``height`` in faint noise: the norm-free networks predict it in part."""
    grid = np.indices(shape).astype(np.float32)
    centre = np.array([s * 0.4 for s in shape]).reshape((-1,) + (1,) * len(shape))
    inside = ((grid - centre) ** 2).sum(0) < (min(shape) * 0.3) ** 2
    noise = np.random.default_rng(3).normal(size=shape)
    return (height * inside + 0.2 * height * noise).astype(np.float32)


@pytest.mark.parametrize(
    ("dims", "shape", "budget"), [(2, (97, 90), 40 * 40), (3, (41, 36, 30), 28**3)]
)
def test_stitched_features_equal_whole_image_features(
    dims: int, shape: tuple[int, ...], budget: int, net2d: UNet, net3d: UNet
) -> None:
    model = _local(net2d if dims == 2 else net3d)
    backend = TorchBackend(model.backbone)
    prep = model.preprocessing
    x = prep(_image(shape))
    padded = tuple(int(s) for s in x.shape[2:])
    margin = -(-backbone_radius(backend.features, 1, dims, prep.multiple) // prep.multiple)
    core = plan_tiles(padded, margin * prep.multiple, prep.multiple, budget)
    tiles = np.prod([-(-s // c) for s, c in zip(shape, core, strict=True)])
    assert tiles >= 4, (core, padded)
    tiled = tiled_features(backend.features, x, shape, prep.multiple, budget)
    whole = backend.features(x)
    assert len(tiled) == len(whole)
    inside = (slice(None), slice(None)) + tuple(slice(0, s) for s in shape)
    for t, w in zip(tiled, whole, strict=True):
        assert t.shape == w[inside].shape
        layout = torch.channels_last if dims == 2 else torch.channels_last_3d
        assert t.is_contiguous(memory_format=layout)
        # float32 rounding: other tile sizes pick other convolution blockings; features reach
        # about 130, so a few ulps of the largest value (a margin too small errs by units)
        torch.testing.assert_close(t, w[inside], rtol=0, atol=1e-6 * float(w.abs().max()))


def test_radius_is_the_reach_of_one_pixel(net2d: UNet) -> None:
    backend = TorchBackend(_local(net2d).backbone)
    radius = backbone_radius(backend.features, 1, 2, 2)
    # two 3x3 convs at full resolution, two at half (2 px each), the 2x upsampling, two more:
    # more than the 6 px of the full-resolution convs alone, within the 64 px probe's half-width
    assert 6 < radius < 32


@pytest.mark.parametrize("dims", [2, 3])
def test_session_mask_equals_untiled(dims: int, net2d: UNet, net3d: UNet) -> None:
    model = _local(net2d if dims == 2 else net3d)
    image = _blob((97, 90), 1.0) if dims == 2 else _blob((41, 36, 30), 0.1)
    budget = 40 * 40 if dims == 2 else 28**3
    whole = mr.Session(model).set_image(image)
    tiled = mr.Session(model, limits=mr.SessionLimits(max_tile_voxels=budget)).set_image(image)
    assert len(np.unique(whole)) > 1  # a mask of one class would prove little
    np.testing.assert_array_equal(tiled, whole)


def test_instance_norm_backbone_is_refused(model2d: SplitModel) -> None:
    session = mr.Session(model2d, limits=mr.SessionLimits(max_tile_voxels=32 * 32))
    with pytest.raises(UnsupportedModelError, match="instance normalisation"):
        session.set_image(_image((64, 64)))


def test_image_within_budget_is_not_tiled(model2d: SplitModel) -> None:
    # instance norm would be refused if tiled: an image under the budget runs whole
    session = mr.Session(model2d, limits=mr.SessionLimits(max_tile_voxels=64 * 64))
    assert session.set_image(_image((64, 64))).shape == (64, 64)


def test_wide_receptive_field_grows_the_probe() -> None:
    torch.manual_seed(0)
    wide = nn.Sequential(
        nn.Conv2d(1, 4, 41, padding=20), nn.LeakyReLU(0.1), nn.Conv2d(4, 4, 41, padding=20)
    )

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return (wide(x),)

    # 40 px: beyond the first 64 px probe's half-width, inside the 128 px one the budget allows
    assert backbone_radius(run, 1, 2, 1, 128 * 128) == 40
    with pytest.raises(UnsupportedModelError, match="cannot be tiled"):
        backbone_radius(run, 1, 2, 1, 127 * 127)
    x = torch.from_numpy(_image((1, 1, 200, 190)))
    tiled = tiled_features(run, x, (200, 190), 1, 128 * 128)
    torch.testing.assert_close(tiled[0], run(x)[0], rtol=0, atol=1e-5)


def test_coarse_features_are_refused() -> None:
    def coarse(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.nn.functional.avg_pool2d(x, 2),)

    with pytest.raises(UnsupportedModelError, match="stride > 1"):
        tiled_features(coarse, torch.zeros(1, 1, 64, 64), (64, 64), 2, 32 * 32)


def test_budget_below_one_margin_is_refused(net2d: UNet) -> None:
    backend = TorchBackend(_local(net2d).backbone)
    x = torch.zeros(1, 1, 96, 96)
    with pytest.raises(ResourceError, match="max_tile_voxels=100 is below the smallest tile"):
        tiled_features(backend.features, x, (96, 96), 2, 100)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "big"])
def test_budget_is_validated(bad: object) -> None:
    with pytest.raises(InputError, match="max_tile_voxels"):
        mr.SessionLimits(max_tile_voxels=bad)  # type: ignore[arg-type]
