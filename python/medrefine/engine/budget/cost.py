"""What one backbone pass costs per input voxel, measured once per network on a small probe.

:func:`profile` runs the backbone once on a seeded random probe input (64 pixels per axis in
2D, 32 in 3D, at least two pad multiples) and records, per voxel of that input:

- ``whole_bytes``: the most bytes of tensors alive at once during the pass, each node's output
  counted from the node that makes it to its last reader (storages shared by views and in-place
  operations counted once), the input included, plus while a convolution runs the copies of
  its input and output that oneDNN makes in blocks of 16 channels (a 1-channel input takes 16
  channels' bytes there): what PyTorch holds at the peak of a whole pass, before allocator
  overheads;
- ``stored_bytes``: the same, counting only the outputs that the slab executor
  (:mod:`medrefine.backends.slabs`) keeps whole (spatial convolutions and the graph's outputs);
- ``feature_channels``: float32 channels of the features, a coarser feature counting its share;
- ``flops``: floating-point operations (two per multiply-add) of the convolutions and linear
  layers;
- ``traffic``: bytes of every node's output (what the pass writes to memory at least once:
  normalisations, activations and resamplings cost this, not flops).

This needs the backbone as a ``torch.fx`` graph (what :meth:`SplitModel.from_module` makes; a
plain module is traced here). A backbone without one (an ONNX graph run by ONNX Runtime, a
module torch.fx cannot trace) is profiled from its features alone: ``whole_bytes`` is
:data:`OPAQUE_BYTES_PER_FEATURE_BYTE` times the feature bytes, ``stored_bytes`` the same, and
``flops`` is None (the caller times it instead). Profiles are kept per backbone for the life of
the process.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from medrefine.models.split import SplitModel
from medrefine.models.tracing import symbolic_trace

#: Whole-pass bytes per feature byte assumed for a backbone whose graph cannot be read: the
#: largest ratio among the networks measured for docs/session-safety.md (the zoo U-Nets and
#: MONAI's and nnU-Net's U-Nets, 2D and 3D), rounded up.
OPAQUE_BYTES_PER_FEATURE_BYTE = 12.0

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BLOCK = 16  # channels per block of oneDNN's convolution layouts on AVX-512


@dataclass(frozen=True)
class Profile:
    """Per-voxel costs of one backbone pass (see the module docstring); bytes are float32.

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: channels of the backbone's input.
        probe: the probe's spatial shape.
        whole_bytes: peak bytes of live tensors per input voxel, whole pass.
        stored_bytes: the same, counting only what the slab executor stores whole.
        feature_channels: float32 feature channels per input voxel.
        flops: floating-point operations per input voxel, None when unknown.
        traffic: bytes written by the pass's nodes per input voxel, None when unknown.
        probe_seconds: wall time of the probe pass (the first; includes one-time setup).
        graph: whether the figures come from the backbone's graph (False: from its features).
        head_bytes, head_flops, head_traffic: the same figures for one pass of the head over
            the probe's features (its inputs not counted in ``head_bytes``); 0 when the head
            cannot be read as a graph.
    """

    spatial_dims: int
    in_channels: int
    probe: tuple[int, ...]
    whole_bytes: float
    stored_bytes: float
    feature_channels: float
    flops: float | None
    traffic: float | None
    probe_seconds: float
    graph: bool
    head_bytes: float = 0.0
    head_flops: float = 0.0
    head_traffic: float = 0.0


_PROFILES: weakref.WeakKeyDictionary[nn.Module, Profile] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def in_channels(model: SplitModel) -> int:
    """Channels of the backbone's input: the preprocessing's, else the first convolution's
    (1 if neither says)."""
    if model.preprocessing.channels is not None:
        return model.preprocessing.channels
    for m in model.backbone.modules():
        if isinstance(m, _CONVS + _TRANSPOSED):
            weight = m.weight
            if isinstance(m, _TRANSPOSED):
                return int(weight.shape[0])
            return int(weight.shape[1]) * m.groups
    return 1


def probe_shape(model: SplitModel) -> tuple[int, ...]:
    """Spatial shape of the probe input: 64 pixels per axis in 2D, 32 in 3D, at least two pad
    multiples, a multiple of the pad multiple."""
    multiple = model.preprocessing.multiple
    side = max(64 if model.spatial_dims == 2 else 32, 2 * multiple)
    side = -(-side // multiple) * multiple
    return (side,) * model.spatial_dims


def profile(model: SplitModel) -> Profile:
    """The backbone's :class:`Profile`, measured on first use and kept with the backbone."""
    with _LOCK:
        found = _PROFILES.get(model.backbone)
    if found is not None:
        return found
    shape = probe_shape(model)
    channels = in_channels(model)
    x = torch.randn((1, channels, *shape), generator=torch.Generator().manual_seed(0))
    graph = _graph(model.backbone)
    with torch.no_grad():
        start = time.perf_counter()
        if graph is not None:
            meter = _Meter(graph)
            outputs = meter.run(x)
        else:
            outputs = model.backbone(x)
        seconds = time.perf_counter() - start
    voxels = math.prod(shape)
    features = tuple(_tensors(outputs))
    channels_out = sum(f.numel() for f in features) / voxels
    flops: float | None
    traffic: float | None
    if graph is not None:
        whole, stored = meter.peak / voxels, meter.stored_peak / voxels
        flops, traffic = meter.flops / voxels, meter.traffic / voxels
    else:
        whole = stored = OPAQUE_BYTES_PER_FEATURE_BYTE * 4 * channels_out
        flops = traffic = None
    head = _head_figures(model.head, features, voxels)
    found = Profile(
        model.spatial_dims,
        channels,
        shape,
        whole,
        stored,
        channels_out,
        flops,
        traffic,
        seconds,
        graph is not None,
        *head,
    )
    with _LOCK:
        _PROFILES[model.backbone] = found
    return found


def _head_figures(
    head: nn.Module, features: tuple[torch.Tensor, ...], voxels: int
) -> tuple[float, float, float]:
    """(bytes, flops, traffic) per voxel of one head pass over ``features``; zeros when the
    head is not a graph or fails on them."""
    graph = head if isinstance(head, fx.GraphModule) else None
    if graph is None:
        return 0.0, 0.0, 0.0
    meter = _Meter(graph)
    try:
        with torch.no_grad():
            meter.run(*features)
    except (RuntimeError, TypeError, ValueError):
        return 0.0, 0.0, 0.0
    inputs = sum(_storage(f)[1] for f in features)
    return max(meter.peak - inputs, 0) / voxels, meter.flops / voxels, meter.traffic / voxels


def _graph(backbone: nn.Module) -> fx.GraphModule | None:
    if isinstance(backbone, fx.GraphModule):
        return backbone
    if any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in backbone.modules()):
        try:
            return symbolic_trace(backbone)
        except Exception:  # torch.fx raises many types on control flow it cannot follow
            return None
    return None  # e.g. an ONNX graph behind a module: nothing to read


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class _Meter(fx.Interpreter):
    """Runs a graph node by node, tracking the bytes of live storages and the flops."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.modules = dict(gm.named_modules())
        self.index = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.last_use = {
            n: max((self.index[u] for u in n.users), default=i) for n, i in self.index.items()
        }
        self.live: dict[int, tuple[int, int, bool]] = {}  # storage -> (bytes, until, stored)
        self.peak = self.stored_peak = 0
        self.flops = self.traffic = 0.0

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        i = self.index[n]
        until = self.last_use[n] if n.op != "output" else i
        keep = n.op in ("placeholder", "output") or self._spatial_conv(n) or self._feeds_output(n)
        if n.op not in ("placeholder", "output"):
            self.traffic += sum(t.numel() * t.element_size() for t in _tensors(out))
        for t in _tensors(out):
            ptr, size = _storage(t)
            old = self.live.get(ptr)
            if old is not None:  # a view or an in-place result: one storage, its life extended
                size, until, keep = old[0], max(old[1], until), old[2] or keep
            self.live[ptr] = (size, until, keep)
        self._count(n, out)
        live = sum(b for b, _, _ in self.live.values())
        self.peak = max(self.peak, live + self._workspace(n, out))
        stored = sum(b for b, _, k in self.live.values() if k)
        self.stored_peak = max(self.stored_peak, stored)
        self.live = {p: v for p, v in self.live.items() if v[1] > i}
        return out

    def _workspace(self, n: fx.Node, out: Any) -> int:
        """Bytes a convolution holds besides its input and output while it runs: oneDNN's
        copies of both in a layout of channel blocks (channels rounded up to 16)."""
        m = self._module(n)
        inputs = n.args[0] if n.args else None
        if not isinstance(m, _CONVS + _TRANSPOSED) or not isinstance(out, torch.Tensor):
            return 0
        if not isinstance(inputs, fx.Node) or not isinstance(self.env.get(inputs), torch.Tensor):
            return 0
        x = self.env[inputs]
        blocks = 4 * (-(-int(x.shape[1]) // _BLOCK) * _BLOCK) * x[0, 0].numel()
        return blocks + 4 * (-(-int(out.shape[1]) // _BLOCK) * _BLOCK) * out[0, 0].numel()

    def _module(self, n: fx.Node) -> nn.Module | None:
        return self.modules.get(str(n.target)) if n.op == "call_module" else None

    def _spatial_conv(self, n: fx.Node) -> bool:
        m = self._module(n)
        return isinstance(m, _CONVS + _TRANSPOSED) and any(k != 1 for k in m.kernel_size)

    def _feeds_output(self, n: fx.Node) -> bool:
        return any(u.op == "output" for u in n.users)

    def _count(self, n: fx.Node, out: Any) -> None:
        m = self._module(n)
        if not isinstance(out, torch.Tensor) or m is None:
            return
        if isinstance(m, _CONVS):
            self.flops += 2.0 * out.numel() * m.in_channels / m.groups * math.prod(m.kernel_size)
        elif isinstance(m, _TRANSPOSED):
            inputs = n.args[0]
            size = self.env[inputs].numel() if isinstance(inputs, fx.Node) else out.numel()
            self.flops += 2.0 * size * m.out_channels / m.groups * math.prod(m.kernel_size)
        elif isinstance(m, nn.Linear):
            self.flops += 2.0 * out.numel() * m.in_features
