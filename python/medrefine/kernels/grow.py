"""Region growing of class-labelled seed marks (the C++ kernel behind a checked numpy facade)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medrefine.kernels import _native
from medrefine.kernels._checks import checked_connectivity, real_number

Criterion = Literal["neighbour", "seed_mean"]

#: Image dtypes the kernel is compiled for.
IMAGE_DTYPES: tuple[type[np.generic], ...] = (
    np.uint8,
    np.uint16,
    np.int16,
    np.int32,
    np.float32,
    np.float64,
)
CRITERIA: tuple[str, ...] = ("neighbour", "seed_mean")


def region_grow(
    image: npt.NDArray[Any],
    seeds: npt.NDArray[np.int32],
    threshold: float,
    *,
    criterion: Criterion = "neighbour",
    connectivity: int = 1,
    max_distance: float | None = None,
    spacing: Sequence[float] | None = None,
) -> npt.NDArray[np.int32]:
    """Grow every class of ``seeds`` into similar neighbouring pixels, all classes together.

    Args:
        image: intensities, shape ``(H, W)`` or ``(D, H, W)`` (axes y, x or z, y, x), or
            channel-first ``(C, H, W)`` / ``(C, D, H, W)``; it is channel-first exactly when it
            has one more axis than ``seeds``. dtype uint8, uint16, int16, int32, float32 or float64.
            Differences are computed in float64; with channels, the difference of two pixels is
            the Euclidean norm of their per-channel differences.
        seeds: int32 marks of the spatial shape: ``-1`` = unmarked, ``k >= 0`` = class ``k``
            (class 0, background, is a class like any other).
        threshold: a pixel joins when its difference is strictly below this (>= 0; ``inf``
            lets every non-NaN pixel join).
        criterion: ``"neighbour"`` compares a pixel with the pixel it is reached from;
            ``"seed_mean"`` compares it with the mean intensity of the stroke it grows from. A
            stroke is a connected component (same connectivity) of seed pixels of one class; its
            mean is taken over its non-NaN pixels; a grown pixel inherits its parent's stroke.
        connectivity: 1 = neighbours sharing a face, 2 = + an edge, 3 = + a corner (3D only).
        max_distance: growth cap (>= 0, ``None`` = no cap). Without ``spacing``, the number of
            growth steps; with ``spacing``, the path length in mm along the growth path (the
            parent's distance plus the length of the step scaled by ``spacing``). A pixel joins
            only while its distance is <= ``max_distance``.
        spacing: pixel size in mm per spatial axis, in array order (z, y, x), positive and finite.
            Only used to measure ``max_distance``.

    Returns:
        A new int32 array of the shape of ``seeds``: the seeds plus the grown pixels.

    Growth is breadth-first from all seed pixels at once, ring by ring (ring r holds the pixels
    first reached at step r). A pixel reached by two classes in the same ring stays ``-1`` and is
    not grown from. A pixel reached by one class from several parents in its ring takes the
    smallest distance, then the stroke numbered first (strokes are numbered in C order of their
    first pixel). Seed pixels never change; NaN pixels never join and NaN seeds do not grow.

    Raises:
        TypeError: ``image`` or ``seeds`` is not a numpy array of a supported dtype, or an
            option has the wrong type.
        ValueError: shapes do not match, or an option is out of range.

    Example (a bright square on a dark background, one stroke of each class):

    >>> image = np.zeros((6, 6), np.float32)
    >>> image[1:4, 1:4] = 1.0
    >>> seeds = np.full((6, 6), -1, np.int32)
    >>> seeds[2, 2], seeds[5, 5] = 1, 0
    >>> grown = region_grow(image, seeds, threshold=0.5)
    >>> int((grown == 1).sum()), int((grown == 0).sum())
    (9, 27)
    """
    image, seeds = _checked_arrays(image, seeds)
    threshold = _checked_threshold(threshold)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    connectivity = checked_connectivity(connectivity, seeds.ndim)
    cap = math.inf if max_distance is None else _checked_max_distance(max_distance)
    steps = [] if spacing is None else _checked_spacing(spacing, seeds.ndim)
    if image.ndim == seeds.ndim:
        image = image.reshape((1, *image.shape))
    # Only arrays that are not C-contiguous in native byte order are copied.
    image = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("="))
    seeds = np.ascontiguousarray(seeds, dtype=np.dtype(np.int32))
    return _native.region_grow(image, seeds, threshold, criterion, connectivity, cap, steps)


def _checked_arrays(image: object, seeds: object) -> tuple[npt.NDArray[Any], npt.NDArray[np.int32]]:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if not isinstance(seeds, np.ndarray):
        raise TypeError(f"seeds must be a numpy.ndarray, got {type(seeds).__name__}")
    if image.dtype.type not in IMAGE_DTYPES:
        names = ", ".join(np.dtype(t).name for t in IMAGE_DTYPES)
        raise TypeError(f"image dtype must be one of {names}; got {image.dtype}")
    if seeds.dtype.type is not np.int32:
        raise TypeError(f"seeds dtype must be int32, got {seeds.dtype}")
    if seeds.ndim not in (2, 3):
        raise ValueError(f"seeds must be 2D (H, W) or 3D (D, H, W), got shape {seeds.shape}")
    spatial = image.shape[1:] if image.ndim == seeds.ndim + 1 else image.shape
    if image.ndim not in (seeds.ndim, seeds.ndim + 1) or spatial != seeds.shape:
        raise ValueError(
            f"image shape {image.shape} must be seeds shape {seeds.shape}, optionally with a "
            "leading channel axis"
        )
    if image.ndim == seeds.ndim + 1 and image.shape[0] == 0:
        raise ValueError(f"image has a channel axis of length 0 (shape {image.shape})")
    if seeds.size and int(seeds.min()) < -1:
        raise ValueError(
            f"seeds labels must be -1 (unmarked) or >= 0 (class), found {int(seeds.min())}"
        )
    return image, seeds


def _checked_threshold(threshold: object) -> float:
    value = real_number(threshold, "threshold")
    if math.isnan(value) or value < 0:
        raise ValueError(f"threshold must be >= 0 and not NaN, got {value}")
    return value


def _checked_max_distance(max_distance: object) -> float:
    value = real_number(max_distance, "max_distance")
    if math.isnan(value) or value < 0:
        raise ValueError(f"max_distance must be None or >= 0 and not NaN, got {value}")
    return value


def _checked_spacing(spacing: object, ndim: int) -> list[float]:
    if isinstance(spacing, (str, bytes)) or not isinstance(spacing, Sequence | np.ndarray):
        raise TypeError(f"spacing must be a sequence of {ndim} floats, got {spacing!r}")
    values = [real_number(s, "spacing entry") for s in spacing]
    if len(values) != ndim:
        raise ValueError(f"spacing must have {ndim} entries (one per spatial axis), got {values}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing entries must be positive and finite, got {values}")
    return values
