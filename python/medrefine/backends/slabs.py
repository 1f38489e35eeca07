"""A PyTorch backbone run slab by slab along its first spatial axis, instance norms included.

The whole-image activations of a 3D U-Net are what make ``set_image`` on a large volume
expensive: at 256x256x128 each 16-channel full-resolution tensor is 512 MiB, and the decoder's
last level holds four of them at once. This module runs the backbone's traced graph
(``torch.fx``, as :class:`~medrefine.models.split.SplitModel` makes it) so that only the
outputs of spatial convolutions are stored; every other node (normalisations, activations,
poolings, upsamplings, 1x1 convolutions, concatenations, sums) is a recipe that produces any
slab ``[a, b)`` of its output along the first spatial axis (z in 3D, y in 2D) on demand
(:mod:`medrefine.backends.slab_ops`, instance norms' whole-image statistics included, so
features equal the whole-image pass's to float32 rounding, unlike tiles
(:mod:`medrefine.backends.tiling`), which cannot reproduce a whole-image statistic). A
convolution is computed slab by slab from its input's slabs widened by its kernel's half-width.

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
import threading
import weakref
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn

from medrefine.backends import slab_ops
from medrefine.backends.slab_ops import CONVS, Slabs, Take, UnsupportedError, steps
from medrefine.backends.slab_store import ChunkStore, Release, last_readers

__all__ = ["SLAB_BYTES", "Slabs", "Take", "run_slabs", "slab_plan", "write"]

logger = logging.getLogger(__name__)

#: Default most bytes (float32) of one slab of one node: 8 planes of 32 channels at 256x256.
SLAB_BYTES = 64 << 20
_CHECKED: weakref.WeakKeyDictionary[nn.Module, fx.GraphModule | None] = weakref.WeakKeyDictionary()


_CHECKED_LOCK = threading.Lock()


class _Runner:
    """Evaluates the nodes of one graph on :class:`Slabs` (see the module docstring): the
    spatial convolutions here, their outputs stored; every other node through
    :mod:`medrefine.backends.slab_ops`."""

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
        return isinstance(m, CONVS) and any(k != 1 for k in m.kernel_size)

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
                    raise UnsupportedError("more than one input")
                env[node] = Slabs.stored(x)
            elif node.op == "output":
                found = fx.node.map_arg(node.args[0], lambda n: env[n])
                values = found if isinstance(found, (tuple, list)) else (found,)
                if not all(isinstance(v, Slabs) for v in values):
                    raise UnsupportedError("an output that is not a feature tensor")
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
            return slab_ops.function(node.target, args, kwargs, self.slab_bytes)
        raise UnsupportedError(f"{node.op} {node.target}")

    def _module(self, m: nn.Module, args: Any, kwargs: dict[str, Any]) -> Slabs:
        if len(args) != 1 or kwargs or not isinstance(args[0], Slabs):
            raise UnsupportedError(f"{type(m).__name__} with arguments {args}")
        src: Slabs = args[0]
        if isinstance(m, CONVS):
            return self._conv(m, src)
        return slab_ops.module(m, src, self.slab_bytes)

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
            raise UnsupportedError(f"convolution {m}")
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
        for a, b in steps(depth, max(m.in_channels, m.out_channels), plane, self.slab_bytes):
            lo, hi = max(a - half, 0), min(b + half, depth)
            piece = src.take(lo, hi)
            if a - lo < half or hi - b < half:  # zeros where the slab meets the volume's ends
                piece = F.pad(piece, (0, 0) * (dims - 1) + (half - (a - lo), half - (hi - b)))
            out.append(a, b, conv(piece, m.weight, m.bias, 1, (0,) + pad[1:], 1, m.groups))
            del piece
            release.step_done()  # stores read last here: free the planes passed
        return Slabs(shape, out.take, False)


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
            raise UnsupportedError(f"an output of shape {out.shape} for an image of {shape}")
        if out.shape[1] == 0:
            raise UnsupportedError("an output without channels (a size carrier)")
        device = out.take(0, 1).device
        size = (1, out.shape[1]) + shape
        buf = torch.empty(size, dtype=dtype, device=device, memory_format=fmt[len(shape)])
        rest = tuple(slice(0, s) for s in shape[1:])
        plane = math.prod(out.shape[3:])
        release = out.release or Release(())
        release.begin()
        for a, b in steps(shape[0], out.shape[1], plane, slab_bytes):
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
        except (UnsupportedError, RuntimeError, TypeError, ValueError, KeyError) as exc:
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
