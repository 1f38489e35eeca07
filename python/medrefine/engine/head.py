"""Evaluate a head cheaply: at chosen pixels during refinement, over the whole image once after.

Features are cached channels-last, so the feature vector of one pixel is a contiguous row.
Three modes, chosen per image from what the head computes (checked numerically, not assumed):

- ``pointwise``: the head is a chain of 1x1 convolutions and per-pixel operations
  (:mod:`medrefine.engine.pointwise` rewrites it to act on ``(N, C)`` rows) and every feature
  has the output's spatial size. The loop evaluates it on the marked pixels' rows alone; the
  whole-image prediction runs it over all rows in chunks.
- ``crop``: the head has a bounded receptive field (measured once by back-propagating from one
  output pixel); it runs on the bounding box of the needed pixels plus that margin.
- ``full``: anything else (global normalisation, features at other resolutions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from medrefine.engine.pointwise import RowHead, as_row_head

Features = tuple[torch.Tensor, ...]
_ROWS_PER_CHUNK = 1 << 16


def channels_last(f: torch.Tensor) -> torch.Tensor:
    """``f`` (``(1, C, *spatial)``) in channels-last memory order."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(f.ndim)
    return f.contiguous(memory_format=fmt) if fmt is not None else f.contiguous()


def rows(f: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` view of a channels-last ``(1, C, *spatial)`` feature (no copy)."""
    return f.movedim(1, -1).reshape(-1, f.shape[1])


def receptive_radius(head: nn.Module, features: Features) -> int | None:
    """Largest distance (pixels, any axis) from which a feature affects one output pixel.

    Measured at the centre pixel; None when it reaches the image border (global operations, a
    receptive field as large as the image) or a feature has another spatial size.
    """
    feats = [f.detach().clone().requires_grad_(True) for f in features]
    out = head(*feats)
    centre = np.asarray([s // 2 for s in out.shape[2:]])
    out[(0, slice(None)) + tuple(centre)].sum().backward()
    radius = 0
    for f in feats:
        if f.shape[2:] != out.shape[2:] or f.grad is None:
            return None
        hit = np.argwhere(f.grad.abs().sum(dim=(0, 1)).numpy() > 0)
        if hit.size == 0:
            continue
        lo, hi = hit.min(0), hit.max(0)
        if np.any(lo == 0) or np.any(hi == np.asarray(out.shape[2:]) - 1):
            return None
        radius = max(radius, int(np.max(np.maximum(centre - lo, hi - centre))))
    return radius


def _probe_window(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A small central window (at most 9 pixels per axis) used to probe the head."""
    return tuple(slice(max(s // 2 - 4, 0), min(s // 2 + 5, s)) for s in shape)


class HeadRunner:
    """Evaluates ``head`` over cached channels-last ``features`` of spatial ``shape``."""

    def __init__(
        self, head: nn.Module, features: Features, shape: tuple[int, ...], naive: bool = False
    ) -> None:
        self.head, self.features, self.shape = head, features, shape
        self.mode = "full"
        self._radius: int | None = None
        self._rows: RowHead | None = None
        if not naive and all(tuple(f.shape[2:]) == shape for f in features):
            self._rows = self._verified_row_head()
            if self._rows is not None:
                self.mode = "pointwise"
            else:
                window = tuple(slice(max(s // 2 - 16, 0), min(s // 2 + 17, s)) for s in shape)
                crop = tuple(f[(slice(None), slice(None)) + window] for f in features)
                self._radius = receptive_radius(head, crop)
                if self._radius is not None:
                    self.mode = "crop"

    def _verified_row_head(self) -> RowHead | None:
        row_head = as_row_head(self.head)
        if row_head is None:
            return None
        window = (slice(None), slice(None)) + _probe_window(self.shape)
        crops = tuple(f[window] for f in self.features)
        with torch.no_grad():
            want = self.head(*crops)
            got = row_head(*(rows(channels_last(c)) for c in crops))
        want = rows(channels_last(want))
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
            return None
        return row_head

    def evaluator(self, index: torch.Tensor) -> Callable[[], torch.Tensor]:
        """A function returning logits ``(N, K)`` at flat pixel ``index`` (int64), differentiable
        in the head's parameters. The features it needs are gathered or cropped once, here."""
        if self._rows is not None:
            row_head = self._rows
            gathered = tuple(rows(f)[index] for f in self.features)
            return lambda: row_head(*gathered)
        if self.mode == "crop":
            coords = np.stack(np.unravel_index(index.numpy(), self.shape), 1)
            r = self._radius or 0
            lo = np.maximum(coords.min(0) - r, 0)
            hi = np.minimum(coords.max(0) + r + 1, self.shape)
            window = (slice(None), slice(None)) + tuple(
                slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)
            )
            crops = tuple(f[window] for f in self.features)
            local = torch.from_numpy(np.ravel_multi_index(tuple((coords - lo).T), tuple(hi - lo)))

            def in_crop() -> torch.Tensor:
                out = self.head(*crops)
                return out.reshape(out.shape[1], -1)[:, local].T

            return in_crop

        def whole() -> torch.Tensor:
            out = self.head(*self.features)
            return out.reshape(out.shape[1], -1)[:, index].T

        return whole

    @torch.no_grad()
    def predict(self) -> torch.Tensor:
        """Logits ``(K, *shape)`` over the whole image."""
        if self._rows is None:
            return self.head(*self.features)[0].contiguous()
        all_rows = tuple(rows(f) for f in self.features)
        n = all_rows[0].shape[0]
        out = torch.cat(
            [
                self._rows(*(r[a : a + _ROWS_PER_CHUNK] for r in all_rows))
                for a in range(0, n, _ROWS_PER_CHUNK)
            ]
        )
        return out.T.reshape((-1,) + self.shape).contiguous()


def argmax_and_max(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class (int64, first maximum wins) and maximum logit of every pixel of ``(K, *shape)``
    logits, both ``shape``. One pass per class: much faster than ``argmax(0)`` over a strided
    axis."""
    best = logits[0].clone()
    label = torch.zeros(best.shape, dtype=torch.int64)
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
