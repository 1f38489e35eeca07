"""Where each feature lies on the head's output grid, and which feature crops give an output crop.

A spatial head with a bounded receptive field computes each output pixel from a small
neighbourhood of every feature, wherever those features sit on their own (often coarser) grids.
:class:`FeatureGrid` holds, per feature and per spatial axis (2D ``(y, x)``, 3D ``(z, y, x)``):

- its *scale*: output pixels per feature pixel, an integer >= 1 read from the shapes
  (``round(out / n)``, accepted when ``|out - scale * n| < scale``: a transposed convolution
  without ``output_padding`` gives ``2n - 1``, padding to a multiple gives ``scale * n``);
- its *margin*: feature pixels, in that feature's own grid, from which a feature still reaches
  an aligned block of output pixels (:func:`measure_margins`, back-propagation from the block,
  once through the image's features and once through random ones, the union of both: a pixel
  a dead ReLU hides from one is seen through the other).

A feature crop starting at feature pixel ``a`` yields an output crop starting at output pixel
``scale * a`` (convolutions, transposed convolutions and ``scale_factor`` interpolation with
``align_corners=False`` all commute with that shift); :meth:`FeatureGrid.window` starts every
crop at one output pixel that is a multiple of every scale, so all features agree. Nothing here
is trusted blindly: :class:`medrefine.engine.head.runner.HeadRunner` compares crops with the
whole-image output once per image and uses the whole image when they differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import nn

Features = tuple[torch.Tensor, ...]
Window = tuple[slice, ...]
_MAX_START_TILES = 256  # clusters FeatureGrid.groups starts from one tile each, at most


def grid_scales(
    features: Features, out_shape: tuple[int, ...]
) -> tuple[tuple[int, ...], ...] | None:
    """Per feature, per axis: output pixels per feature pixel (integer >= 1), or None when a
    feature is finer than the output or its size is not close to a whole fraction of it."""
    scales = []
    for f in features:
        size = tuple(int(s) for s in f.shape[2:])
        if len(size) != len(out_shape) or min(size, default=0) < 1:
            return None
        row = []
        for n, out in zip(size, out_shape, strict=True):
            s = round(out / n)
            if s < 1 or abs(out - s * n) >= s:
                return None
            row.append(s)
        scales.append(tuple(row))
    return tuple(scales)


@dataclass(frozen=True)
class FeatureGrid:
    """The output grid of a head and how its features map onto it (see the module docstring).

    Attributes:
        out_shape: the head's output spatial shape (pixels, array order).
        sizes: each feature's spatial shape.
        scales: per feature, per axis, output pixels per feature pixel.
        margins: per feature, per axis, the receptive margin in that feature's pixels.
    """

    out_shape: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]
    scales: tuple[tuple[int, ...], ...]
    margins: tuple[tuple[int, ...], ...]

    @property
    def step(self) -> tuple[int, ...]:
        """Per axis, the least common multiple of the scales: crops start on multiples of it."""
        return tuple(math.lcm(*axis) for axis in zip(*self.scales, strict=True))

    def extent(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output pixels ``[start, stop)`` the crops for output boxes ``[lo, hi)`` produce
        (``lo``, ``hi``: ``(..., ndim)``; ``stop`` clipped to the output): the needed feature
        pixels plus every feature's margin, widened to multiples of :attr:`step`."""
        step = np.asarray(self.step)
        first = np.min(
            [
                (lo // np.asarray(s) - np.asarray(m)) * s
                for s, m in zip(self.scales, self.margins, strict=True)
            ],
            axis=0,
        )
        last = np.max(
            [
                (-(-hi // np.asarray(s)) + np.asarray(m)) * s
                for s, m in zip(self.scales, self.margins, strict=True)
            ],
            axis=0,
        )
        start = np.maximum(first // step * step, 0)
        stop = np.minimum(-(-last // step) * step, self.out_shape)
        return start, stop

    def window(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, tuple[Window, ...]]:
        """Feature crops whose head output covers output pixels ``[lo, hi)`` (per axis) exactly.

        Returns the output pixel where the crops' output starts (per axis) and one window of
        spatial slices per feature (:meth:`extent`, clipped to each feature).
        """
        start, stop = self.extent(np.asarray(lo), np.asarray(hi))
        step = np.asarray(self.step)
        stop = -(-stop // step) * step  # the feature's end, where the output was clipped
        windows = tuple(
            tuple(
                slice(int(a // sc), int(min(b // sc, n)))
                for a, b, sc, n in zip(start, stop, s, size, strict=True)
            )
            for s, size in zip(self.scales, self.sizes, strict=True)
        )
        return start, windows

    def free_box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The widest output box ``[lo', hi')`` around ``[lo, hi)`` (clipped to the output)
        whose :meth:`window` is the same: pixels there are evaluated at no extra cost."""
        lo, hi = np.asarray(lo), np.asarray(hi)
        start, windows = self.window(lo, hi)

        def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            s, w = self.window(a, b)
            return (s == start) & np.all(
                [
                    [x == y for x, y in zip(u, v, strict=True)]
                    for u, v in zip(w, windows, strict=True)
                ],
                axis=0,
            )

        new_lo, new_hi = lo.copy(), hi.copy()
        for k in range(1, int(np.max(np.asarray(self.out_shape))) + 1):
            down = same(np.maximum(lo - k, 0), hi) & (lo - k >= 0)
            up = same(lo, np.minimum(hi + k, self.out_shape)) & (
                hi + k <= np.asarray(self.out_shape)
            )
            new_lo = np.where(down, lo - k, new_lo)
            new_hi = np.where(up, hi + k, new_hi)
            if not (down.any() or up.any()):
                break
        return new_lo, new_hi

    @property
    def tile(self) -> np.ndarray:
        """Per axis, the side (output pixels) of the tiles :meth:`groups` starts from: a
        multiple of :attr:`step`, at least 8 pixels and the widest margin."""
        step = np.asarray(self.step)
        reach = np.max(
            [np.asarray(m) * s for s, m in zip(self.scales, self.margins, strict=True)], axis=0
        )
        return step * -(-np.maximum(8, reach) // step)

    def groups(self, coords: np.ndarray, overhead: int = 2048) -> list[np.ndarray]:
        """Pixels ``coords`` (``(N, ndim)`` output coordinates) in clusters that each get one
        crop, so marks far apart do not make one crop of everything between them.

        Pixels start in clusters of one :attr:`tile` tile each (of touching tiles, diagonals
        included, when more than ``_MAX_START_TILES`` tiles hold pixels: the merge below takes
        time quadratic in the clusters); two clusters are then merged, the most profitable pair
        first, while one crop of both costs no more than two crops (cost: the output pixels of
        the crop, :meth:`extent`, plus ``overhead`` per crop for the calls it takes). A pixel
        inside a cluster's :meth:`free_box` joins it. Each cluster is an int64 array of row
        numbers of ``coords``. (Starting from touching tiles made one box of scribbles in a
        chain of neighbouring tiles, most of it empty: at 128^3 with 50 scribbles, 2.7 times
        the output pixels of the crops merged from single tiles.)
        """
        if coords.shape[0] == 0:
            return []
        keys = coords // self.tile
        occupied = np.zeros(tuple(-(-np.asarray(self.out_shape) // self.tile)), dtype=bool)
        occupied[tuple(keys.T)] = True
        if int(occupied.sum()) <= _MAX_START_TILES:
            labels = np.zeros(occupied.shape, dtype=np.int64)
            count = int(occupied.sum())
            labels[occupied] = np.arange(1, count + 1)
        else:
            labels, count = ndimage.label(occupied, structure=np.ones((3,) * coords.shape[1]))
        of = labels[tuple(keys.T)] - 1
        first = np.arange(count)
        lo = np.zeros((first.size, coords.shape[1]), np.int64)
        hi = np.zeros_like(lo)
        lo[:] = np.iinfo(np.int64).max
        np.minimum.at(lo, of, coords)
        np.maximum.at(hi, of, coords + 1)
        owner = np.arange(first.size)
        alive = np.ones(first.size, dtype=bool)

        def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            start, stop = self.extent(a, b)
            return np.prod(np.maximum(stop - start, 0), axis=-1) + overhead

        own = cost(lo, hi)
        gain = (
            own[:, None]
            + own[None]
            - cost(np.minimum(lo[:, None], lo[None]), np.maximum(hi[:, None], hi[None]))
        )
        np.fill_diagonal(gain, -1)
        while gain.size:
            i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
            if gain[i, j] < 0:
                break
            lo[i], hi[i] = np.minimum(lo[i], lo[j]), np.maximum(hi[i], hi[j])
            owner[owner == j] = i
            own[i] = cost(lo[i], hi[i])
            alive[j] = False
            row = own[i] + own - cost(np.minimum(lo[i], lo), np.maximum(hi[i], hi))
            row[~alive] = -1
            row[i] = -1
            gain[i], gain[:, i] = row, row
            gain[j], gain[:, j] = -1, -1
        final = owner[of]
        order = np.argsort(final, kind="stable")
        cuts = np.flatnonzero(np.diff(final[order])) + 1
        return [g.astype(np.int64) for g in np.split(order, cuts)]


def _crop(f: torch.Tensor, window: Window) -> torch.Tensor:
    return f[(slice(None), slice(None)) + window]


def _reached(
    head: nn.Module, block: tuple[slice | int, ...], crops: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Per crop, the spatial pixels (bool) whose gradient from output ``block`` is non-zero."""
    leaves = [c.clone().requires_grad_(True) for c in crops]
    out = head(*leaves)
    grads = torch.autograd.grad(out[block].sum(), leaves, allow_unused=True)
    return [
        torch.zeros(c.shape[2:], dtype=torch.bool) if g is None else g.abs().sum(dim=(0, 1)) > 0
        for g, c in zip(grads, crops, strict=True)
    ]


def measure_margins(
    head: nn.Module,
    features: Features,
    out_shape: tuple[int, ...],
    reach: np.ndarray | None = None,
) -> FeatureGrid | None:
    """The grid of ``head`` over ``features`` (its output ``out_shape``), margins measured.

    Back-propagates from one aligned block of output pixels near the centre (one pixel per
    phase of every scale) through a crop of the features, and of random features of the same
    shapes, and reads, per feature, the pixels with a non-zero gradient in either. The crop
    starts with ``reach`` output pixels (per axis; default 8 of the coarsest feature's
    pixels) around the block and doubles while the gradient reaches its edge. None when the
    scales are not
    whole (:func:`grid_scales`), when the gradient reaches the border of the whole image (a
    global operation, e.g. instance or group normalisation, or a receptive field as large as
    the image), or when the head fails on a crop.
    """
    scales = grid_scales(features, out_shape)
    if scales is None:
        return None
    sizes = tuple(tuple(int(s) for s in f.shape[2:]) for f in features)
    flat = FeatureGrid(out_shape, sizes, scales, tuple((0,) * len(out_shape) for _ in features))
    step = np.asarray(flat.step)
    centre = np.asarray(out_shape) // 2 // step * step
    if reach is None:
        reach = 8 * np.max(np.asarray(scales), axis=0)
    while True:
        half = -(-reach // step) * step
        start, windows = FeatureGrid(
            out_shape, sizes, scales, tuple((0,) * len(out_shape) for _ in features)
        ).window(centre - half, centre + step + half)
        block = (0, slice(None)) + tuple(
            slice(int(c - s0), int(c - s0 + st))
            for c, s0, st in zip(centre, start, step, strict=True)
        )
        real = [_crop(f, w).detach() for f, w in zip(features, windows, strict=True)]
        gen = torch.Generator().manual_seed(0)
        noise = [torch.randn(c.shape, generator=gen, dtype=c.dtype) for c in real]
        try:
            seen = [_reached(head, block, real), _reached(head, block, noise)]
        except RuntimeError:
            return None
        margins, grow = [], False
        for a, b, w, s, size in zip(*seen, windows, scales, sizes, strict=True):
            where = a | b
            if not bool(where.any()):
                margins.append((0,) * len(out_shape))
                continue
            hit = np.argwhere(where.numpy())
            lo = hit.min(0) + [x.start for x in w]
            hi = hit.max(0) + [x.start for x in w]
            begin = np.asarray([x.start for x in w])
            end = np.asarray([x.stop for x in w]) - 1
            if np.any((lo == 0) & (begin == 0)) or np.any(
                (hi == np.asarray(size) - 1) & (end == np.asarray(size) - 1)
            ):
                return None  # reaches the image's border: not bounded here
            if np.any(lo == begin) or np.any(hi == end):
                grow = True
            sc = np.asarray(s)
            first, last = centre // sc, (centre + step) // sc - 1
            margins.append(tuple(int(v) for v in np.maximum(first - lo, hi - last)))
        if not grow:
            return FeatureGrid(out_shape, sizes, scales, tuple(margins))
        reach = 2 * reach
