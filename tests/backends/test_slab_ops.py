"""Each operation of the slab pass: every slab of its recipe is that slab of the whole result
(to float32 rounding: a vectorised kernel's tail, or interpolation by ``size`` instead of
``scale_factor``, may change the last bit)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medrefine import SessionLimits
from medrefine.backends import TorchBackend, slab_ops
from medrefine.backends.slab_ops import Slabs, UnsupportedError
from medrefine.backends.slabs import slab_plan
from medrefine.engine.budget.features import compute_features

_SLAB_BYTES = 4 * 3 * 10  # float32 bytes of three channels of one 2D row of 10 pixels


def _input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _assemble(out: Slabs, step: int) -> torch.Tensor:
    """The recipe's tensor, taken ``step`` planes at a time."""
    parts = [out.take(a, min(a + step, out.depth)) for a in range(0, out.depth, step)]
    return torch.cat(parts, dim=2)


@pytest.mark.parametrize("step", [1, 2, 3])
def test_elementwise_pooling_interpolation_and_cat_per_slab(step: int) -> None:
    x = _input((1, 3, 12, 10))
    src = Slabs.stored(x)
    cases: list[tuple[Slabs, torch.Tensor]] = [
        (slab_ops.module(nn.LeakyReLU(0.1), src, _SLAB_BYTES), F.leaky_relu(x, 0.1)),
        (slab_ops.function(torch.sigmoid, (src,), {}, _SLAB_BYTES), torch.sigmoid(x)),
        (slab_ops.function(torch.add, (src, src), {}, _SLAB_BYTES), x + x),
        (slab_ops.function(torch.mul, (2.5, src), {}, _SLAB_BYTES), 2.5 * x),
        (slab_ops.function(F.max_pool2d, (src, 2), {}, _SLAB_BYTES), F.max_pool2d(x, 2)),
        (
            slab_ops.function(F.avg_pool2d, (src, (3, 2)), {}, _SLAB_BYTES),
            F.avg_pool2d(x, (3, 2)),
        ),
        (
            slab_ops.function(
                F.interpolate,
                (src,),
                {"scale_factor": (3, 2), "mode": "bilinear", "align_corners": False},
                _SLAB_BYTES,
            ),
            F.interpolate(x, scale_factor=(3, 2), mode="bilinear", align_corners=False),
        ),
        (
            slab_ops.function(
                torch.cat, ([src, slab_ops.binary(torch.add, src, 1.0)],), {"dim": 1}, 64
            ),
            torch.cat([x, x + 1], dim=1),
        ),
    ]
    for out, want in cases:
        assert out.shape == tuple(want.shape)
        torch.testing.assert_close(_assemble(out, step), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("step", [1, 2, 5])
@pytest.mark.parametrize(
    ("shape", "resize"),
    [
        ((1, 3, 12, 10), {"scale_factor": 2}),
        ((1, 3, 12, 10), {"scale_factor": (3, 2)}),
        ((1, 3, 11, 7), {"scale_factor": (5.0, 7.0)}),
        ((1, 3, 12, 10), {"size": (36, 40)}),
        ((1, 2, 9, 6, 5), {"scale_factor": (3, 2, 1)}),
        ((1, 2, 7, 4, 3), {"size": (28, 8, 9)}),
    ],
)
def test_nearest_interpolation_per_slab_is_the_whole_result_bit_for_bit(
    step: int, shape: tuple[int, ...], resize: dict[str, object]
) -> None:
    x = _input(shape, seed=1)
    for kwargs in ({"mode": "nearest"} | resize, resize):  # nearest named, and by default
        out = slab_ops.function(F.interpolate, (Slabs.stored(x),), kwargs, _SLAB_BYTES)
        want = F.interpolate(x, **kwargs)  # type: ignore[arg-type]
        assert out.shape == tuple(want.shape)
        assert torch.equal(_assemble(out, step), want)


class _NearestUp(nn.Module):
    """Conv, 2x2 max pool, conv, nearest 2x upsampling, concatenation with the skip: one
    feature tensor, in a tuple as backbones return them."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, padding=1)
        self.deep = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        skip = F.relu(self.down(x))
        deep = F.relu(self.deep(F.max_pool2d(skip, 2)))
        return (torch.cat([skip, F.interpolate(deep, scale_factor=2, mode="nearest")], dim=1),)


def test_a_network_with_nearest_upsampling_runs_slab_by_slab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    backend = TorchBackend(torch.fx.symbolic_trace(_NearestUp()))
    assert slab_plan(backend.backbone, 1, 2, 2) is not None  # not the whole-volume fallback
    shape = (38, 30)
    x = _input((1, 1, *shape), seed=2)
    whole = compute_features(backend, x, shape, 2, SessionLimits(slab_voxels=None))

    def whole_pass(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise AssertionError("the slab path never runs the whole backbone")

    monkeypatch.setattr(backend, "features", whole_pass)
    limits = SessionLimits(slab_voxels=1, float16_feature_bytes=None)
    slabs = compute_features(backend, x, shape, 2, limits)
    assert len(slabs) == len(whole) == 1
    torch.testing.assert_close(slabs[0], whole[0], rtol=0, atol=1e-5)


def test_batch_norm_in_eval_mode_is_per_slab() -> None:
    norm = nn.BatchNorm2d(3).eval()
    norm.running_mean = torch.tensor([0.5, -1.0, 2.0])
    norm.running_var = torch.tensor([2.0, 0.5, 1.5])
    x = _input((1, 3, 9, 10))
    with torch.no_grad():
        got = _assemble(slab_ops.module(norm, Slabs.stored(x), _SLAB_BYTES), 2)
        torch.testing.assert_close(got, norm(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_uses_the_whole_tensors_statistics(affine: bool) -> None:
    norm = nn.InstanceNorm3d(3, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
            norm.bias.copy_(torch.tensor([0.1, -0.3, 1.0]))
    x = _input((1, 3, 13, 6, 5)) * 4.0 + torch.arange(13.0).reshape(1, 1, 13, 1, 1)
    # statistics merged over slabs of one plane: 13 pieces
    out = slab_ops.instance_norm(norm, Slabs.stored(x), 4 * 3 * 6 * 5)
    with torch.no_grad():
        want = norm(x)
        got = _assemble(out, 4)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        # the comparison sees a norm over each slab alone (a trend along z: other statistics)
        alone = torch.cat([norm(x[:, :, a : a + 4]) for a in range(0, 13, 4)], dim=2)
    assert float((alone - want).abs().max()) > 0.1


def test_an_inplace_activation_never_writes_into_a_stored_tensor() -> None:
    x = -_input((1, 3, 8, 10)).abs()
    kept = x.clone()
    out = slab_ops.module(nn.ReLU(inplace=True), Slabs.stored(x), _SLAB_BYTES)
    assert torch.equal(_assemble(out, 3), torch.zeros_like(x))
    assert torch.equal(x, kept)


def _refused(make: Callable[[Slabs], Slabs], match: str) -> None:
    with pytest.raises(UnsupportedError, match=match):
        make(Slabs.stored(_input((1, 3, 12, 10))))


def test_operations_it_cannot_run_exactly_are_refused() -> None:
    _refused(lambda s: slab_ops.function(F.max_pool2d, (s, 2, 1), {}, 64), r"pooling \(2, 2\)")
    _refused(lambda s: slab_ops.function(F.avg_pool2d, (s, 5), {}, 64), "pooling")  # 12 % 5
    _refused(
        lambda s: slab_ops.function(
            F.interpolate, (s,), {"scale_factor": 2, "mode": "bilinear", "align_corners": True}, 64
        ),
        "interpolate mode=bilinear",
    )
    _refused(
        lambda s: slab_ops.function(
            F.interpolate, (s,), {"scale_factor": 2, "mode": "nearest-exact"}, 64
        ),
        "interpolate mode=nearest-exact",
    )
    _refused(
        lambda s: slab_ops.function(F.interpolate, (s,), {"size": (18, 15)}, 64),
        "not an integer factor",
    )
    _refused(lambda s: slab_ops.cat(([s, s], 2), {}), "cat over dim 2")
    _refused(
        lambda s: slab_ops.binary(torch.add, s, Slabs.stored(_input((1, 3, 12, 1)))), "broadcast"
    )
    _refused(lambda s: slab_ops.binary(torch.add, s, torch.ones(1)), "tensor constant")
    _refused(lambda s: slab_ops.module(nn.GroupNorm(1, 3), s, 64), "GroupNorm")
    _refused(
        lambda s: slab_ops.module(nn.InstanceNorm2d(3, track_running_stats=True), s, 64),
        "InstanceNorm2d",
    )
    _refused(lambda s: slab_ops.module(nn.Dropout().train(), s, 64), "Dropout")


def test_steps_cover_the_planes_under_the_byte_limit() -> None:
    assert slab_ops.steps(10, 2, 5, 4 * 2 * 5 * 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert slab_ops.steps(3, 2, 5, 1) == [(0, 1), (1, 2), (2, 3)]  # at least one plane
