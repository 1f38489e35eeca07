"""The ``crop`` mode's loop evaluation: marks in clusters, one crop each, same-shape crops batched.

:class:`Clusters` holds the clusters of one refine's marks (:meth:`FeatureGrid.groups`) and
the box around each that its crop evaluates anyway (:meth:`FeatureGrid.free_box`: anchor pixels
are sampled there). :meth:`Clusters.assign` puts the pixels of the loop's index into those
clusters: the marks into their own, every other pixel into the first cluster whose box holds it;
only pixels outside every box are clustered afresh. Clustering the marks and their anchors
together instead would count the anchors filling neighbouring boxes as marks that chain the
boxes into one.

:class:`BatchedCrops` evaluates the head on one crop per cluster. Crops whose windows have the
same shape (scribbles of one size, far apart) go through the head as one batch: one call per
layer instead of one per crop, which on the 2-core machine cost about 2 ms of fixed overhead per
crop and step (16 crops of 3x4x7 feature pixels: 49 ms apart, 14 ms batched, forward and
backward). The head must treat the batch's samples independently; :func:`batch_agrees` checks
that once per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medrefine.engine.head.crop import FeatureGrid, Window
from medrefine.engine.head.crop_stages import Stages, Trims

Features = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Clusters:
    """The clusters of the marks ``marks`` (flat image pixels, int64) on ``grid``.

    Attributes:
        marks: the flat pixels clustered, in the caller's order.
        members: per cluster, row numbers of ``marks`` (int64).
        boxes: per cluster, the free box ``(lo, hi)`` in image pixels (per axis, array order).
    """

    marks: np.ndarray
    members: tuple[np.ndarray, ...]
    boxes: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def of(cls, grid: FeatureGrid, marks: np.ndarray, shape: tuple[int, ...]) -> Clusters:
        """Cluster flat pixels ``marks`` of an image of spatial ``shape``."""
        coords = np.stack(np.unravel_index(marks, shape), 1)
        members = tuple(grid.groups(coords))
        boxes = tuple(grid.free_box(coords[m].min(0), coords[m].max(0) + 1) for m in members)
        return cls(marks.copy(), members, boxes)

    def region(self, shape: tuple[int, ...]) -> np.ndarray:
        """Flat pixels inside any cluster's box (sorted, int64)."""
        inside = np.zeros(shape, dtype=bool)
        for lo, hi in self.boxes:
            inside[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))] = True
        return np.flatnonzero(inside)

    def assign(
        self, grid: FeatureGrid, index: np.ndarray, shape: tuple[int, ...]
    ) -> list[np.ndarray]:
        """Row numbers of flat pixels ``index`` per crop: when ``index`` starts with
        :attr:`marks`, the marks go to their clusters and each later pixel to the first
        cluster whose box holds it; the rest (and any ``index`` that does not start with the
        marks) are clustered by ``grid`` alone."""
        coords = np.stack(np.unravel_index(index, shape), 1)
        n = self.marks.size
        if index.size < n or not np.array_equal(index[:n], self.marks):
            return grid.groups(coords)
        owner = np.full(index.size, -1, dtype=np.int64)
        for k, m in enumerate(self.members):
            owner[m] = k
        rest = np.arange(n, index.size)
        for k, (lo, hi) in enumerate(self.boxes):
            if rest.size == 0:
                break
            inside = np.all((coords[rest] >= lo) & (coords[rest] < hi), axis=1)
            owner[rest[inside]] = k
            rest = rest[~inside]
        groups = [np.flatnonzero(owner == k) for k in range(len(self.members))]
        groups += [rest[g] for g in grid.groups(coords[rest])]
        return [g for g in groups if g.size]


def _windows_shape(windows: tuple[Window, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(s.stop - s.start for s in w) for w in windows)


class BatchedCrops:
    """Logits ``(N, K)`` at pixels ``coords`` (``(N, ndim)`` output coordinates, array order)
    from ``head`` over the crops of ``features`` (each ``(1, C, *spatial)``) for ``groups``
    (row numbers of ``coords`` per crop, :meth:`Clusters.assign`). Crops with windows of one
    shape (and, with ``stages``, the same trims: :meth:`Stages.trims`) go through the head as
    one batch when ``batch`` is True. Calling the object runs the head (differentiable in its
    parameters); the crops are cut and stacked once, here."""

    def __init__(
        self,
        head: nn.Module,
        features: Features,
        grid: FeatureGrid,
        coords: np.ndarray,
        groups: list[np.ndarray],
        batch: bool = True,
        stages: Stages | None = None,
    ) -> None:
        self.head = head
        buckets: dict[object, list[tuple[tuple[Window, ...], np.ndarray, np.ndarray]]] = {}
        trims_of: dict[object, Trims] = {}
        for k, rows_of in enumerate(groups):
            part = coords[rows_of]
            lo, hi = part.min(0), part.max(0) + 1
            start, windows = grid.window(lo, hi)
            trims: Trims = ()
            if stages is not None:
                start, trims = stages.trims(start, lo, hi)
            key: object = (_windows_shape(windows), trims) if batch else k
            buckets.setdefault(key, []).append((windows, part - start, rows_of))
            trims_of[key] = trims
        # outputs come bucket by bucket, crop by crop: ``back`` puts them in ``coords`` order
        order = [rows_of for members in buckets.values() for _, _, rows_of in members]
        self._back = torch.from_numpy(np.argsort(np.concatenate(order or [np.zeros(0, int)])))
        self._batches: list[tuple[tuple[torch.Tensor, ...], list[np.ndarray], Trims]] = []
        for key, members in buckets.items():
            crops = tuple(
                torch.cat([f[(slice(None), slice(None)) + w[i]] for w, _, _ in members])
                for i, f in enumerate(features)
            )
            self._batches.append((crops, [at for _, at, _ in members], trims_of[key]))
        self._stages = stages
        self._flat: list[torch.Tensor | None] = [None] * len(self._batches)

    @property
    def calls(self) -> int:
        """Head calls per evaluation: one per shape of crop (per crop without batching)."""
        return len(self._batches)

    def __call__(self) -> torch.Tensor:
        outs = []
        for i, (crops, ats, trims) in enumerate(self._batches):
            stages = self._stages
            out = self.head(*crops) if stages is None else stages.run(crops, trims)
            flat = self._flat[i]
            if flat is None:  # the output's shape is known from the first call on
                size = int(np.prod(out.shape[2:]))
                flat = torch.from_numpy(
                    np.concatenate(
                        [
                            b * size + np.ravel_multi_index(tuple(at.T), out.shape[2:])
                            for b, at in enumerate(ats)
                        ]
                    )
                ).to(out.device)
                self._flat[i] = flat
            outs.append(out.movedim(1, -1).reshape(-1, out.shape[1])[flat])
        if not outs:
            return torch.zeros(0, 0)
        return torch.cat(outs)[self._back.to(outs[0].device)]


def box_agrees(
    crops: BatchedCrops,
    pts: np.ndarray,
    whole: torch.Tensor,
    out_shape: tuple[int, ...],
    atol: float,
) -> bool:
    """Whether ``crops`` (over output pixels ``pts``, ``(N, ndim)``) give the whole-image
    output ``whole`` (``(1, K, *out_shape)``) there (``rtol`` 1e-4, ``atol`` as given);
    False when the head fails on them."""
    try:
        with torch.no_grad():
            got = crops()
    except RuntimeError:
        return False
    flat = np.ravel_multi_index(tuple(pts.T), out_shape)
    want = whole.reshape(whole.shape[1], -1)[:, torch.from_numpy(flat).to(whole.device)].T
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-4, atol=atol))


def box_pixels(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Every pixel of box ``[lo, hi)`` as ``(N, ndim)`` coordinates."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(hi - lo))), tuple(hi - lo)), 1) + lo


def batch_agrees(
    head: nn.Module,
    features: Features,
    grid: FeatureGrid,
    whole: torch.Tensor,
    box: tuple[np.ndarray, np.ndarray],
    atol: float,
) -> bool:
    """Whether ``head`` gives each sample of a batch of two crops what it gives that crop
    alone: the crops for output ``box`` (``(lo, hi)``) and for that box moved by one
    :attr:`FeatureGrid.step` along every axis (towards the start where the end is near),
    compared with the whole-image output ``whole`` (``(1, K, *out_shape)``) there
    (:func:`box_agrees`)."""
    lo, hi = box
    step = np.asarray(grid.step)
    room = np.asarray(grid.out_shape) - hi >= step
    other = (lo + np.where(room, step, -step), hi + np.where(room, step, -step))
    if np.any(other[0] < 0):
        return False
    parts = [box_pixels(a, b) for a, b in (box, other)]
    pts = np.concatenate(parts)
    groups = [np.arange(len(parts[0])), len(parts[0]) + np.arange(len(parts[1]))]
    crops = BatchedCrops(head, features, grid, pts, groups)
    if crops.calls != 1:
        return False  # different shapes: nothing to batch here, trust no batch
    return box_agrees(crops, pts, whole, grid.out_shape, atol)
