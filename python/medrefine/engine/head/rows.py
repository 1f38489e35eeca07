"""Cached features as rows: a pixel's feature vector is one contiguous row of a channels-last
tensor, which is how the ``pointwise`` mode of :class:`~medrefine.engine.head.runner.HeadRunner`
reads them."""

from __future__ import annotations

import torch


def channels_last(f: torch.Tensor) -> torch.Tensor:
    """``f`` (``(1, C, *spatial)``) in channels-last memory order."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(f.ndim)
    return f.contiguous(memory_format=fmt) if fmt is not None else f.contiguous()


def rows(f: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` view of a channels-last ``(1, C, *spatial)`` feature (no copy)."""
    return f.movedim(1, -1).reshape(-1, f.shape[1])
