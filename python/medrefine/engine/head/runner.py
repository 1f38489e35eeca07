"""Evaluate a head cheaply: at chosen pixels during refinement, over the whole image once after.

Features are cached channels-last, so the feature vector of one pixel is a contiguous row.
Three modes, chosen per image from what the head computes (checked numerically, not assumed):

- ``pointwise``: the head is a chain of 1x1 convolutions and per-pixel operations
  (:mod:`medrefine.engine.head.pointwise` rewrites it to act on ``(N, C)`` rows) and every feature
  has the image's spatial size. The loop evaluates it on the marked pixels' rows alone; the
  whole-image prediction runs it over all rows in chunks.
- ``crop``: the head has a bounded receptive field, whatever each feature's resolution
  (convolutions, transposed convolutions, channel-wise norms, ``scale_factor`` upsampling; see
  :mod:`medrefine.engine.head.crop`). The loop runs it on the crop of every feature that covers the
  bounding box of the needed pixels plus that feature's measured margin; once per image the
  crops are compared with the whole-image output (three probe boxes: inside, and at both ends of
  every axis) and any difference, or a failure of the head on a crop, means ``full``. Within
  it, the marks' clusters give the crops and their anchors join them, crops of one shape share
  a head call (:mod:`medrefine.engine.head.crop_eval`), and a ``torch.fx`` head's intermediate
  tensors are trimmed to what the needed box reads (:mod:`medrefine.engine.head.crop_stages`);
  both are checked against the whole-image output once per image as well, and left out where
  they differ.
- ``full``: anything else (global normalisation, ``align_corners=True`` interpolation or an
  interpolation to a fixed size, features that are not a whole fraction of the output).

The checks (:mod:`medrefine.engine.head.checks`) run once per head and shape, not per image:
what they decide is kept (:mod:`medrefine.engine.head.verdict`, keyed by the head's structure
and values and the features' shapes, dtypes and device), and a later image of that shape on the
same network takes it without checking again.

The head's output may be larger than the image (a network that pads its input to a multiple):
the image is its leading region (``[0, s)`` along each axis), pixel indices are the image's,
and :meth:`HeadRunner.predict` returns the image's region only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medrefine.engine.head.checks import HeadChecks, covers, crop_output
from medrefine.engine.head.crop import FeatureGrid
from medrefine.engine.head.crop_eval import BatchedCrops, Clusters
from medrefine.engine.head.crop_stages import Stages
from medrefine.engine.head.pointwise import RowHead
from medrefine.engine.head.rows import channels_last as channels_last
from medrefine.engine.head.rows import rows as rows
from medrefine.engine.head.threads import single_threaded

Features = tuple[torch.Tensor, ...]
#: Pixels per call of a pointwise head over many pixels: on a quiet 2-core machine (128^3,
#: 48 -> 32 -> 3 channels) 2^14..2^17 rows per call all take about 88 ms for the volume and 2^18
#: takes 165 ms (the hidden layer's chunk leaves the cache).
_ROWS_PER_CHUNK = 1 << 16


@dataclass(frozen=True)
class PixelMap:
    """Image pixels to the rows of features on coarser grids: the feature pixel whose centre is
    nearest, through the grid the head maps onto its output (``(p + 0.5) * n / out``, per
    axis; ``p // scale`` for a whole scale). The image is the output's leading region.

    Attributes:
        shape: the image's spatial shape; out_shape: the head output's; sizes: each feature's.
    """

    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]

    @property
    def pixels(self) -> int:
        """Pixels of the image."""
        return int(np.prod(self.shape))

    def rows_of(self, feature: int, index: torch.Tensor) -> torch.Tensor:
        """Flat row numbers (int64) in feature ``feature`` of the flat image pixels ``index``."""
        size = self.sizes[feature]
        coords = np.unravel_index(index.numpy(), self.shape)
        near = tuple(
            np.minimum((2 * c + 1) * n // (2 * o), n - 1)
            for c, n, o in zip(coords, size, self.out_shape, strict=True)
        )
        return torch.from_numpy(np.ravel_multi_index(near, size).astype(np.int64))


def _param_versions(head: nn.Module) -> tuple[tuple[int, int], ...]:
    return tuple((id(t), t._version) for t in (*head.parameters(), *head.buffers()))


class HeadRunner:
    """Evaluates ``head`` over cached channels-last ``features`` for an image of spatial
    ``shape`` (array order); ``naive`` forces the ``full`` mode (a benchmark baseline)."""

    def __init__(
        self, head: nn.Module, features: Features, shape: tuple[int, ...], naive: bool = False
    ) -> None:
        self.head, self.features, self.shape = head, features, shape
        self.mode = "full"
        self.grid: FeatureGrid | None = None
        self.out_shape = shape
        self._rows: RowHead | None = None
        self._first: tuple[torch.Tensor, tuple[tuple[int, int], ...]] | None = None
        self._clusters: Clusters | None = None  # the last anchor_region's marks
        self._batch = False  # crops of one shape may share a head call (crop mode)
        self._stages: Stages | None = None  # intermediate tensors trimmed (crop mode)
        # the mode's checks, or the verdict an earlier image's runner kept for this head and
        # these shapes (medrefine.engine.head.checks)
        checks = None if naive else HeadChecks(head, features, shape)
        if checks is not None:
            self._rows = checks.row_head()
            if self._rows is not None:
                self.mode = "pointwise"
                return
        # Features cached in float16 (a large volume's) are read as float32 rows in the
        # pointwise mode; the other modes take the whole tensors, so they get float32 copies.
        self.features = features = tuple(f.float() for f in features)
        with torch.no_grad():
            whole = self.head(*features)
        self.out_shape = tuple(int(s) for s in whole.shape[2:])
        self._first = (whole, _param_versions(head))
        if checks is None:
            return
        verdict, self._stages = checks.crop(features, whole)
        if verdict.grid is not None:
            self.grid, self.mode, self._batch = verdict.grid, "crop", verdict.batch

    def pixel_map(self) -> PixelMap | None:
        """How image pixels find their feature rows (:class:`PixelMap`); None when every
        feature has the image's shape (row ``i`` is pixel ``i``)."""
        if all(tuple(f.shape[2:]) == self.shape for f in self.features):
            return None
        sizes = tuple(tuple(int(v) for v in f.shape[2:]) for f in self.features)
        out = self.out_shape if self._covers_image() else self.shape
        return PixelMap(self.shape, out, sizes)

    def _covers_image(self) -> bool:
        return covers(self.out_shape, self.shape)

    def _box_output(
        self, grid: FeatureGrid, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """The head over the feature crops covering output box ``[lo, hi)`` (through the
        verified :class:`Stages` where there are any: intermediate tensors trimmed to what the
        box reads), and the output pixel its first element is."""
        if self._stages is None:
            return crop_output(self.head, self.features, grid, lo, hi)
        start, windows = grid.window(lo, hi)
        crops = tuple(
            f[(slice(None), slice(None)) + w] for f, w in zip(self.features, windows, strict=True)
        )
        origin, trims = self._stages.trims(start, lo, hi)
        return self._stages.run(crops, trims), origin

    def _out_index(self, index: torch.Tensor) -> torch.Tensor:
        """Flat image pixel ``index`` as flat indices into the head's output."""
        if self.out_shape == self.shape:
            return index
        coords = np.unravel_index(index.numpy(), self.shape)
        return torch.from_numpy(np.ravel_multi_index(coords, self.out_shape))

    def anchor_region(self, index: np.ndarray) -> np.ndarray | None:
        """Flat image pixels the crop path evaluates anyway for flat ``index`` (int64): around
        each cluster of ``index`` (:meth:`FeatureGrid.groups`), the box its feature crops cover
        (:meth:`FeatureGrid.free_box`). None outside the ``crop`` mode (any pixel costs the
        same there). The clusters are kept: an :meth:`evaluator` whose index starts with
        ``index`` gives them one crop each and puts the other pixels into the cluster whose
        box holds them (:meth:`Clusters.assign`)."""
        if self.grid is None or index.size == 0:
            return None
        self._clusters = Clusters.of(self.grid, index, self.shape)
        return self._clusters.region(self.shape)

    def evaluator(self, index: torch.Tensor) -> Callable[[], torch.Tensor]:
        """A function returning logits ``(N, K)`` at flat image pixel ``index`` (int64),
        differentiable in the head's parameters. The features it needs are gathered or cropped
        once, here."""
        if self._rows is not None:
            row_head = self._rows
            gathered = tuple(rows(f)[index].float() for f in self.features)
            return lambda: row_head(*gathered)
        if self.grid is not None and index.numel():
            return self._crop_evaluator(self.grid, index)
        flat = self._out_index(index)

        def whole() -> torch.Tensor:
            out = self.head(*self.features)
            return out.reshape(out.shape[1], -1)[:, flat].T

        return whole

    def _crop_evaluator(self, grid: FeatureGrid, index: torch.Tensor) -> Callable[[], torch.Tensor]:
        """The ``crop`` mode's evaluator: one crop per cluster of ``index``
        (:meth:`anchor_region`'s clusters where ``index`` starts with its marks), crops of one
        shape batched (:class:`BatchedCrops`)."""
        flat = index.numpy()
        coords = np.stack(np.unravel_index(flat, self.shape), 1)
        if self._clusters is not None:
            groups = self._clusters.assign(grid, flat, self.shape)
        else:
            groups = grid.groups(coords)
        crops = BatchedCrops(
            self.head, self.features, grid, coords, groups, self._batch, self._stages
        )

        def in_crops() -> torch.Tensor:
            with single_threaded():  # small crops: thread hand-offs cost more than they save
                return crops()

        return in_crops

    @torch.no_grad()
    def predict_box(self, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
        """Logits ``(K, *(hi - lo))`` of the image box ``[lo, hi)`` (per axis, pixels): on its
        feature crops in the ``crop`` mode, on its pixels' feature rows in the ``pointwise``
        mode, else cut from :meth:`predict`."""
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        if self._rows is not None:
            size = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
            grid = np.indices(size).reshape(len(size), -1) + np.asarray(lo).reshape(-1, 1)
            flat = np.ravel_multi_index(tuple(grid), self.shape)
            return self._row_logits(torch.from_numpy(flat)).reshape((-1, *size))
        if self.grid is None:
            return self.predict()[(slice(None), *box)].contiguous()
        if np.prod(np.asarray(hi) - np.asarray(lo)) <= _ROWS_PER_CHUNK:
            with single_threaded():
                out, start = self._box_output(self.grid, np.asarray(lo), np.asarray(hi))
        else:
            out, start = self._box_output(self.grid, np.asarray(lo), np.asarray(hi))
        inside = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))
        return out[0][(slice(None), *inside)].contiguous()

    @torch.no_grad()
    def predict(self) -> torch.Tensor:
        """Logits ``(K, *shape)`` over the whole image (the head's output where it is not
        larger than the image)."""
        if self._rows is None:
            first, self._first = self._first, None
            if first is not None and first[1] == _param_versions(self.head):
                out = first[0][0]
            else:
                out = self.head(*self.features)[0]
            if self._covers_image() and self.out_shape != self.shape:
                out = out[(slice(None),) + tuple(slice(0, s) for s in self.shape)]
            return out.contiguous()
        return self._row_logits(None).reshape((-1,) + self.shape)

    def _row_logits(self, index: torch.Tensor | None) -> torch.Tensor:
        """The pointwise head's logits ``(K, n)`` at the flat pixels ``index`` (int64 ``(n,)``;
        None: every pixel), in chunks of ``_ROWS_PER_CHUNK`` rows written into one buffer."""
        assert self._rows is not None
        all_rows = tuple(rows(f) for f in self.features)
        n = all_rows[0].shape[0] if index is None else index.numel()
        logits = torch.empty(0)  # (K, n) once the first chunk says K; chunks' rows as columns
        for a in range(0, n, _ROWS_PER_CHUNK):
            part = (
                slice(a, a + _ROWS_PER_CHUNK) if index is None else index[a : a + _ROWS_PER_CHUNK]
            )
            chunk = self._rows(*(r[part].float() for r in all_rows))
            if a == 0:
                logits = chunk.new_empty((chunk.shape[1], n))
            logits[:, a : a + chunk.shape[0]] = chunk.T
        return logits


def argmax_and_max(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class (int64, first maximum wins) and maximum logit of every pixel of ``(K, *shape)``
    logits, both ``shape``. One pass per class: much faster than ``argmax(0)`` over a strided
    axis."""
    best = logits[0].clone()
    label = torch.zeros(best.shape, dtype=torch.int64, device=best.device)
    for k in range(1, logits.shape[0]):
        better = logits[k] > best
        best = torch.maximum(best, logits[k])
        label[better] = k
    return label, best


def label_argmax(logits: torch.Tensor) -> np.ndarray:
    """Class of every pixel of ``(K, *shape)`` logits as an int64 array ``shape`` (first
    maximum wins)."""
    return argmax_and_max(logits)[0].numpy()


def last_layer(head: nn.Module, num_classes: int) -> nn.Module:
    """The head's output layer: the last module whose weight has ``num_classes`` output rows."""
    for module in reversed(list(head.modules())):
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 2 and weight.shape[0] == num_classes:
            return module
    raise ValueError(f"the head has no layer with {num_classes} outputs to extend")


def resize_outputs(layer: nn.Module, outputs: int) -> None:
    """Give ``layer`` (Conv*/Linear) ``outputs`` output channels: keep the existing rows, append
    rows of zero weight (values are then set by the caller or by ``load_state_dict``)."""
    weight: torch.Tensor = layer.weight  # type: ignore[assignment]
    bias: torch.Tensor | None = getattr(layer, "bias", None)
    k = min(weight.shape[0], outputs)
    with torch.no_grad():
        new_w = weight.new_zeros((outputs,) + tuple(weight.shape[1:]))
        new_w[:k] = weight[:k]
        layer.weight = nn.Parameter(new_w)
        if bias is not None:
            new_b = bias.new_zeros(outputs)
            new_b[:k] = bias[:k]
            layer.bias = nn.Parameter(new_b)
    for attr in ("out_channels", "out_features"):
        if hasattr(layer, attr):
            setattr(layer, attr, outputs)
