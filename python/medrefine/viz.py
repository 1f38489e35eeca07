"""Overlay figures: image, network mask, marks, refined mask (matplotlib, no screen needed).

matplotlib is the ``viz`` extra, imported when a figure is drawn
(:func:`medrefine.extras.pyplot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.extras import pyplot

_COLOURS = (
    np.array(
        [
            [0, 0, 0],
            [255, 64, 64],
            [64, 160, 255],
            [255, 210, 0],
            [80, 220, 80],
            [220, 80, 220],
            [0, 220, 220],
        ],
        dtype=np.float32,
    )
    / 255
)


def display_slice(image: np.ndarray, spatial_dims: int, index: int | None) -> np.ndarray:
    """A 2D ``(H, W)`` or ``(H, W, 3)`` float view of an image (3D: slice ``index`` of axis 0)."""
    arr = np.asarray(image, dtype=np.float32)
    if spatial_dims == 3:
        arr = arr[..., index, :, :] if arr.ndim == 4 else arr[index]
    if arr.ndim == 3:  # channel-first RGB
        arr = np.moveaxis(arr[:3], 0, -1)
    lo, hi = np.percentile(arr, (0.5, 99.5))
    out: np.ndarray = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1)
    return out


def _overlay(
    ax: Any,
    base: np.ndarray,
    mask: np.ndarray | None,
    title: str,
    seeds: np.ndarray | None = None,
) -> None:
    ax.imshow(base, cmap="gray" if base.ndim == 2 else None)
    if mask is not None:
        rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
        colours = _COLOURS[np.asarray(mask) % len(_COLOURS)]
        rgba[..., :3], rgba[..., 3] = colours, 0.4 * (mask > 0)
        ax.imshow(rgba)
    if seeds is not None:
        rgba = np.zeros(seeds.shape + (4,), dtype=np.float32)
        painted = seeds > 0
        rgba[painted, :3] = _COLOURS[(seeds[painted] - 1) % len(_COLOURS)]
        rgba[painted & (seeds == 1), :3] = [1.0, 1.0, 1.0]  # background marks in white
        rgba[..., 3] = painted
        ax.imshow(rgba)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray | None]],
    seeds: np.ndarray | None,
    spatial_dims: int,
) -> Path:
    """Write a PNG: the image, then one panel per ``(title, mask)``; ``seeds`` (0 = none,
    c+1 = class c) are drawn on the panel titled ``"marks"``. 3D: the slice with the most seeds
    (or of the largest mask) along axis 0."""
    index = None
    if spatial_dims == 3:
        ref = seeds if seeds is not None and seeds.any() else panels[-1][1]
        index = int(np.argmax((np.asarray(ref) > 0).sum(axis=(1, 2)))) if ref is not None else 0
    base = display_slice(image, spatial_dims, index)

    def sl(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else (a[index] if index is not None else a)

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
    _overlay(axes[0], base, None, "image" + (f" (slice {index})" if index is not None else ""))
    for ax, (title, mask) in zip(axes[1:], panels, strict=True):
        _overlay(ax, base, sl(mask), title, sl(seeds) if title == "marks" else None)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
