"""The slab pass's operations: each one's output as a recipe for any slab of it.

:class:`Slabs` is a ``(1, C, *spatial)`` float32 tensor that may never exist whole; its
``take(a, b)`` returns the slab ``[a, b)`` along the first spatial axis (z in 3D, y in 2D). The
functions here build such recipes from their inputs' recipes, one per operation that
:mod:`medrefine.backends.slabs` runs (it keeps only the spatial convolutions, whose outputs it
stores):

- elementwise modules and functions, eval-mode ``BatchNorm``, ``+`` and ``*``: the same slab
  of each input;
- ``InstanceNorm`` without running statistics (:func:`instance_norm`): per-channel mean and
  variance summed over every slab of the input first (per slab in float32, merged in float64),
  then applied per slab, so each slab is normalised with the whole image's statistics;
- max/average pooling with kernel = stride and no padding (:func:`pool`): ``k`` input planes
  per output plane, read in pieces of at most ``slab_bytes``;
- ``interpolate`` by an integer factor, nearest or linear without ``align_corners``
  (:func:`interpolate`): the input slab widened by one plane on each side;
- ``cat`` over channels.

Anything else raises :class:`UnsupportedError`, and the caller runs the backbone whole.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medrefine.backends.slab_store import Release

Take = Callable[[int, int], torch.Tensor]
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_INSTANCE = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_BATCH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
)
_POINTWISE_FUNCTIONS: dict[object, Callable[..., torch.Tensor]] = {
    F.relu: F.relu,
    torch.relu: torch.relu,
    F.leaky_relu: F.leaky_relu,
    F.gelu: F.gelu,
    F.silu: F.silu,
    torch.sigmoid: torch.sigmoid,
    torch.tanh: torch.tanh,
}
_BINARY: dict[object, Callable[[Any, Any], torch.Tensor]] = {
    operator.add: operator.add,
    torch.add: operator.add,
    operator.mul: operator.mul,
    torch.mul: operator.mul,
}
_LINEAR_MODES = ("linear", "bilinear", "bicubic", "trilinear")
_POOLS: dict[object, Callable[..., torch.Tensor]] = {
    F.max_pool1d: F.max_pool1d,
    F.max_pool2d: F.max_pool2d,
    F.max_pool3d: F.max_pool3d,
    F.avg_pool1d: F.avg_pool1d,
    F.avg_pool2d: F.avg_pool2d,
    F.avg_pool3d: F.avg_pool3d,
}


class UnsupportedError(Exception):
    """A node the slab pass cannot run exactly."""


class Slabs:
    """A ``(1, C, *spatial)`` float32 tensor that may never exist whole: ``take(a, b)`` returns
    its slab ``[a, b)`` along the first spatial axis (axis 2); ``fresh``: each slab is a new
    tensor that the caller may overwrite (else it may be a view of a stored one). ``release``
    (a graph output's): what :func:`medrefine.backends.slabs.write` frees as it goes, when this
    output reads last."""

    def __init__(self, shape: tuple[int, ...], take: Take, fresh: bool = True) -> None:
        self.shape, self.take, self.fresh = shape, take, fresh
        self.release: Release | None = None

    @classmethod
    def stored(cls, t: torch.Tensor) -> Slabs:
        """A tensor that exists whole: its slabs are views (not ``fresh``)."""
        return cls(tuple(int(s) for s in t.shape), lambda a, b: t[:, :, a:b], False)

    @property
    def depth(self) -> int:
        """Length of the first spatial axis."""
        return self.shape[2]


def steps(depth: int, channels: int, plane: int, slab_bytes: int) -> list[tuple[int, int]]:
    """``[a, b)`` ranges covering ``depth`` planes of ``channels`` x ``plane`` values, each
    under ``slab_bytes`` of float32 (at least one plane)."""
    step = max(1, slab_bytes // max(4 * channels * plane, 1))
    return [(a, min(a + step, depth)) for a in range(0, depth, step)]


def per_axis(value: Any, dims: int) -> tuple[Any, ...]:
    """``value`` (a number, or one per spatial axis) as one entry per axis of ``dims``."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) != dims:
            raise UnsupportedError(f"{value} for {dims} spatial axes")
        return tuple(value)
    return (value,) * dims


def module(m: nn.Module, src: Slabs, slab_bytes: int) -> Slabs:
    """``m`` (not a convolution) applied to ``src``: a norm or an elementwise module."""
    if isinstance(m, _INSTANCE) and not m.track_running_stats:
        return instance_norm(m, src, slab_bytes)
    if isinstance(m, _BATCH) and not m.training and m.track_running_stats:
        return Slabs(src.shape, lambda a, b: m(src.take(a, b)))
    if isinstance(m, _POINTWISE_MODULES) and not (m.training and isinstance(m, nn.Dropout)):
        if getattr(m, "inplace", False) and not src.fresh:  # never write into a stored one
            return Slabs(src.shape, lambda a, b: m(src.take(a, b).clone()))
        return Slabs(src.shape, lambda a, b: m(src.take(a, b)))
    raise UnsupportedError(type(m).__name__)


def instance_norm(m: nn.modules.instancenorm._InstanceNorm, src: Slabs, slab_bytes: int) -> Slabs:
    """``m`` over the whole of ``src``: per-channel mean and biased variance of each slab (of
    at most ``slab_bytes``) in float32, merged in float64 (Chan et al.'s pairwise rule), then
    one float32 scale and shift per channel applied to every slab."""
    channels = src.shape[1]
    axes = tuple(range(2, len(src.shape)))
    plane = math.prod(src.shape[3:])
    count, mean, m2 = 0, torch.zeros(channels, dtype=torch.float64), None
    for a, b in steps(src.depth, channels, plane, slab_bytes):
        var_b, mean_b = torch.var_mean(src.take(a, b), dim=(0, *axes), correction=0)
        n_b = (b - a) * plane
        mean_b, m2_b = mean_b.double().cpu(), var_b.double().cpu() * n_b
        if m2 is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        delta, total = mean_b - mean, count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta.square() * (count * n_b / total)
        count = total
    assert m2 is not None
    rstd = 1.0 / torch.sqrt(m2 / count + m.eps)
    weight, bias = torch.ones(channels), torch.zeros(channels)
    if m.affine:
        weight, bias = m.weight.detach().double().cpu(), m.bias.detach().double().cpu()
    view = (1, channels) + (1,) * len(axes)
    device = src.take(0, 1).device
    scale = (rstd * weight).float().reshape(view).to(device)
    shift = (bias - mean * rstd * weight).float().reshape(view).to(device)
    return Slabs(src.shape, lambda a, b: torch.addcmul(shift, src.take(a, b), scale), True)


def function(target: Any, args: Any, kwargs: dict[str, Any], slab_bytes: int) -> Slabs:
    """The call ``target(*args, **kwargs)`` whose tensor arguments are :class:`Slabs`."""
    if target in _POINTWISE_FUNCTIONS and isinstance(args[0], Slabs):
        fn, src = _POINTWISE_FUNCTIONS[target], args[0]
        rest = {k: v for k, v in kwargs.items() if k != "inplace"}
        return Slabs(src.shape, lambda a, b: fn(src.take(a, b), *args[1:], **rest))
    if target in _BINARY and len(args) == 2 and not kwargs:
        return binary(_BINARY[target], args[0], args[1])
    if target in _POOLS:
        return pool(_POOLS[target], args, kwargs, slab_bytes)
    if target is F.interpolate:
        return interpolate(args, kwargs)
    if target is torch.cat:
        return cat(args, kwargs)
    raise UnsupportedError(getattr(target, "__name__", str(target)))


def binary(fn: Callable[[Any, Any], torch.Tensor], x: Any, y: Any) -> Slabs:
    """``fn(x, y)`` of two recipes of one shape, or of a recipe and a Python number."""
    if isinstance(x, Slabs) and isinstance(y, Slabs):
        if x.shape != y.shape:
            raise UnsupportedError(f"broadcast between {x.shape} and {y.shape}")
        return Slabs(x.shape, lambda a, b: fn(x.take(a, b), y.take(a, b)))
    if isinstance(x, Slabs) and isinstance(y, (int, float)):
        return Slabs(x.shape, lambda a, b: fn(x.take(a, b), y))
    if isinstance(y, Slabs) and isinstance(x, (int, float)):
        return Slabs(y.shape, lambda a, b: fn(x, y.take(a, b)))
    raise UnsupportedError("an elementwise operation with a tensor constant")


def pool(
    fn: Callable[..., torch.Tensor], args: Any, kwargs: dict[str, Any], slab_bytes: int
) -> Slabs:
    """Max or average pooling ``fn`` with kernel = stride, no padding, over whole windows."""
    names = ("input", "kernel_size", "stride", "padding")
    given = dict(zip(names, args, strict=False)) | kwargs
    src, dims = given.pop("input"), None
    if not isinstance(src, Slabs):
        raise UnsupportedError("pooling of a constant")
    dims = len(src.shape) - 2
    kernel = per_axis(given.pop("kernel_size"), dims)
    stride = given.pop("stride", None)
    stride = kernel if stride is None or stride == [] else per_axis(stride, dims)
    padding = per_axis(given.pop("padding", 0), dims)
    extra = {k: v for k, v in given.items() if v not in (False, 1, None, True)}
    if (
        stride != kernel
        or any(padding)
        or given.get("ceil_mode", False)
        or given.get("return_indices", False)
        or given.get("dilation", 1) not in (1, (1,) * dims)
        or extra
        or any(s % k for s, k in zip(src.shape[2:], kernel, strict=True))
    ):
        raise UnsupportedError(f"pooling {kernel} / {stride}, padding {padding}")
    k0 = kernel[0]
    shape = src.shape[:2] + tuple(s // k for s, k in zip(src.shape[2:], kernel, strict=True))
    keep = {k: v for k, v in given.items() if k in ("count_include_pad", "divisor_override")}
    # a slab of the output reads k0 times as many planes, each larger: pool the input in
    # pieces of at most slab_bytes (every output plane depends on its own k0 input planes)
    per = max(1, slab_bytes // max(4 * src.shape[1] * k0 * math.prod(src.shape[3:]), 1))

    def take(a: int, b: int) -> torch.Tensor:
        parts = [
            fn(src.take(p * k0, min(p + per, b) * k0), kernel, kernel, **keep)
            for p in range(a, b, per)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    return Slabs(shape, take)


def interpolate(args: Any, kwargs: dict[str, Any]) -> Slabs:
    """``F.interpolate`` by a whole factor per axis (nearest, or linear without
    ``align_corners``): each output slab from its input planes and one more on either side."""
    names = ("input", "size", "scale_factor", "mode", "align_corners")
    given = dict(zip(names, args, strict=False)) | kwargs
    src = given["input"]
    mode = given.get("mode", "nearest")
    if (
        not isinstance(src, Slabs)
        or mode not in ("nearest", "linear", "bilinear", "trilinear")
        or given.get("align_corners")
        or given.get("antialias")
        or given.get("recompute_scale_factor")
    ):
        raise UnsupportedError(f"interpolate mode={mode}")
    dims = len(src.shape) - 2
    inner = src.shape[2:]
    if given.get("size") is not None:
        out = tuple(int(s) for s in per_axis(given["size"], dims))
    else:
        out = tuple(
            math.floor(s * f)
            for s, f in zip(inner, per_axis(given["scale_factor"], dims), strict=True)
        )
    factors = [o // i for o, i in zip(out, inner, strict=True)]
    if any(o != f * i or f < 1 for o, i, f in zip(out, inner, factors, strict=True)):
        raise UnsupportedError(f"interpolate from {inner} to {out} (not an integer factor)")
    f0, depth = factors[0], inner[0]
    # torch refuses align_corners (even False) in the nearest modes
    corners = {"align_corners": False} if mode in _LINEAR_MODES else {}

    def take(a: int, b: int) -> torch.Tensor:
        lo, hi = max(a // f0 - 1, 0), min(-(-b // f0) + 1, depth)
        piece = F.interpolate(
            src.take(lo, hi), size=((hi - lo) * f0, *out[1:]), mode=mode, **corners
        )
        return piece[:, :, a - lo * f0 : b - lo * f0]

    return Slabs(src.shape[:2] + out, take)


def cat(args: Any, kwargs: dict[str, Any]) -> Slabs:
    """``torch.cat`` of recipes of one spatial shape over the channel axis."""
    parts = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not parts or not all(isinstance(p, Slabs) for p in parts):
        raise UnsupportedError("cat of constants")
    rank = len(parts[0].shape)
    if dim % rank != 1 or any(p.shape[2:] != parts[0].shape[2:] for p in parts):
        raise UnsupportedError(f"cat over dim {dim}")
    channels = sum(p.shape[1] for p in parts)
    shape = (1, channels) + parts[0].shape[2:]
    return Slabs(shape, lambda a, b: torch.cat([p.take(a, b) for p in parts], dim=1))
