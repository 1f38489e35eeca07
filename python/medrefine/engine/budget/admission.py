"""Admission: what ``set_image`` will cost, estimated before it computes anything, and refused
over a budget.

:func:`estimate` predicts the peak resident memory and the time of ``set_image`` on an image of
a given spatial shape, for a model and backend, from the backbone's per-voxel
:class:`~medrefine.engine.budget.cost.Profile` and constants measured on the reference machine (a
2-core Intel Xeon, 24 GiB, torch 2.13 on the CPU; figures and how they were measured in
docs/session-safety.md):

- peak memory: the larger of the backbone's phase (its live tensors times a measured overhead
  for allocator and convolution workspaces, on the path ``set_image`` takes: whole, slab by
  slab, or in tiles, as :func:`medrefine.engine.budget.features.compute_features` chooses) and the
  phase after it (stored features, the z-scored image, the network's logits and mask, and the
  head's temporaries);
- held memory: what the session keeps once ``set_image`` returns;
- time: the backbone's floating-point operations over a measured throughput (per spatial
  dimensionality, backend and path).

:func:`admit` refuses with :class:`~medrefine.errors.ResourceError`, naming the estimate and the
limit, an image whose estimate is over ``SessionLimits.max_set_image_bytes`` or
``max_set_image_seconds``, or over the memory this machine has available (``MemAvailable``).
Over the memory budget, a backbone that can be tiled exactly (no whole-image statistic) runs in
tiles small enough to fit instead: tiling bounds the backbone's activations, not the stored
features nor the time. Backends off the CPU (a GPU) have no measured figures: only the voxel
bound applies to them.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from medrefine.backends import FeatureExtractor
from medrefine.backends.tiling import backbone_radius, plan_tiles
from medrefine.engine.budget.cost import Profile, profile
from medrefine.engine.budget.limits import SessionLimits
from medrefine.engine.head.pointwise import as_row_head
from medrefine.errors import MedrefineError, ResourceError
from medrefine.models.split import SplitModel

_GIB = float(1 << 30)


def size(nbytes: float) -> str:
    """``nbytes`` for a message: ``"1.25 GiB"``, or ``"312 MiB"`` under 1 GiB."""
    if nbytes >= _GIB:
        return f"{nbytes / _GIB:.2f} GiB"
    return f"{nbytes / (1 << 20):.0f} MiB"


#: Resident bytes per byte of the backbone's live tensors (:class:`Profile`'s
#: ``whole_bytes``) at the peak of a whole pass in PyTorch; measured 0.87-1.01 on the zoo
#: networks and nnU-Net's U-Nets (docs/session-safety.md).
WHOLE_OVERHEAD = 1.05
#: The least bytes per padded voxel a whole pass takes, whatever the network: measured 209-240
#: on MONAI's UNet (2D and 3D), whose few channels (2 to 16) count for less than the input's
#: copies and oneDNN's 16-channel blocks.
WHOLE_FLOOR = 256.0
#: ONNX Runtime's peak per byte of live tensors, beside what the session holds (its arena
#: keeps its blocks after the run): measured 1.06-1.42.
ONNXRUNTIME_OVERHEAD = 1.5
#: The slab executor's working memory beside what the session holds: a fixed part, bytes, and
#: a part per voxel (measured 100-188 MiB over the held memory, 1M to 8.4M voxels).
SLAB_FIXED = 192.0 * (1 << 20)
SLAB_PER_VOXEL = 8.0
#: What a session holds besides its per-voxel arrays (the head's copy, its checks' verdicts,
#: allocator slack): measured up to 33 MiB over the per-voxel figures.
HELD_FIXED = 32.0 * (1 << 20)
#: Bytes per voxel the phase after the backbone takes beside what the session holds (labels,
#: maxima, the mask's copies): measured 23 with a pointwise head; a head with spatial layers
#: (evaluated in crops) measured 65.
HEAD_POINTWISE = 16.0
HEAD_SPATIAL = 72.0

#: Time: single-thread CPU seconds per voxel of set_image = ``SESSION_SECONDS`` + the
#: backbone's and head's flops / ``FLOPS_PER_SECOND`` + their bytes written /
#: ``BYTES_PER_SECOND``; the wall time on the reference machine's 2 threads is that over
#: ``THREAD_SPEEDUP``. Chosen so that every network measured is at or under it (single-thread
#: CPU seconds on 7 networks; 2-thread speedups measured 1.15-1.72).
SESSION_SECONDS = 1.0e-6
FLOPS_PER_SECOND = 80e9
BYTES_PER_SECOND = 1.5e9
THREAD_SPEEDUP = 1.15
#: The slab executor's CPU time per whole pass's (it recomputes slab margins): measured
#: 0.93-1.24.
SLAB_SLOWDOWN = 1.3
#: A backbone whose graph cannot be read: seconds per voxel are the probe pass's, times this.
OPAQUE_TIME_FACTOR = 1.5


@dataclass(frozen=True)
class Estimate:
    """What ``set_image`` of one image costs on the reference machine.

    Attributes:
        shape: the image's spatial shape (array order).
        padded: voxels of the padded network input.
        path: ``"whole"``, ``"slabs"`` or ``"tiles"`` (see
            :func:`medrefine.engine.budget.features.compute_features`), or ``"cached"`` (features
            from the cache: no backbone pass).
        tile_voxels: the tile size, voxels, on the ``"tiles"`` path; else None.
        peak_bytes: resident memory ``set_image`` adds at its peak, bytes.
        held_bytes: resident memory the session keeps once ``set_image`` returns, bytes.
        seconds: wall time on the reference machine (2 cores), seconds.
    """

    shape: tuple[int, ...]
    padded: int
    path: str
    tile_voxels: int | None
    peak_bytes: float
    held_bytes: float
    seconds: float

    def describe(self) -> str:
        """E.g. ``"about 11.20 GiB at its peak and 610 s (whole backbone)"``."""
        how = {
            "whole": "whole backbone",
            "slabs": "backbone slab by slab",
            "cached": "features cached",
        }.get(self.path)
        if how is None:
            how = f"backbone in tiles of {self.tile_voxels:,} voxels"
        return f"about {size(self.peak_bytes)} at its peak and {self.seconds:.0f} s ({how})"


def _kind(backend: FeatureExtractor) -> str | None:
    """``"torch"`` or ``"onnxruntime"`` for a backend on the CPU; None for anything else."""
    name = str(getattr(backend, "name", ""))
    if name == "torch-cpu":
        return "torch"
    if name == "onnxruntime-CPUExecutionProvider":
        return "onnxruntime"
    return None


def _storage_bytes(channels: float, voxels: int, limits: SessionLimits) -> float:
    """Bytes per feature element as stored (the rule of engine.features.storage_dtype)."""
    over = limits.float16_feature_bytes
    return 2.0 if over is not None and 4 * channels * voxels > over else 4.0


def _slabs(
    model: SplitModel, backend: FeatureExtractor, padded: int, limits: SessionLimits
) -> bool:
    """Whether compute_features runs this backbone slab by slab (its graph checked once)."""
    from medrefine.backends import TorchBackend
    from medrefine.backends.slabs import slab_plan

    slab = limits.slab_voxels
    if slab is None or padded <= slab or not isinstance(backend, TorchBackend):
        return False
    if backend.device.type != "cpu":
        return False
    prep = model.preprocessing
    channels = profile(model).in_channels
    return slab_plan(backend.backbone, channels, model.spatial_dims, prep.multiple) is not None


def estimate(
    model: SplitModel,
    backend: FeatureExtractor,
    shape: tuple[int, ...],
    limits: SessionLimits,
    tile_voxels: int | None = None,
    cached: bool = False,
) -> Estimate | None:
    """The cost of ``set_image`` on an image of spatial ``shape``; None when the backend has no
    measured figures (off the CPU) or the backbone cannot be probed.

    ``tile_voxels`` (default ``limits.max_tile_voxels``) puts a padded input over it on the
    tiles path, as compute_features does. ``cached``: the features are in the cache, so only
    the phase after the backbone counts (path ``"cached"``, no time).
    """
    kind = _kind(backend)
    if kind is None:
        return None
    try:
        prof = profile(model)
    except (MedrefineError, RuntimeError, ValueError, TypeError):
        return None  # e.g. a network of one fixed input size: nothing to scale from
    multiple = model.preprocessing.multiple
    padded = math.prod(-(-s // multiple) * multiple for s in shape)
    voxels = math.prod(shape)
    tile = limits.max_tile_voxels if tile_voxels is None else tile_voxels
    stored = prof.feature_channels * _storage_bytes(prof.feature_channels, voxels, limits)
    held = HELD_FIXED + voxels * (stored + 4.0 * prof.in_channels + 4.0 * model.num_classes + 2.0)
    pointwise = as_row_head(model.head) is not None
    after = held + voxels * (HEAD_POINTWISE if pointwise else HEAD_SPATIAL)
    if cached:
        return Estimate(shape, padded, "cached", None, after, held, 0.0)
    seconds = _seconds(prof, padded, voxels)
    # converting the float32 features to their stored form holds one copy beside them
    convert = 4.0 * prof.feature_channels + (stored if stored < 4 * prof.feature_channels else 0)
    whole = max(prof.whole_bytes, WHOLE_FLOOR)
    if tile is not None and padded > tile:
        path = "tiles"
        backbone = WHOLE_OVERHEAD * whole * tile + voxels * convert
        seconds *= _tile_overlap(model, shape, tile)
    elif kind == "torch" and _slabs(model, backend, padded, limits):
        path, tile = "slabs", None
        backbone = held + SLAB_FIXED + SLAB_PER_VOXEL * voxels
        seconds *= SLAB_SLOWDOWN
    elif kind == "onnxruntime":
        path, tile = "whole", None
        backbone = held + ONNXRUNTIME_OVERHEAD * whole * padded
    else:
        path, tile = "whole", None
        backbone = max(WHOLE_OVERHEAD * whole * padded, voxels * convert)
    return Estimate(shape, padded, path, tile, max(backbone, after), held, seconds)


def _tile_overlap(model: SplitModel, shape: tuple[int, ...], tile: int) -> float:
    """Voxels the tiles run (margins included) per padded voxel."""
    margin = tile_margin(model)
    if margin is None:
        return 1.0
    multiple = model.preprocessing.multiple
    padded = tuple(-(-s // multiple) * multiple for s in shape)
    try:
        core = plan_tiles(padded, margin, multiple, tile)
    except ResourceError:
        return 1.0
    run = 1
    for p, c in zip(padded, core, strict=True):
        run *= sum(min(p, s + c + margin) - max(0, s - margin) for s in range(0, p, c))
    return run / math.prod(padded)


def _seconds(prof: Profile, padded: int, voxels: int) -> float:
    """Wall seconds of set_image's passes on the reference machine (see the constants)."""
    if prof.flops is None or prof.traffic is None:
        per_voxel = OPAQUE_TIME_FACTOR * prof.probe_seconds / math.prod(prof.probe)
        return per_voxel * padded + SESSION_SECONDS * voxels / THREAD_SPEEDUP
    flops = prof.flops * padded + prof.head_flops * voxels
    traffic = prof.traffic * padded + prof.head_traffic * voxels
    cpu = SESSION_SECONDS * voxels + flops / FLOPS_PER_SECOND + traffic / BYTES_PER_SECOND
    return cpu / THREAD_SPEEDUP


def _meminfo(key: str) -> float | None:
    """A ``/proc/meminfo`` figure in bytes; None where it is not known."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_bytes() -> float | None:
    """Memory this machine can still give, bytes (``MemAvailable``); None where unknown."""
    return _meminfo("MemAvailable")


def total_bytes() -> float | None:
    """This machine's memory, bytes (``MemTotal``); None where unknown."""
    return _meminfo("MemTotal")


def admit(
    model: SplitModel,
    backend: FeatureExtractor,
    shape: tuple[int, ...],
    limits: SessionLimits,
    cached: bool = False,
) -> SessionLimits:
    """The limits ``set_image`` of an image of spatial ``shape`` runs under, or ResourceError.
    ``cached``: its features are in the cache (only the phase after the backbone counts).

    Returns ``limits`` itself, or a copy whose ``max_tile_voxels`` puts the backbone in tiles
    when that alone brings the estimate within the memory budget.

    Raises:
        ResourceError: the estimate's time is over ``limits.max_set_image_seconds``, or its peak
            memory over ``limits.max_set_image_bytes`` or over what this machine has available,
            naming the estimate and the limit.
    """
    found = estimate(model, backend, shape, limits, cached=cached)
    if found is None:
        return limits
    what = f"set_image of an image of spatial shape {shape} ({math.prod(shape):,} voxels)"
    seconds = limits.max_set_image_seconds
    if seconds is not None and found.seconds > seconds:
        raise ResourceError(
            f"{what} would take {found.describe()}, more than this session's limit of "
            f"{seconds:.0f} s (SessionLimits.max_set_image_seconds; estimated for the 2-core "
            "reference machine): crop or downsample the image, or raise the limit on a faster "
            "server"
        )
    budget, source = _memory_budget(limits)
    if budget is None or found.peak_bytes <= budget:
        return limits
    tiled = None if cached else _tiled(model, backend, shape, limits, budget)
    if tiled is not None:
        return tiled
    raise ResourceError(
        f"{what} would take {found.describe()}, more than {source} of "
        f"{size(budget)}: crop or downsample the image"
        + ("" if found.path == "tiles" else "; the backbone cannot be tiled to fit")
    )


def _memory_budget(limits: SessionLimits) -> tuple[float | None, str]:
    """The smaller of the session's memory limit and what the machine has available."""
    configured = limits.max_set_image_bytes
    machine = available_bytes()
    if machine is not None and (configured is None or machine < configured):
        return machine, "the memory this machine has available (MemAvailable)"
    if configured is None:
        return None, ""
    return float(configured), "this session's limit (SessionLimits.max_set_image_bytes)"


def _tiled(
    model: SplitModel,
    backend: FeatureExtractor,
    shape: tuple[int, ...],
    limits: SessionLimits,
    budget: float,
) -> SessionLimits | None:
    """Limits with the largest tile that brings the estimate within ``budget``, if the
    backbone can be tiled and such a tile exists; else None."""
    if limits.max_tile_voxels is not None:
        return None  # the caller chose the tiles
    margin = tile_margin(model)
    if margin is None:
        return None
    multiple = model.preprocessing.multiple
    padded = tuple(-(-s // multiple) * multiple for s in shape)
    smallest = max(
        math.prod(min(multiple + 2 * margin, p) for p in padded),
        _probe_side(margin, len(padded), multiple) ** len(padded),  # the tiler's own probe
    )
    tile = math.prod(padded) // 2
    while tile >= smallest:
        tiled = replace(limits, max_tile_voxels=tile)
        found = estimate(model, backend, shape, tiled)
        if found is not None and found.peak_bytes <= budget:
            try:
                plan_tiles(padded, margin, multiple, tile)
            except ResourceError:
                return None
            return tiled
        tile //= 2
    return None


#: Largest probe (voxels) the receptive-field measurement of :func:`tile_margin` may run
#: (512^2 or 64^3: a receptive field wider than that makes tiles mostly margin anyway).
PROBE_VOXELS = 1 << 18
#: Layers whose output at one pixel depends on the whole image: a backbone with one is not
#: tiled (the tiler would refuse it after probing).
_WHOLE_IMAGE = (
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_MARGINS: weakref.WeakKeyDictionary[nn.Module, int | None] = weakref.WeakKeyDictionary()
_MARGINS_LOCK = threading.Lock()


def tile_margin(model: SplitModel) -> int | None:
    """The tile margin of the backbone (its receptive-field radius rounded up to the pad
    multiple), or None when it cannot be tiled exactly (a whole-image statistic such as
    instance normalisation, or features coarser than the input). Measured once per backbone."""
    with _MARGINS_LOCK:
        if model.backbone in _MARGINS:
            return _MARGINS[model.backbone]
    multiple = model.preprocessing.multiple
    run = functools.partial(_run, model.backbone)
    # a whole-image statistic is known without probing
    whole_image = any(isinstance(m, _WHOLE_IMAGE) for m in model.backbone.modules())
    margin = None if whole_image else _probed_margin(run, model, multiple)
    with _MARGINS_LOCK:
        _MARGINS[model.backbone] = margin
    return margin


def _probe_side(margin: int, dims: int, multiple: int) -> int:
    """Side of the probe :func:`~medrefine.backends.tiling.backbone_radius` needs to see a
    receptive field of ``margin``: it starts at 64 pixels (32 in 3D, at least 4 multiples) and
    doubles until a change at the centre block stays off the border."""
    side = -(-max(64 if dims == 2 else 32, 4 * multiple) // multiple) * multiple
    while side // 2 // multiple * multiple - margin <= 0 or side // 2 + multiple + margin >= side:
        side *= 2
    return side


def _probed_margin(
    run: functools.partial[tuple[torch.Tensor, ...]], model: SplitModel, multiple: int
) -> int | None:
    try:
        channels = profile(model).in_channels
        radius = backbone_radius(run, channels, model.spatial_dims, multiple, PROBE_VOXELS)
    except MedrefineError:
        return None
    return -(-radius // multiple) * multiple


def _run(backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return tuple(backbone(x))
