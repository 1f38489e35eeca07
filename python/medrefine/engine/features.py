"""The backbone's features of one image, as the session caches them.

Three ways through the backbone, chosen per image (:func:`compute_features`):

- tiles (``SessionLimits.max_tile_voxels``, :mod:`medrefine.backends.tiling`): backbones
  without whole-image statistics, exact inside each tile;
- slabs (``SessionLimits.slab_voxels``, :mod:`medrefine.backends.slabs`): a PyTorch backbone on
  the CPU whose traced graph the slab executor runs exactly, instance norms included; the
  whole-resolution activations of a large volume never all exist at once;
- whole: the backend's one call.

Storage: every feature is cropped to the image and kept channels-last
(:func:`~medrefine.engine.head.rows` views a pixel's feature vector as one row). Features that
would take more than ``SessionLimits.float16_feature_bytes`` in float32 are kept in float16,
half the memory; the head upcasts the rows it reads. Each feature is converted on its own and
its source freed before the next, so two copies of all features never coexist.
"""

from __future__ import annotations

import functools
import math

import torch

from medrefine.backends import FeatureExtractor, TorchBackend
from medrefine.backends.slabs import run_slabs, slab_plan, write
from medrefine.backends.tiling import tiled_features
from medrefine.engine.limits import SessionLimits
from medrefine.errors import InputError, ResourceError

Features = tuple[torch.Tensor, ...]


def storage_dtype(channels: int, shape: tuple[int, ...], limits: SessionLimits) -> torch.dtype:
    """float16 if ``channels`` float32 features over ``shape`` exceed the limit, else float32."""
    over = limits.float16_feature_bytes
    if over is not None and 4 * channels * math.prod(shape) > over:
        return torch.float16
    return torch.float32


def backbone(backend: FeatureExtractor, x: torch.Tensor) -> Features:
    """``backend.features(x)`` with its failures typed: memory -> ResourceError, else (an image
    the network cannot take, e.g. too small for its downsampling) -> InputError."""
    try:
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
    f: torch.Tensor, padded: tuple[int, ...], shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """``f`` ``(1, C, *spatial)`` cropped to ``shape`` when it has the ``padded`` input's size
    (a feature at another resolution is kept whole), as one new channels-last tensor of
    ``dtype`` (``f`` itself when it already is one)."""
    # A feature without channels is a size carrier (models.split.size_carrier: the padded size
    # a head resizes to, e.g. torchvision's); it keeps the padded size, the head's output is cut.
    if tuple(f.shape[2:]) == padded and f.shape[1] > 0:
        f = f[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape)]
    fmt = _layout(f.ndim)
    if f.dtype == dtype and f.is_contiguous(memory_format=fmt):
        return f
    out = torch.empty(f.shape, dtype=dtype, device=f.device, memory_format=fmt)
    return out.copy_(f)


def compute_features(
    backend: FeatureExtractor,
    x: torch.Tensor,
    shape: tuple[int, ...],
    multiple: int,
    limits: SessionLimits,
) -> Features:
    """The features of ``x`` (``(1, C, *padded)`` float32) for an image of spatial ``shape``,
    as stored: ``(1, C_i, *shape)`` channels-last, float32 or float16 (:func:`storage_dtype`).

    Raises:
        InputError, ResourceError: see :func:`backbone`; tiling's errors for a tile budget.
    """
    padded = tuple(int(s) for s in x.shape[2:])
    voxels = math.prod(padded)
    tile = limits.max_tile_voxels
    if tile is not None and voxels > tile:
        run = functools.partial(backbone, backend)
        tiles = list(tiled_features(run, x, shape, multiple, tile))
        return _convert(tiles, padded, shape, limits)
    slab = limits.slab_voxels
    if (
        slab is not None
        and voxels > slab
        and isinstance(backend, TorchBackend)
        and backend.device.type == "cpu"
    ):
        gm = slab_plan(backend.backbone, int(x.shape[1]), len(padded), multiple)
        if gm is not None:
            with torch.no_grad():
                outputs = run_slabs(gm, x)
                dtype = storage_dtype(sum(o.shape[1] for o in outputs), shape, limits)
                return write(outputs, shape, dtype)
    return _convert(list(backbone(backend, x)), padded, shape, limits)


def _convert(
    features: list[torch.Tensor],
    padded: tuple[int, ...],
    shape: tuple[int, ...],
    limits: SessionLimits,
) -> Features:
    """Each feature as stored, converting one at a time and dropping its source at once."""
    dtype = storage_dtype(sum(int(f.shape[1]) for f in features), shape, limits)
    for i in range(len(features)):
        features[i] = stored(features[i], padded, shape, dtype)
    return tuple(features)
