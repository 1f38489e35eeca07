"""The numerical checks that choose how :class:`~medrefine.engine.head.runner.HeadRunner`
evaluates a head over one image's features, and the verdicts they leave.

Nothing about a head is assumed; each mode is tried against the head itself:

- ``pointwise`` (every feature has the image's shape): the head's row rewrite
  (:func:`~medrefine.engine.head.pointwise.as_row_head`) gives the head's output on a small central
  window (:func:`verified_row_head`);
- ``crop`` (the head's output covers the image): margins measured
  (:func:`~medrefine.engine.head.crop.measure_margins`), then the crops on three probe boxes
  (:func:`probe_boxes`) against the whole-image output; crops of one shape sharing a head call
  (:func:`~medrefine.engine.head.crop_eval.batch_agrees`) and intermediate tensors trimmed to the
  box (:class:`~medrefine.engine.head.crop_stages.Stages`) are each compared the same way.

:class:`HeadChecks` looks the head and shapes up in
:data:`~medrefine.engine.head.verdict.VERDICTS` first and runs the checks only where no verdict
is kept; what they decide is kept for the next image of that shape on the same network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import fx, nn

from medrefine.engine.head.crop import FeatureGrid, measure_margins
from medrefine.engine.head.crop_eval import BatchedCrops, batch_agrees, box_agrees, box_pixels
from medrefine.engine.head.crop_stages import Stages
from medrefine.engine.head.pointwise import RowHead, as_row_head
from medrefine.engine.head.rows import channels_last, rows
from medrefine.engine.head.verdict import VERDICTS, Verdict, verdict_key

Features = tuple[torch.Tensor, ...]
#: How margins are measured: ``(head, features, out_shape)`` to a grid, or None.
MeasureMargins = Callable[[nn.Module, Features, tuple[int, ...]], FeatureGrid | None]


def probe_window(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A small central window (at most 9 pixels per axis) used to probe the head."""
    return tuple(slice(max(s // 2 - 4, 0), min(s // 2 + 5, s)) for s in shape)


def probe_boxes(shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Output boxes ``[lo, hi)`` the crop path is checked on: an odd-sized box off the centre,
    one at the start and one at the end of every axis."""
    size = np.asarray(shape)
    side = np.minimum(np.maximum(size // 8, 1) | 1, size)
    inner = np.minimum(size // 3, size - side)
    return [(inner, inner + side), (np.zeros_like(size), side), (size - side, size)]


def covers(out_shape: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a head output of spatial ``out_shape`` holds an image of ``shape`` as its
    leading region (same rank, at least as large along every axis)."""
    return len(out_shape) == len(shape) and all(
        o >= s for o, s in zip(out_shape, shape, strict=True)
    )


def crop_output(
    head: nn.Module, features: Features, grid: FeatureGrid, lo: np.ndarray, hi: np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    """``head`` over the crops of ``features`` covering output box ``[lo, hi)``, and the output
    pixel its first element is."""
    start, windows = grid.window(lo, hi)
    crops = tuple(f[(slice(None), slice(None)) + w] for f, w in zip(features, windows, strict=True))
    return head(*crops), start


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    """The spatial shape of a ``(N, C, *spatial)`` tensor."""
    return tuple(int(s) for s in t.shape[2:])


def verified_row_head(
    head: nn.Module, features: Features, shape: tuple[int, ...]
) -> RowHead | None:
    """The head's row rewrite when it gives the head's output (``rtol``, ``atol`` 1e-4) on the
    features' :func:`probe_window` of an image of ``shape``; else None."""
    row_head = as_row_head(head)
    if row_head is None:
        return None
    window = (slice(None), slice(None)) + probe_window(shape)
    crops = tuple(f[window].float() for f in features)
    with torch.no_grad():
        want = head(*crops)
        got = row_head(*(rows(channels_last(c)) for c in crops))
    want = rows(channels_last(want))
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        return None
    return row_head


class HeadChecks:
    """The checks for ``head`` over ``features`` (each ``(1, C, *spatial)``, as cached) for an
    image of spatial ``shape`` (array order), or the verdict kept for them.

    Args:
        measure: how the crop mode's margins are measured; None: this module's
            :func:`measure_margins`, looked up when the checks are built.
    """

    def __init__(
        self,
        head: nn.Module,
        features: Features,
        shape: tuple[int, ...],
        measure: MeasureMargins | None = None,
    ) -> None:
        self.head, self.features, self.shape = head, features, shape
        self.measure = measure_margins if measure is None else measure
        self.key = verdict_key(head, features, shape)
        self.known = VERDICTS.get(self.key)  # None: check here, and keep what they decide

    def row_head(self) -> RowHead | None:
        """The pointwise mode's row head: where every feature has the image's shape, the
        verified rewrite (:func:`verified_row_head`, its verdict kept), or the rewrite of a
        head whose kept verdict is pointwise; else None."""
        if any(tuple(f.shape[2:]) != self.shape for f in self.features):
            return None
        if self.known is not None:
            return as_row_head(self.head) if self.known.pointwise else None
        row_head = verified_row_head(self.head, self.features, self.shape)
        if row_head is not None:
            VERDICTS.put(self.key, Verdict(pointwise=True))
        return row_head

    def crop(self, features: Features, whole: torch.Tensor) -> tuple[Verdict, Stages | None]:
        """The crop mode's verdict (its ``grid`` None: no crop mode) and trimmed stages for
        float32 ``features`` and the head's whole-image output ``whole`` over them
        (``(1, K, *out_shape)``); checked here unless a verdict is kept (then kept)."""
        out_shape = _spatial(whole)
        if not covers(out_shape, self.shape):
            if self.known is None:
                VERDICTS.put(self.key, Verdict(pointwise=False))
            return Verdict(pointwise=False), None
        if self.known is None:
            verdict, stages = self._checked_crop(features, whole)
            VERDICTS.put(self.key, verdict)
            return verdict, stages
        if self.known.cuts is None:
            return self.known, None
        assert isinstance(self.head, fx.GraphModule)  # cuts are node names of a traced head
        return self.known, Stages(self.head, self.known.cuts)

    def _checked_crop(
        self, features: Features, whole: torch.Tensor
    ) -> tuple[Verdict, Stages | None]:
        """Measured margins, crops on the probe boxes (else no grid), batched crops and
        trimmed stages: their verdict and the verified stages."""
        grid = self.measure(self.head, features, _spatial(whole))
        atol = 1e-5 * max(float(whole.abs().max()) if whole.numel() else 0.0, 1.0)
        if grid is None or not self._crops_agree(features, grid, whole, atol):
            return Verdict(pointwise=False), None
        inner = probe_boxes(_spatial(whole))[0]
        batch = batch_agrees(self.head, features, grid, whole, inner, atol)
        stages = self._verified_stages(features, grid, whole, atol)
        cuts = None if stages is None else stages.cuts
        return Verdict(pointwise=False, grid=grid, batch=batch, cuts=cuts), stages

    def _crops_agree(
        self, features: Features, grid: FeatureGrid, whole: torch.Tensor, atol: float
    ) -> bool:
        """The crop path equals the whole-image output on every probe box (``rtol`` 1e-4)."""
        for lo, hi in probe_boxes(_spatial(whole)):
            try:
                with torch.no_grad():
                    got, start = crop_output(self.head, features, grid, lo, hi)
            except RuntimeError:
                return False
            want = whole[
                (0, slice(None)) + tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            ]
            inside = (slice(None),) + tuple(
                slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True)
            )
            part = got[0][inside]
            if part.shape != want.shape or not torch.allclose(part, want, rtol=1e-4, atol=atol):
                return False
        return True

    def _verified_stages(
        self, features: Features, grid: FeatureGrid, whole: torch.Tensor, atol: float
    ) -> Stages | None:
        """The head's :class:`Stages` (measured on its cuts' values over the image, from a
        second whole-image run made only here, in the crop mode: :meth:`Stages.capture`)
        when crops run through them give the whole-image output on every probe box and on one
        pixel at each probe box's first corner (the tightest trims); else None."""
        out_shape = _spatial(whole)
        pairs = zip(grid.scales, grid.margins, strict=True)
        reach = np.max([np.asarray(m) * s for s, m in pairs], axis=0)
        values = Stages.capture(self.head, features)[1]
        stages = Stages.measure(self.head, values, out_shape, 2 * reach + grid.step)
        del values
        if stages is None:
            return None
        boxes = probe_boxes(out_shape)
        for lo, hi in boxes + [(lo, lo + 1) for lo, _ in boxes]:
            pts = box_pixels(lo, hi)
            one = [np.arange(len(pts))]
            crops = BatchedCrops(self.head, features, grid, pts, one, False, stages)
            if not box_agrees(crops, pts, whole, out_shape, atol):
                return None
        return stages
