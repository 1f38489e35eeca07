"""The backbone's features of one image, as the session caches them.

Three ways through the backbone, chosen per image (:func:`compute_features`):

- tiles (``SessionLimits.max_tile_voxels``, :mod:`medrefine.backends.tiling`): backbones
  without whole-image statistics, exact inside each tile;
- slabs (``SessionLimits.slab_voxels``, :mod:`medrefine.backends.slabs`): a PyTorch backbone on
  the CPU whose traced graph the slab executor runs exactly, instance norms included; the
  whole-resolution activations of a large volume never all exist at once;
- whole: the backend's one call.

Device: the features are kept where the session's head runs (``Session(device=...)``, the
CPU by default); a PyTorch backbone on that device hands them over without a host round trip.

Storage: every feature is cropped to the image and kept channels-last
(:func:`~medrefine.engine.head.runner.rows` views a pixel's feature vector as one row).
Features that would take more than ``SessionLimits.float16_feature_bytes`` in float32 are kept
in float16, half the memory; the head upcasts the rows it reads. Each feature is converted on its
own and its source freed before the next, so two copies of all features never coexist.
"""

from __future__ import annotations

import functools
import math

import torch

from medrefine.backends import FeatureExtractor, TorchBackend
from medrefine.backends.slabs import run_slabs, slab_plan, write
from medrefine.backends.tiling import tiled_features
from medrefine.engine.budget.limits import SessionLimits
from medrefine.errors import InputError, ResourceError

Features = tuple[torch.Tensor, ...]


def storage_dtype(channels: int, shape: tuple[int, ...], limits: SessionLimits) -> torch.dtype:
    """float16 if ``channels`` float32 features over ``shape`` exceed the limit, else float32."""
    over = limits.float16_feature_bytes
    if over is not None and 4 * channels * math.prod(shape) > over:
        return torch.float16
    return torch.float32


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Where a session keeps its features, head and optimiser: ``None`` means the CPU.

    Raises:
        InputError: not a device name, or a device that holds no data (``"meta"``).
        ResourceError: a CUDA device PyTorch cannot use here, naming why.
    """
    try:
        found = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if found.type == "cuda":
        if torch.version.cuda is None:
            raise ResourceError(
                f"device {device!r}: this PyTorch {torch.__version__} is built without CUDA; "
                "install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise ResourceError(
                f"device {device!r}: PyTorch (CUDA {torch.version.cuda}) sees no CUDA device "
                "(torch.cuda.is_available() is False: no GPU, or its driver is missing)"
            )
        count = torch.cuda.device_count()
        if found.index is not None and found.index >= count:
            raise ResourceError(f"device {device!r}: only {count} CUDA device(s) here")
    elif found.type != "cpu":
        raise InputError(f"device must be 'cpu' or a CUDA device, got {device!r}")
    return found


def backbone(
    backend: FeatureExtractor, x: torch.Tensor, device: torch.device | None = None
) -> Features:
    """``backend.features(x)`` with its failures typed: memory -> ResourceError, else (an image
    the network cannot take, e.g. too small for its downsampling) -> InputError. A PyTorch
    backend already on ``device`` (not the CPU) leaves its features there (no copy through
    the host)."""
    try:
        on_device = device is not None and device.type != "cpu"
        if on_device and isinstance(backend, TorchBackend) and backend.device == device:
            return backend.run(x)
        return tuple(backend.features(x))
    except MemoryError as exc:
        raise ResourceError(
            f"not enough memory for the backbone on input {tuple(x.shape)}"
        ) from exc
    except (RuntimeError, ValueError) as exc:
        if "alloc" in str(exc).lower():
            raise ResourceError(
                f"not enough memory for the backbone on input {tuple(x.shape)}: {exc}"
            ) from exc
        raise InputError(
            f"the network cannot process an input of shape {tuple(x.shape)} "
            f"(batch, channels, *spatial): {exc}"
        ) from exc


def _layout(ndim: int) -> torch.memory_format:
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim, torch.contiguous_format)


def stored(
    f: torch.Tensor,
    padded: tuple[int, ...],
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``f`` ``(1, C, *spatial)`` cropped to ``shape`` when it has the ``padded`` input's size
    (a feature at another resolution is kept whole), as one new channels-last tensor of
    ``dtype`` on ``device`` (default: ``f``'s; ``f`` itself when it already is all that)."""
    # A feature without channels is a size carrier (models.split.size_carrier: the padded size
    # a head resizes to, e.g. torchvision's); it keeps the padded size, the head's output is cut.
    if tuple(f.shape[2:]) == padded and f.shape[1] > 0:
        f = f[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape)]
    fmt, where = _layout(f.ndim), f.device if device is None else device
    dtype = dtype if f.dtype == torch.float32 else f.dtype  # only float32 features shrink
    if f.dtype == dtype and f.device == where and f.is_contiguous(memory_format=fmt):
        return f
    out = torch.empty(f.shape, dtype=dtype, device=where, memory_format=fmt)
    return out.copy_(f)


def compute_features(
    backend: FeatureExtractor,
    x: torch.Tensor,
    shape: tuple[int, ...],
    multiple: int,
    limits: SessionLimits,
    device: torch.device | None = None,
) -> Features:
    """The features of ``x`` (``(1, C, *padded)`` float32) for an image of spatial ``shape``,
    as stored: ``(1, C_i, *shape)`` channels-last, float32 or float16 (:func:`storage_dtype`),
    on ``device`` (default the CPU; see :func:`resolve_device`).

    Raises:
        InputError, ResourceError: see :func:`backbone`; tiling's errors for a tile budget.
    """
    device = torch.device("cpu") if device is None else device
    padded = tuple(int(s) for s in x.shape[2:])
    voxels = math.prod(padded)
    tile = limits.max_tile_voxels
    if tile is not None and voxels > tile:
        run = functools.partial(backbone, backend)
        tiles = list(tiled_features(run, x, shape, multiple, tile))
        return _convert(tiles, padded, shape, limits, device)
    slab = limits.slab_voxels
    if (
        slab is not None
        and voxels > slab
        and isinstance(backend, TorchBackend)
        and backend.device.type == "cpu"
        and device.type == "cpu"
    ):
        gm = slab_plan(backend.backbone, int(x.shape[1]), len(padded), multiple)
        if gm is not None:
            with torch.no_grad():
                outputs = run_slabs(gm, x)
                dtype = storage_dtype(sum(o.shape[1] for o in outputs), shape, limits)
                return write(outputs, shape, dtype)
    return _convert(list(backbone(backend, x, device)), padded, shape, limits, device)


def _convert(
    features: list[torch.Tensor],
    padded: tuple[int, ...],
    shape: tuple[int, ...],
    limits: SessionLimits,
    device: torch.device,
) -> Features:
    """Each feature as stored, converting one at a time and dropping its source at once."""
    dtype = storage_dtype(sum(int(f.shape[1]) for f in features), shape, limits)
    for i in range(len(features)):
        features[i] = stored(features[i], padded, shape, dtype, device)
    return tuple(features)
