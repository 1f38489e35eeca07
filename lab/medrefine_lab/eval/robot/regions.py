"""Error sets and region selection of the simulated user (protocol R4-R7), dimension-agnostic.

Arrays are spatial only, axes in array order (2D: y, x; 3D: z, y, x). "Region" = connected
component with full connectivity (8 in 2D, 26 in 3D). Every tie goes to the lowest C-order
(raster) index.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from medrefine_lab.eval.robot.types import DEFAULT_A_MIN

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.integer]
FloatArray = npt.NDArray[np.float64]


def error_sets(gt: IntArray, pred: IntArray | None, seeds: IntArray) -> dict[int, BoolArray]:
    """R5: E_c = (G == c) & (P != c) & (S == 0) for every class c in G, ascending.

    With pred None (no start result), E_c = (G == c) & (S == 0), background included. The sets
    are disjoint: a wrong, unseeded pixel lies only in the E_c of its true class.
    """
    unseeded = seeds == 0
    sets: dict[int, BoolArray] = {}
    for c in np.unique(gt).tolist():
        e = (gt == c) & unseeded
        if pred is not None:
            e &= pred != c
        sets[int(c)] = e
    return sets


def largest_region(mask: BoolArray) -> tuple[BoolArray, int]:
    """R6: the largest full-connectivity region of `mask` and its size.

    Ties go to the region whose first pixel comes first in raster order. An empty mask gives an
    empty region of size 0.
    """
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    labels, n = ndi.label(mask, structure=structure)
    if n == 0:
        return np.zeros_like(mask, dtype=bool), 0
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)
    sizes[0] = 0
    tied = np.flatnonzero(sizes == sizes.max())
    best = min(tied.tolist(), key=lambda lab: int(np.argmax(flat == lab)))
    return labels == best, int(sizes[best])


def has_error(
    gt: IntArray, pred: IntArray | None, seeds: IntArray, a_min: int | None = None
) -> bool:
    """R4: True while some class has an error region (R5, full connectivity) of >= a_min pixels.

    a_min None means 10 in 2D and 50 in 3D. The session stops at the first k where this is
    False and carries its last metrics forward.
    """
    threshold = a_min if a_min is not None else DEFAULT_A_MIN[gt.ndim]
    return any(largest_region(e)[1] >= threshold for e in error_sets(gt, pred, seeds).values())


def worst_slice(region: BoolArray, axis: int) -> int:
    """R7: index along `axis` of the slice holding most of `region` (ties: lower index)."""
    other = tuple(a for a in range(region.ndim) if a != axis)
    return int(np.argmax(region.sum(axis=other)))


def padded_edt(mask: BoolArray) -> FloatArray:
    """Euclidean distance to the nearest pixel outside `mask`, the array border counting as
    outside (EDT of the 1-px zero-padded mask, R10/R11/R13). Same shape, float64, pixel units."""
    inner = (slice(1, -1),) * mask.ndim
    return np.asarray(ndi.distance_transform_edt(np.pad(mask, 1)), dtype=np.float64)[inner]


def first_argmax(values: npt.NDArray[np.floating]) -> tuple[int, ...]:
    """Index of the maximum; ties go to the first in raster order."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))


def bbox_slices(mask: BoolArray, margin: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask grown by `margin` on every side, clipped to the array."""
    coords = np.argwhere(mask)
    lo = np.maximum(coords.min(axis=0) - margin, 0)
    hi = np.minimum(coords.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def lift(coords: npt.NDArray[np.int64], axis: int, index: int) -> npt.NDArray[np.int64]:
    """Turn (N, 2) in-plane coordinates of slice `index` along `axis` into (N, 3) ones."""
    return np.asarray(np.insert(coords, axis, index, axis=1), dtype=np.int64)


def disk(radius: int, ndim: int = 2) -> BoolArray:
    """Euclidean disk (2D) / ball (3D) footprint: offsets with |o| <= radius, centred."""
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return np.asarray((grid**2).sum(axis=0) <= radius**2, dtype=np.bool_)


def neighbourhood_offsets(radius: int, ndim: int) -> npt.NDArray[np.int64]:
    """Offsets of the Euclidean disk (2D) / ball (3D) of `radius`, raster order, (N, ndim)."""
    return np.argwhere(disk(radius, ndim)).astype(np.int64) - radius


def pixels_near(point: tuple[int, ...], radius: int, allowed: BoolArray) -> npt.NDArray[np.int64]:
    """Pixels of the disk/ball of `radius` around `point` that lie in `allowed`, raster order."""
    pts = neighbourhood_offsets(radius, allowed.ndim) + np.asarray(point, dtype=np.int64)
    inside = np.all((pts >= 0) & (pts < np.asarray(allowed.shape)), axis=1)
    pts = pts[inside]
    return np.asarray(pts[allowed[tuple(pts.T)]], dtype=np.int64)
