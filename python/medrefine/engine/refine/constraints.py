"""Marks -> per-pixel constraints for the refinement loss, the stop rule and the returned mask.

Rules (coordinates in array order, 2D ``(y, x)``, 3D ``(z, y, x)``):

- Scribble: its polyline, sampled at half-pixel steps, dilated by a ball of ``radius`` pixels.
  A closed scribble of a class other than background (its ends within
  ``CLOSE_FRACTION`` of its length, or a stroke that crosses itself) also marks what it
  encloses, in its plane (2D, or the one slice a 3D scribble lies in): a ring drawn around a
  structure says "this is c" of its inside too. A background ring marks only its line (it
  more often fences a structure in than erases it).
- Click: a ball of ``radius`` around the point. Paint: exactly its pixels.
- Box of class c: "c lies inside". If the network's mask shows no c inside the box (a missed
  object), its central region (``box_center_fraction`` of each side, at least one pixel) is a
  positive constraint c; a box around objects the network already finds adds no positive pixel
  (the centre of a box drawn around several objects is often background). Pixels outside the
  union of all boxes of class c are "not c". The loss sees the band of ``box_band`` pixels just
  outside the boxes plus ``box_negatives`` pixels sampled (seeded) from the rest; the returned
  mask enforces "not c" everywhere outside.
- Later marks win where marks of different classes overlap.
- Region growing (optional, ``grow``) grows scribbles, clicks and paint through
  :func:`medrefine.kernels.region_grow` on the normalised image; grown pixels are hints: they carry
  ``grown_weight`` in the loss and never count for the stop rule, ``satisfied`` or the written mask.
  On an image with a spacing, ``grow_max_distance`` is measured along the growth path in units of
  the finest axis's voxel size.

Settings are the ``marks`` section of :class:`medrefine.RefineConfig`
(:class:`~medrefine.engine.config.MarksConfig`); ``seed`` is the loop's.

Encodings of marked pixels, one name each:

- *constraints*: flat C-order pixel indices with a class per entry (:class:`Constraints`).
- *mark labels*: an int32 array of the spatial shape, ``-1`` = unmarked, ``k >= 0`` = class ``k``
  (what :func:`medrefine.kernels.region_grow` takes as its ``seeds``; built here from the drawn
  marks).
- *seeds*: the simulated-user protocol's int array, ``0`` = none, ``c + 1`` = class ``c``
  (:mod:`medrefine_lab.eval`: the robot user and the seed baselines); the engine never sees it.
- *targets*: a bool array, True where a distance is measured from
  (:mod:`medrefine.engine.gate.distance`, and :func:`medrefine.kernels.geodesic_distance`'s
  ``seeds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy import ndimage

from medrefine.engine.config import MarksConfig
from medrefine.errors import InputError
from medrefine.types import Box, Click, Mark, Paint, Scribble, relative_spacing


@dataclass(frozen=True)
class Constraints:
    """Constraints over an image of spatial ``shape``; pixel sets are flat C-order indices.

    Attributes:
        index, label, weight: positive constraints "pixel is class ``label``" (int64, int64,
            float32), one entry per pixel, sorted by index.
        required: bool per positive entry; True for the clinician's own pixels and box centres
            (these decide the stop rule and ``satisfied``), False for region-grown hints.
        written: bool per positive entry; True for drawn pixels (scribbles, clicks, paint) and
            what a closed stroke encloses, which are written into the returned mask.
        drawn: bool per positive entry; True for the pixels a stroke, click or paint covers
            (written, and not only enclosed by a closed stroke): what the colour models of
            :mod:`medrefine.engine.gate.appearance` learn from.
        neg_index, neg_label: "pixel is not class ``neg_label``" entries the loss sees.
        box_classes, box_regions: per boxed class, a bool mask of the union of its boxes (the
            returned mask never shows that class outside it).
    """

    shape: tuple[int, ...]
    index: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    required: np.ndarray
    written: np.ndarray
    drawn: np.ndarray
    neg_index: np.ndarray
    neg_label: np.ndarray
    box_classes: tuple[int, ...]
    box_regions: tuple[np.ndarray, ...]

    @property
    def empty(self) -> bool:
        return self.index.size == 0 and self.neg_index.size == 0


def _ball(radius: int, ndim: int) -> np.ndarray:
    """Integer offsets ``(B, ndim)`` of a Euclidean ball."""
    r = np.arange(-radius, radius + 1)
    grid = np.stack(np.meshgrid(*([r] * ndim), indexing="ij"), -1).reshape(-1, ndim)
    return grid[(grid**2).sum(1) <= radius * radius + 1e-9]


def _polyline(points: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Pixels ``(L, ndim)`` on the straight segments between consecutive points."""
    pts = np.asarray(points, dtype=np.float64)
    out = [pts[:1]]
    for a, b in pairwise(pts):
        n = max(int(np.ceil(2 * np.abs(b - a).max())), 1)
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        out.append(a + t * (b - a))
    return np.rint(np.concatenate(out)).astype(np.int64)


#: A scribble whose ends are closer than this fraction of its length is closed (its last point
#: joins its first).
CLOSE_FRACTION = 0.15


def enclosed(mark: Scribble, shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices (int64, sorted) of the pixels a closed scribble encloses and does not cover;
    empty for background (class 0), an open stroke, or a 3D stroke not within one slice."""
    pts = np.asarray(mark.points, dtype=np.int64)
    if mark.label == 0 or len(pts) < 3:
        return np.zeros(0, np.int64)
    flat_axes = [a for a in range(len(shape)) if np.all(pts[:, a] == pts[0, a])]
    if len(shape) == 3 and not flat_axes:
        return np.zeros(0, np.int64)  # not drawn in one slice: nothing is enclosed
    steps = np.linalg.norm(np.diff(pts, axis=0).astype(np.float64), axis=1)
    gap = float(np.linalg.norm((pts[-1] - pts[0]).astype(np.float64)))
    path = [tuple(p) for p in pts]
    if 0 < gap <= CLOSE_FRACTION * float(steps.sum()):
        path.append(path[0])
    line = _dilate(_polyline(path), mark.radius, shape)
    lo, hi = line.min(0), line.max(0) + 1
    crop = np.zeros(tuple(hi - lo), dtype=bool)
    crop[tuple((line - lo).T)] = True
    if len(shape) == 3:  # fill within the stroke's slice only
        axis = flat_axes[0]
        plane = tuple(slice(None) if a != axis else int(pts[0, a] - lo[a]) for a in range(3))
        filled = np.zeros_like(crop)
        filled[plane] = ndimage.binary_fill_holes(crop[plane])
    else:
        filled = ndimage.binary_fill_holes(crop)
    inside = np.argwhere(filled & ~crop) + lo
    return np.ravel_multi_index(tuple(inside.T), shape).astype(np.int64)


def _check_inside(coords: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    bad = np.any((coords < 0) | (coords >= np.asarray(shape)), axis=1)
    if bad.any():
        raise InputError(
            f"{what} at {tuple(int(v) for v in coords[bad][0])} lies outside the "
            f"image of spatial shape {shape}"
        )


def _dilate(coords: np.ndarray, radius: int, shape: tuple[int, ...]) -> np.ndarray:
    if radius == 0:
        return coords
    pts = (coords[:, None, :] + _ball(radius, len(shape))[None]).reshape(-1, len(shape))
    keep = np.all((pts >= 0) & (pts < np.asarray(shape)), axis=1)
    return pts[keep]


def rasterize(mark: Mark, shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices of the pixels a drawn mark (Scribble, Click, Paint) covers."""
    if mark.ndim != len(shape):
        raise InputError(
            f"{type(mark).__name__} has {mark.ndim} coordinates; the image has "
            f"{len(shape)} spatial axes {shape}"
        )
    if isinstance(mark, Scribble):
        coords = np.asarray(mark.points, dtype=np.int64)
        _check_inside(coords, shape, "scribble point")
        coords = _dilate(_polyline(mark.points), mark.radius, shape)
    elif isinstance(mark, Click):
        coords = np.asarray([mark.point], dtype=np.int64)
        _check_inside(coords, shape, "click")
        coords = _dilate(coords, mark.radius, shape)
    elif isinstance(mark, Paint):
        coords = mark.pixels
        _check_inside(coords, shape, "painted pixel")
    else:
        raise InputError(f"not a drawn mark: {mark!r}")
    return np.unique(np.ravel_multi_index(tuple(coords.T), shape))


def _box_slices(box: Box, shape: tuple[int, ...]) -> tuple[slice, ...]:
    if box.ndim != len(shape):
        raise InputError(
            f"Box has {box.ndim} coordinates; the image has {len(shape)} spatial axes {shape}"
        )
    if any(a < 0 or b > s for a, b, s in zip(box.start, box.stop, shape, strict=True)):
        raise InputError(
            f"box {box.start}..{box.stop} (stop exclusive) exceeds the image of "
            f"spatial shape {shape}"
        )
    return tuple(slice(a, b) for a, b in zip(box.start, box.stop, strict=True))


def _box_center(box: Box, fraction: float) -> tuple[slice, ...]:
    """Central sub-box: ``fraction`` of each side (at least one pixel), centred."""
    out = []
    for a, b in zip(box.start, box.stop, strict=True):
        n = max(1, round((b - a) * fraction))
        lo = a + (b - a - n) // 2
        out.append(slice(lo, lo + n))
    return tuple(out)


def _flat(region: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in region], indexing="ij")
    return np.ravel_multi_index(tuple(g.ravel() for g in grids), shape)


def _last_wins(index: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep one entry per index, the last one given; sorted by index."""
    rev = index[::-1]
    uniq, first = np.unique(rev, return_index=True)
    return (uniq,) + tuple(v[::-1][first] for v in values)


def _negatives(
    boxes: list[Box],
    shape: tuple[int, ...],
    config: MarksConfig,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    classes = tuple(sorted({b.label for b in boxes}))
    regions, idx, lab = [], [], []
    for c in classes:
        region = np.zeros(shape, dtype=bool)
        grown = np.zeros(shape, dtype=bool)
        for b in (b for b in boxes if b.label == c):
            region[_box_slices(b, shape)] = True
            grown[
                tuple(
                    slice(max(a - config.box_band, 0), min(z + config.box_band, n))
                    for a, z, n in zip(b.start, b.stop, shape, strict=True)
                )
            ] = True
        band = np.flatnonzero(grown & ~region)
        sample = rng.integers(0, size, min(config.box_negatives, size))
        far = np.unique(sample[~grown.reshape(-1)[sample]])
        both = np.concatenate([band, far])
        idx.append(both)
        lab.append(np.full(both.size, c, dtype=np.int64))
        regions.append(region)
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), (), ()
    return np.concatenate(idx), np.concatenate(lab), classes, tuple(regions)


def build(
    marks: Sequence[Mark],
    shape: tuple[int, ...],
    config: MarksConfig,
    image: np.ndarray | None = None,
    network_mask: np.ndarray | None = None,
    *,
    seed: int = 0,
    spacing: Sequence[float] | None = None,
) -> Constraints:
    """Constraints of ``marks`` on an image of spatial ``shape``.

    ``image`` (``(C, *shape)`` float, the normalised network input) is needed only when
    ``config.grow`` is on. ``network_mask`` (``shape``, int) is the network's own label mask;
    without it every box gets its centre constraint. ``seed`` seeds the sampled box negatives;
    ``spacing`` (voxel size per spatial axis in array order, any unit) makes the growth cap
    physical.

    >>> from medrefine.types import Click
    >>> cons = build([Click(1, (2, 2), 1)], (5, 5), MarksConfig())
    >>> cons.index.tolist(), cons.label.tolist()
    ([7, 11, 12, 13, 17], [1, 1, 1, 1, 1])
    """
    parts: list[tuple[np.ndarray, int, bool, bool]] = []  # (flat indices, class, written, drawn)
    boxes: list[Box] = []
    for mark in marks:
        if isinstance(mark, Box):
            _box_slices(mark, shape)
            boxes.append(mark)
            if (
                network_mask is None
                or not (network_mask[_box_slices(mark, shape)] == mark.label).any()
            ):
                centre = _flat(_box_center(mark, config.box_center_fraction), shape)
                parts.append((centre, mark.label, False, False))
        else:
            parts.append((rasterize(mark, shape), mark.label, True, True))
            if isinstance(mark, Scribble):
                parts.append((enclosed(mark, shape), mark.label, True, False))
    if parts:
        index = np.concatenate([p[0] for p in parts]).astype(np.int64)
        label = np.concatenate([np.full(p[0].size, p[1], np.int64) for p in parts])
        written = np.concatenate([np.full(p[0].size, p[2]) for p in parts])
        drawn = np.concatenate([np.full(p[0].size, p[3]) for p in parts])
        index, label, written, drawn = _last_wins(index, label, written, drawn)
    else:
        index, label = np.zeros(0, np.int64), np.zeros(0, np.int64)
        written, drawn = np.zeros(0, bool), np.zeros(0, bool)
    required = np.ones(index.size, dtype=bool)
    weight = np.ones(index.size, dtype=np.float32)
    if config.grow and written.any():
        if image is None:
            raise InputError("region growing needs the image")
        g_index, g_label = _grow(index[written], label[written], image, shape, config, spacing)
        keep = ~np.isin(g_index, index)
        index = np.concatenate([index, g_index[keep]])
        label = np.concatenate([label, g_label[keep]])
        weight = np.concatenate([weight, np.full(keep.sum(), config.grown_weight, np.float32)])
        required = np.concatenate([required, np.zeros(keep.sum(), bool)])
        written = np.concatenate([written, np.zeros(keep.sum(), bool)])
        drawn = np.concatenate([drawn, np.zeros(keep.sum(), bool)])
        order = np.argsort(index, kind="stable")
        index, label, weight = index[order], label[order], weight[order]
        required, written, drawn = required[order], written[order], drawn[order]
    neg_index, neg_label, box_classes, box_regions = _negatives(boxes, shape, config, seed)
    clash = np.zeros(neg_index.size, dtype=bool)
    for c in box_classes:  # a positive mark of class c overrides "not c" there
        of_c = neg_label == c
        clash[of_c] = np.isin(neg_index[of_c], index[label == c])
    neg_index, neg_label = neg_index[~clash], neg_label[~clash]
    return Constraints(
        shape,
        index,
        label,
        weight,
        required,
        written,
        drawn,
        neg_index,
        neg_label,
        box_classes,
        box_regions,
    )


def _grow(
    index: np.ndarray,
    label: np.ndarray,
    image: np.ndarray,
    shape: tuple[int, ...],
    config: MarksConfig,
    spacing: Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    from medrefine.kernels.grow import region_grow

    mark_labels = np.full(shape, -1, dtype=np.int32)
    mark_labels.reshape(-1)[index] = label
    grown = region_grow(
        image,
        mark_labels,
        config.grow_threshold,
        criterion=config.grow_criterion,
        max_distance=config.grow_max_distance,
        spacing=relative_spacing(spacing, len(shape)),
    )
    new = np.flatnonzero((grown.reshape(-1) >= 0) & (mark_labels.reshape(-1) < 0))
    return new.astype(np.int64), grown.reshape(-1)[new].astype(np.int64)
