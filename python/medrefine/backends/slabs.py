"""A PyTorch backbone run slab by slab along its first spatial axis, instance norms included.

The whole-image activations of a 3D U-Net are what make ``set_image`` on a large volume
expensive: at 256x256x128 each 16-channel full-resolution tensor is 512 MiB, and the decoder's
last level holds four of them at once. This module runs the backbone's traced graph
(``torch.fx``, as :class:`~medrefine.models.split.SplitModel` makes it) so that only the
outputs of spatial convolutions are stored; every other node (normalisations, activations,
poolings, upsamplings, 1x1 convolutions, concatenations, sums) is a recipe that produces any
slab ``[a, b)`` of its output along the first spatial axis (z in 3D, y in 2D) on demand. A
convolution is computed slab by slab from its input's slabs widened by its kernel's half-width.
An instance norm's statistics are summed (float64) over its input's slabs, then applied per
slab, so features equal the whole-image pass's to float32 rounding, unlike tiles
(:mod:`medrefine.backends.tiling`), which cannot reproduce a whole-image statistic.

The graph outputs are written slab by slab, cropped to the image, into preallocated
channels-last buffers of the requested dtype (float16 halves the cached features). A stored
convolution output is kept in per-slab chunks that its last reader (the next convolution, or
the writing of the outputs) frees as it passes them (:mod:`medrefine.backends.slab_store`), and
a pooling reads its input in pieces of at most ``slab_bytes``: at 256x256x128 the peak of
``set_image`` drops from about 1940 to about 1500 MiB with the same features.

What it runs: ``Conv{1,2,3}d`` with stride 1, dilation 1, zero padding of half an odd kernel;
``InstanceNorm`` without running statistics; ``BatchNorm`` in eval mode; elementwise
activations; max/average pooling with kernel = stride and no padding; ``interpolate`` by an
integer factor (nearest, or linear without ``align_corners``); ``cat`` over channels; ``+``
and ``*``; shape look-ups. :func:`slab_plan` checks a backbone once, on a probe input against
its whole-image output; any other operation, or a difference, means None and the caller runs the
backbone whole.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn

from medrefine.backends.slab_store import ChunkStore, Release, last_readers

logger = logging.getLogger(__name__)

Take = Callable[[int, int], torch.Tensor]
#: Default most bytes (float32) of one slab of one node: 8 planes of 32 channels at 256x256.
SLAB_BYTES = 64 << 20
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
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
_POOLS: dict[object, Callable[..., torch.Tensor]] = {
    F.max_pool1d: F.max_pool1d,
    F.max_pool2d: F.max_pool2d,
    F.max_pool3d: F.max_pool3d,
    F.avg_pool1d: F.avg_pool1d,
    F.avg_pool2d: F.avg_pool2d,
    F.avg_pool3d: F.avg_pool3d,
}
_CHECKED: weakref.WeakKeyDictionary[nn.Module, fx.GraphModule | None] = weakref.WeakKeyDictionary()


_CHECKED_LOCK = threading.Lock()


class _UnsupportedError(Exception):
    """A node the slab executor cannot run exactly."""


class Slabs:
    """A ``(1, C, *spatial)`` float32 tensor that may never exist whole: ``take(a, b)`` returns
    its slab ``[a, b)`` along the first spatial axis (axis 2); ``fresh``: each slab is a new
    tensor that the caller may overwrite (else it may be a view of a stored one). ``release``
    (a graph output's): what :func:`write` frees as it goes, when this output reads last."""

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


def _steps(depth: int, channels: int, plane: int, slab_bytes: int) -> list[tuple[int, int]]:
    """``[a, b)`` ranges covering ``depth`` planes, each under ``slab_bytes`` of float32."""
    step = max(1, slab_bytes // max(4 * channels * plane, 1))
    return [(a, min(a + step, depth)) for a in range(0, depth, step)]


class _Runner:
    """Evaluates the nodes of one graph on :class:`Slabs` (see the module docstring)."""

    def __init__(self, gm: fx.GraphModule, slab_bytes: int) -> None:
        self.gm, self.slab_bytes = gm, slab_bytes
        self.modules = dict(gm.named_modules())
        self.last_reader = last_readers(gm, self._stores_output)
        # weak: a stored output lives only while a recipe still reads it
        self.stores: weakref.WeakValueDictionary[fx.Node, ChunkStore] = (
            weakref.WeakValueDictionary()
        )
        self.node: fx.Node | None = None  # the node being evaluated

    def _stores_output(self, node: fx.Node) -> bool:
        """Whether ``node`` is a spatial convolution (its output is stored, not a recipe)."""
        m = self.modules.get(str(node.target)) if node.op == "call_module" else None
        return isinstance(m, _CONVS) and any(k != 1 for k in m.kernel_size)

    def _release_for(self, reader: fx.Node) -> Release:
        """The stores ``reader`` reads last (freed as it passes them)."""
        return Release(s for n, s in list(self.stores.items()) if self.last_reader.get(n) is reader)

    def run(self, x: torch.Tensor) -> list[Slabs]:
        env: dict[fx.Node, Any] = {}
        last: dict[fx.Node, fx.Node] = {}
        for node in self.gm.graph.nodes:
            for arg in node.all_input_nodes:
                last[arg] = node
        outputs: list[Slabs] = []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if env:
                    raise _UnsupportedError("more than one input")
                env[node] = Slabs.stored(x)
            elif node.op == "output":
                found = fx.node.map_arg(node.args[0], lambda n: env[n])
                values = found if isinstance(found, (tuple, list)) else (found,)
                if not all(isinstance(v, Slabs) for v in values):
                    raise _UnsupportedError("an output that is not a feature tensor")
                outputs = list(values)
                if outputs and all(outputs[-1] is not v for v in outputs[:-1]):
                    outputs[-1].release = self._release_for(node)  # written last
            else:
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                self.node = node
                env[node] = self._node(node, args, kwargs)
            for arg in node.all_input_nodes:
                if last.get(arg) is node:
                    del env[arg]  # free as we go: a stored tensor lives while a recipe needs it
        return outputs

    def _node(self, node: fx.Node, args: Any, kwargs: dict[str, Any]) -> Any:
        tensors: list[Slabs] = []
        fx.node.map_aggregate(
            (args, kwargs), lambda a: tensors.append(a) if isinstance(a, Slabs) else None
        )
        if not tensors and node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]  # shapes, sizes
        if node.op == "call_function" and node.target is getattr and args[1] == "shape":
            return torch.Size(args[0].shape)
        if node.op == "call_method" and node.target == "size" and isinstance(args[0], Slabs):
            shape = torch.Size(args[0].shape)
            return shape if len(args) == 1 else shape[args[1]]
        if node.op == "call_module":
            return self._module(self.modules[str(node.target)], args, kwargs)
        if node.op == "call_function":
            return self._function(node.target, args, kwargs)
        raise _UnsupportedError(f"{node.op} {node.target}")

    def _module(self, m: nn.Module, args: Any, kwargs: dict[str, Any]) -> Slabs:
        if len(args) != 1 or kwargs or not isinstance(args[0], Slabs):
            raise _UnsupportedError(f"{type(m).__name__} with arguments {args}")
        src: Slabs = args[0]
        if isinstance(m, _CONVS):
            return self._conv(m, src)
        if isinstance(m, _INSTANCE) and not m.track_running_stats:
            return self._instance_norm(m, src)
        if isinstance(m, _BATCH) and not m.training and m.track_running_stats:
            return Slabs(src.shape, lambda a, b: m(src.take(a, b)))
        if isinstance(m, _POINTWISE_MODULES) and not (m.training and isinstance(m, nn.Dropout)):
            if getattr(m, "inplace", False) and not src.fresh:  # never write into a stored one
                return Slabs(src.shape, lambda a, b: m(src.take(a, b).clone()))
            return Slabs(src.shape, lambda a, b: m(src.take(a, b)))
        raise _UnsupportedError(type(m).__name__)

    def _conv(self, m: nn.Conv1d | nn.Conv2d | nn.Conv3d, src: Slabs) -> Slabs:
        kernel, dims = tuple(m.kernel_size), len(m.kernel_size)
        pad = m.padding if isinstance(m.padding, tuple) else None
        if m.padding == "same":
            pad = tuple(k // 2 for k in kernel)
        if (
            any(s != 1 for s in m.stride)
            or any(d != 1 for d in m.dilation)
            or m.padding_mode != "zeros"
            or any(k % 2 == 0 for k in kernel)
            or pad != tuple(k // 2 for k in kernel)
            or len(src.shape) != dims + 2
        ):
            raise _UnsupportedError(f"convolution {m}")
        shape = (1, m.out_channels) + src.shape[2:]
        if all(k == 1 for k in kernel):
            return Slabs(shape, lambda a, b: m(src.take(a, b)))
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
        half, depth = kernel[0] // 2, src.depth
        out = ChunkStore(shape)
        if self.node is not None:
            self.stores[self.node] = out
        release = self._release_for(self.node) if self.node is not None else Release(())
        release.begin()
        plane = math.prod(src.shape[3:])
        for a, b in _steps(depth, max(m.in_channels, m.out_channels), plane, self.slab_bytes):
            lo, hi = max(a - half, 0), min(b + half, depth)
            piece = src.take(lo, hi)
            if a - lo < half or hi - b < half:  # zeros where the slab meets the volume's ends
                piece = F.pad(piece, (0, 0) * (dims - 1) + (half - (a - lo), half - (hi - b)))
            out.append(a, b, conv(piece, m.weight, m.bias, 1, (0,) + pad[1:], 1, m.groups))
            del piece
            release.step_done()  # stores read last here: free the planes passed
        return Slabs(shape, out.take, False)

    def _instance_norm(self, m: nn.modules.instancenorm._InstanceNorm, src: Slabs) -> Slabs:
        channels = src.shape[1]
        axes = tuple(range(2, len(src.shape)))
        plane = math.prod(src.shape[3:])
        # per-slab mean and variance (float32), merged in float64 (Chan et al.'s pairwise rule)
        count, mean, m2 = 0, torch.zeros(channels, dtype=torch.float64), None
        for a, b in _steps(src.depth, channels, plane, self.slab_bytes):
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

    def _function(self, target: Any, args: Any, kwargs: dict[str, Any]) -> Slabs:
        if target in _POINTWISE_FUNCTIONS and isinstance(args[0], Slabs):
            fn, src = _POINTWISE_FUNCTIONS[target], args[0]
            rest = {k: v for k, v in kwargs.items() if k != "inplace"}
            return Slabs(src.shape, lambda a, b: fn(src.take(a, b), *args[1:], **rest))
        if target in _BINARY and len(args) == 2 and not kwargs:
            return self._binary(_BINARY[target], args[0], args[1])
        if target in _POOLS:
            return self._pool(_POOLS[target], args, kwargs)
        if target is F.interpolate:
            return self._interpolate(args, kwargs)
        if target is torch.cat:
            return self._cat(args, kwargs)
        raise _UnsupportedError(getattr(target, "__name__", str(target)))

    def _binary(self, fn: Callable[[Any, Any], torch.Tensor], x: Any, y: Any) -> Slabs:
        if isinstance(x, Slabs) and isinstance(y, Slabs):
            if x.shape != y.shape:
                raise _UnsupportedError(f"broadcast between {x.shape} and {y.shape}")
            return Slabs(x.shape, lambda a, b: fn(x.take(a, b), y.take(a, b)))
        if isinstance(x, Slabs) and isinstance(y, (int, float)):
            return Slabs(x.shape, lambda a, b: fn(x.take(a, b), y))
        if isinstance(y, Slabs) and isinstance(x, (int, float)):
            return Slabs(y.shape, lambda a, b: fn(x, y.take(a, b)))
        raise _UnsupportedError("an elementwise operation with a tensor constant")

    def _pool(self, fn: Callable[..., torch.Tensor], args: Any, kwargs: dict[str, Any]) -> Slabs:
        names = ("input", "kernel_size", "stride", "padding")
        given = dict(zip(names, args, strict=False)) | kwargs
        src, dims = given.pop("input"), None
        if not isinstance(src, Slabs):
            raise _UnsupportedError("pooling of a constant")
        dims = len(src.shape) - 2
        kernel = _per_axis(given.pop("kernel_size"), dims)
        stride = given.pop("stride", None)
        stride = kernel if stride is None or stride == [] else _per_axis(stride, dims)
        padding = _per_axis(given.pop("padding", 0), dims)
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
            raise _UnsupportedError(f"pooling {kernel} / {stride}, padding {padding}")
        k0 = kernel[0]
        shape = src.shape[:2] + tuple(s // k for s, k in zip(src.shape[2:], kernel, strict=True))
        keep = {k: v for k, v in given.items() if k in ("count_include_pad", "divisor_override")}
        # a slab of the output reads k0 times as many planes, each larger: pool the input in
        # pieces of at most slab_bytes (every output plane depends on its own k0 input planes)
        per = max(1, self.slab_bytes // max(4 * src.shape[1] * k0 * math.prod(src.shape[3:]), 1))

        def take(a: int, b: int) -> torch.Tensor:
            parts = [
                fn(src.take(p * k0, min(p + per, b) * k0), kernel, kernel, **keep)
                for p in range(a, b, per)
            ]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

        return Slabs(shape, take)

    def _interpolate(self, args: Any, kwargs: dict[str, Any]) -> Slabs:
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
            raise _UnsupportedError(f"interpolate mode={mode}")
        dims = len(src.shape) - 2
        inner = src.shape[2:]
        if given.get("size") is not None:
            out = tuple(int(s) for s in _per_axis(given["size"], dims))
        else:
            out = tuple(
                math.floor(s * f)
                for s, f in zip(inner, _per_axis(given["scale_factor"], dims), strict=True)
            )
        factors = [o // i for o, i in zip(out, inner, strict=True)]
        if any(o != f * i or f < 1 for o, i, f in zip(out, inner, factors, strict=True)):
            raise _UnsupportedError(f"interpolate from {inner} to {out} (not an integer factor)")
        f0, depth = factors[0], inner[0]

        def take(a: int, b: int) -> torch.Tensor:
            lo, hi = max(a // f0 - 1, 0), min(-(-b // f0) + 1, depth)
            piece = F.interpolate(
                src.take(lo, hi), size=((hi - lo) * f0, *out[1:]), mode=mode, align_corners=False
            )
            return piece[:, :, a - lo * f0 : b - lo * f0]

        return Slabs(src.shape[:2] + out, take)

    def _cat(self, args: Any, kwargs: dict[str, Any]) -> Slabs:
        parts = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if not parts or not all(isinstance(p, Slabs) for p in parts):
            raise _UnsupportedError("cat of constants")
        rank = len(parts[0].shape)
        if dim % rank != 1 or any(p.shape[2:] != parts[0].shape[2:] for p in parts):
            raise _UnsupportedError(f"cat over dim {dim}")
        channels = sum(p.shape[1] for p in parts)
        shape = (1, channels) + parts[0].shape[2:]
        return Slabs(shape, lambda a, b: torch.cat([p.take(a, b) for p in parts], dim=1))


def _per_axis(value: Any, dims: int) -> tuple[Any, ...]:
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) != dims:
            raise _UnsupportedError(f"{value} for {dims} spatial axes")
        return tuple(value)
    return (value,) * dims


def _graph(backbone: nn.Module) -> fx.GraphModule | None:
    """The traced graph of ``backbone`` (itself, or the ``inner`` graph of a tuple wrapper)."""
    if isinstance(backbone, fx.GraphModule):
        return backbone
    inner = getattr(backbone, "inner", None)
    if isinstance(inner, fx.GraphModule) and len(list(backbone.children())) == 1:
        return inner
    return None


def write(
    outputs: list[Slabs],
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    slab_bytes: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """Each output cropped to ``shape`` (the image inside the padded input) as a new
    ``(1, C_i, *shape)`` channels-last tensor of ``dtype``, filled slab by slab (of at most
    ``slab_bytes``, default :data:`SLAB_BYTES`)."""
    slab_bytes = SLAB_BYTES if slab_bytes is None else slab_bytes
    fmt = {1: torch.contiguous_format, 2: torch.channels_last, 3: torch.channels_last_3d}
    result = []
    for out in outputs:
        if len(out.shape) != len(shape) + 2 or any(
            o < s for o, s in zip(out.shape[2:], shape, strict=True)
        ):
            raise _UnsupportedError(f"an output of shape {out.shape} for an image of {shape}")
        if out.shape[1] == 0:
            raise _UnsupportedError("an output without channels (a size carrier)")
        device = out.take(0, 1).device
        size = (1, out.shape[1]) + shape
        buf = torch.empty(size, dtype=dtype, device=device, memory_format=fmt[len(shape)])
        rest = tuple(slice(0, s) for s in shape[1:])
        plane = math.prod(out.shape[3:])
        release = out.release or Release(())
        release.begin()
        for a, b in _steps(shape[0], out.shape[1], plane, slab_bytes):
            buf[:, :, a:b] = out.take(a, b)[(slice(None), slice(None), slice(None)) + rest]
            release.step_done()  # the stores only this output still reads: free what it passed
        result.append(buf)
    return tuple(result)


def slab_plan(
    backbone: nn.Module, channels: int, spatial_dims: int, multiple: int
) -> fx.GraphModule | None:
    """The backbone's graph if it runs slab by slab exactly, else None (checked once per module).

    The check runs a seeded random ``(1, channels, P, ..., P)`` float32 probe (``P`` = 4 pad
    multiples, at least 16) whole and in slabs of a few planes (so slab borders fall inside
    every level of the network); any unsupported node, or a
    difference over ``1e-4`` of the largest feature, means None (logged at INFO).
    """
    with _CHECKED_LOCK:  # sessions on server threads share a model: one probe per backbone
        if backbone not in _CHECKED:
            _CHECKED[backbone] = _check(backbone, channels, spatial_dims, multiple)
        return _CHECKED[backbone]


def _check(
    backbone: nn.Module, channels: int, spatial_dims: int, multiple: int
) -> fx.GraphModule | None:
    gm = _graph(backbone)
    verdict: fx.GraphModule | None = None
    if gm is None:
        logger.info("slab backbone: not a traced graph; it runs whole")
    else:
        size = max(16, 4 * multiple)
        size = -(-size // multiple) * multiple
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((1, channels) + (size,) * spatial_dims, generator=generator)
        try:
            with torch.no_grad():
                out = backbone(x)
                whole = tuple(out) if isinstance(out, (tuple, list)) else (out,)
                # slabs of about 4 planes of 16 channels: many slab borders, at every level
                slab = 4 * 16 * 4 * size ** (spatial_dims - 1)
                got = write(run_slabs(gm, x, slab), (size,) * spatial_dims, torch.float32, slab)
            scale = max((float(w.abs().max()) for w in whole), default=1.0)
            same = len(got) == len(whole) and all(
                g.shape == w.shape and bool(((g - w).abs() <= 1e-4 * max(scale, 1.0)).all())
                for g, w in zip(got, whole, strict=False)
            )
            verdict = gm if same else None
            if not same:
                logger.info(
                    "slab backbone: probe features differ from the whole pass; it runs whole"
                )
        except (_UnsupportedError, RuntimeError, TypeError, ValueError, KeyError) as exc:
            logger.info("slab backbone: %s is not supported; it runs whole", exc)
    return verdict


def run_slabs(gm: fx.GraphModule, x: torch.Tensor, slab_bytes: int | None = None) -> list[Slabs]:
    """The graph's outputs for input ``x`` (``(1, C, *padded)`` float32) as :class:`Slabs`:
    every spatial convolution has run (its output stored whole); the rest runs as
    :func:`write` takes the slabs. Call both under ``torch.no_grad()``.

    Args:
        gm: a graph :func:`slab_plan` accepted.
        x: the preprocessed input.
        slab_bytes: most bytes of float32 one slab of one node takes (default
            :data:`SLAB_BYTES`).
    """
    return _Runner(gm, SLAB_BYTES if slab_bytes is None else slab_bytes).run(x)
