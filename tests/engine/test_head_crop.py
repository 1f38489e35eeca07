"""The crop path for heads over features coarser than the image: equal to the whole-image head.

Each head here is evaluated three ways: whole image (the reference, ``head(*features)``), the
runner's whole-image prediction, and the runner's evaluator at scattered and clustered pixels.
Heads the crop path cannot reproduce must end up on the ``full`` path with the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medrefine.engine.head.crop import FeatureGrid, grid_scales
from medrefine.engine.head.runner import HeadRunner

from .crop_heads import CONV, UP, Decoder, make_features

MODE = {2: "bilinear", 3: "trilinear"}


class DeepLabLike(nn.Module):
    """3x3 conv at 1/8 and interpolation to full size."""

    def __init__(self, dims: int, align_corners: bool | None = False, size: bool = False) -> None:
        super().__init__()
        self.conv = CONV[dims](6, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4) if dims == 2 else nn.BatchNorm3d(4)
        self.cls = CONV[dims](4, 3, 1)
        self.dims, self.align, self.size = dims, align_corners, size

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.cls(torch.relu(self.norm(self.conv(f))))
        if self.size:  # a fixed output size, as torchvision's heads interpolate
            return F.interpolate(x, size=(85,) * self.dims, mode=MODE[self.dims])
        return F.interpolate(x, scale_factor=8, mode=MODE[self.dims], align_corners=self.align)


class MultiScale(nn.Module):
    """A U-Net-like decoder: features at 1/4, 1/2 and full resolution."""

    def __init__(self, dims: int, norm: str = "batch") -> None:
        super().__init__()
        self.up4 = UP[dims](6, 4, 2, 2)
        self.mix2 = CONV[dims](8, 4, 3, padding=1)
        self.up2 = nn.Upsample(scale_factor=2, mode=MODE[dims], align_corners=False)
        self.mix1 = CONV[dims](6, 3, 3, padding=1)
        self.norm: nn.Module = nn.GroupNorm(2, 4) if norm == "group" else nn.Identity()

    def forward(self, f4: torch.Tensor, f2: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.mix2(torch.cat([self.up4(f4), f2], 1))))
        return self.mix1(torch.cat([self.up2(x), f1], 1))


def _check(
    head: nn.Module, feats: tuple[torch.Tensor, ...], shape: tuple[int, ...], mode: str
) -> HeadRunner:
    """The runner over an image of ``shape`` picks ``mode`` and agrees with the whole head."""
    head = head.eval()
    runner = HeadRunner(head, feats, shape)
    assert runner.mode == mode
    with torch.no_grad():
        whole = head(*feats)[0][(slice(None),) + tuple(slice(0, s) for s in shape)]
    torch.testing.assert_close(runner.predict(), whole, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(1)
    size = int(np.prod(shape))
    centre = np.asarray(shape) // 2
    blob = np.stack([rng.integers(c - 3, c + 4, 40) for c in centre], 1)
    clustered = np.ravel_multi_index(tuple(blob.T), shape)
    corner = np.asarray(
        [0, size - 1, int(np.ravel_multi_index(tuple(np.asarray(shape) - 1), shape))]
    )
    for index in (clustered, rng.integers(0, size, 50), corner):
        got = runner.evaluator(torch.from_numpy(index))()
        want = whole.reshape(whole.shape[0], -1)[:, index].T
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    return runner


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("kernel", "output_padding"), [(2, 0), (3, 1), (3, 0)])
def test_transposed_conv_decoder_at_quarter_resolution_runs_on_crops(
    dims: int, kernel: int, output_padding: int
) -> None:
    torch.manual_seed(0)
    shape = (37, 30, 29)[-dims:] if kernel == 3 and output_padding == 0 else (38, 30, 29)[-dims:]
    feats = make_features(shape, 4)
    head = Decoder(dims, output_padding, kernel)
    with torch.no_grad():
        out = tuple(head(*feats).shape[2:])
    image = tuple(min(o, s) for o, s in zip(out, shape, strict=True))  # output may be padded
    runner = _check(head, feats, image, "crop")
    assert runner.grid is not None and runner.grid.scales == ((4,) * dims,)


@pytest.mark.parametrize("dims", [2, 3])
def test_interpolating_head_at_eighth_resolution_runs_on_crops(dims: int) -> None:
    torch.manual_seed(0)
    shape = (91, 77, 83)[-dims:]  # features ceil(s / 8); output 8 x that, image its corner
    runner = _check(DeepLabLike(dims), make_features(shape, 8), shape, "crop")
    assert runner.out_shape == tuple(8 * -(-s // 8) for s in shape)


@pytest.mark.parametrize("dims", [2, 3])
def test_align_corners_and_fixed_size_interpolation_stay_on_the_full_path(dims: int) -> None:
    torch.manual_seed(0)
    shape = (85, 85, 85)[-dims:]
    _check(DeepLabLike(dims, align_corners=True), make_features(shape, 8), shape, "full")
    _check(DeepLabLike(dims, size=True), make_features(shape, 8), shape, "full")


@pytest.mark.parametrize("dims", [2, 3])
def test_features_at_three_resolutions_run_on_crops(dims: int) -> None:
    torch.manual_seed(0)
    shape = (36, 28, 44)[-dims:]
    runner = _check(MultiScale(dims), make_features(shape, 4, 2, 1), shape, "crop")
    assert runner.grid is not None
    assert [s[0] for s in runner.grid.scales] == [4, 2, 1]
    assert runner.grid.step == (4,) * dims


def test_group_norm_over_space_is_not_bounded() -> None:
    torch.manual_seed(0)
    shape = (36, 44)
    _check(MultiScale(2, norm="group"), make_features(shape, 4, 2, 1), shape, "full")


def test_crop_gradients_equal_the_whole_image_gradients() -> None:
    torch.manual_seed(0)
    shape = (40, 36)
    head = Decoder(2).eval()
    feats = make_features(shape, 4)
    index = torch.tensor([5 * 36 + 7, 9 * 36 + 11, 12 * 36 + 8])
    grads = []
    for naive in (False, True):
        runner = HeadRunner(head, feats, shape, naive=naive)
        assert runner.mode == ("full" if naive else "crop")
        head.zero_grad()
        runner.evaluator(index)().pow(2).sum().backward()
        grads.append([p.grad.clone() for p in head.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_anchor_region_is_inside_the_crop_the_marks_need() -> None:
    torch.manual_seed(0)
    shape = (64, 64)
    runner = HeadRunner(Decoder(2).eval(), make_features(shape, 4), shape)
    marks = np.ravel_multi_index(([30, 33], [20, 26]), shape)
    region = runner.anchor_region(marks)
    assert region is not None and np.isin(marks, region).all()
    assert 20 < region.size < 64 * 64 // 2
    coords = np.stack(np.unravel_index(np.concatenate([marks, region]), shape), 1)
    assert runner.grid is not None
    both = runner.grid.window(coords.min(0), coords.max(0) + 1)
    alone = runner.grid.window(
        *(lambda c: (c.min(0), c.max(0) + 1))(np.stack(np.unravel_index(marks, shape), 1))
    )
    assert (both[0] == alone[0]).all() and both[1] == alone[1]  # anchors there cost nothing
    pointwise = HeadRunner(
        nn.Sequential(nn.Conv2d(6, 3, 1)).eval(), (torch.randn(1, 6, 8, 8),), (8, 8)
    )
    assert pointwise.mode == "pointwise" and pointwise.anchor_region(marks[:1] % 64) is None


def test_grid_scales_are_read_from_the_shapes() -> None:
    f = torch.zeros(1, 1, 16, 9)
    assert grid_scales((f,), (64, 36)) == ((4, 4),)
    assert grid_scales((f,), (31, 17)) == ((2, 2),)  # 2n - 1: a transposed conv without padding
    assert grid_scales((f,), (40, 36)) is None  # 40 / 16 is no whole scale
    assert grid_scales((f,), (8, 36)) is None  # finer than the output
    grid = FeatureGrid((64, 36), ((16, 9),), ((4, 4),), ((1, 2),))
    start, (window,) = grid.window(np.asarray([20, 0]), np.asarray([23, 3]))
    assert tuple(start) == (16, 0)
    assert window == (slice(4, 7), slice(0, 3))


def test_far_marks_get_their_own_crops_and_near_ones_share_one() -> None:
    grid = FeatureGrid((128, 128), ((32, 32),), ((4, 4),), ((1, 1),))
    near = np.asarray([[10, 10], [10, 14], [12, 12]])
    far = np.asarray([[100, 110], [101, 111]])
    groups = grid.groups(np.concatenate([near, far]))
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 1, 2], [3, 4]]
    lo, hi = grid.free_box(near.min(0), near.max(0) + 1)
    inside = np.concatenate([near, [lo, hi - 1]])  # the free box's corners join the cluster
    assert len(grid.groups(np.concatenate([inside, far]))) == 2
    assert grid.groups(np.zeros((0, 2), np.int64)) == []
