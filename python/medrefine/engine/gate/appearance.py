"""Appearance models of the marked classes: what each class looks like in this image.

The geodesic distances of :mod:`medrefine.engine.gate.propagate` reach only what the marks touch; an
unmarked structure that looks like a marked one (the next nucleus) is as far from the marks as
the background is. Each marked class ``c`` therefore also gets a histogram ``q_c`` of the image's
values at its drawn pixels, and every pixel its log-likelihood ``log q_c(I_p)``: the same colour
model a seeded graph cut uses (Boykov and Jolly, ICCV 2001), read by the fusion as one more term.

- Values are binned per channel between the image's 0.5th and 99.5th percentiles (the session's
  image is z-scored, so outliers would otherwise squeeze every other value into a few bins);
  several channels (RGB) share one joint histogram of ``bins ** C`` cells.
- Each histogram is blurred by one bin and mixed with a small uniform part, so no likelihood is
  zero and a handful of drawn pixels still describes a class.
- A class with no drawn pixel takes the histogram of the whole image: it is "anything this image
  shows", so a marked class wins by appearance only where its colour is more typical of its marks
  than of the image.
- Optionally (``shown`` and ``prior``) each class's histogram also counts the pixels the mask
  shown before the refine gives it, scaled to ``prior`` pixels in all: a session that started
  from a validated head (a site head) has a mask worth more than a few strokes, and one thin
  stroke per class would otherwise describe its class by a handful of colours.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["bin_index", "class_log_likelihoods", "log_density"]

#: Weight of the uniform distribution mixed into every histogram.
UNIFORM_MIX = 1e-3
#: Percentiles of each channel mapped to the first and the last bin.
CLIP_PERCENTILES = (0.5, 99.5)
#: At most about this many evenly strided pixels per channel estimate those percentiles.
PERCENTILE_SAMPLES = 1 << 16


def bin_index(image: np.ndarray, bins: int) -> np.ndarray:
    """The joint histogram cell of every pixel: ``image`` ``(C, *shape)`` float ->
    ``(*shape)`` int64 in ``[0, bins ** C)``, each channel binned between its own
    :data:`CLIP_PERCENTILES` (estimated on a strided sample of the pixels)."""
    per_channel = []
    for channel in image:
        every = channel.reshape(-1)[:: max(1, channel.size // PERCENTILE_SAMPLES)]
        low, high = np.percentile(every, CLIP_PERCENTILES)
        span = max(float(high - low), 1e-6)
        scaled = (channel.astype(np.float32) - np.float32(low)) * np.float32(bins / span)
        per_channel.append(np.clip(scaled, 0, bins - 1).astype(np.int64))
    return np.ravel_multi_index(tuple(per_channel), (bins,) * image.shape[0])


def log_density(
    sample: np.ndarray, bins: int, channels: int, extra: np.ndarray | None = None
) -> np.ndarray:
    """``log`` of the histogram of ``sample`` (joint cells, int, from :func:`bin_index` or any
    binning into ``bins ** channels`` cells), plus ``extra`` counts per cell (``(bins **
    channels,)`` float; None: none), blurred by one bin and mixed with :data:`UNIFORM_MIX` of
    the uniform distribution: one value per cell, ``(bins ** channels,)`` float64 (a seeded
    graph cut's data term reads the same histogram)."""
    size = bins**channels
    counts = np.bincount(sample, minlength=size).astype(np.float64)
    if extra is not None:
        counts += extra
    blurred = ndimage.gaussian_filter(counts.reshape((bins,) * channels), 1.0, mode="constant")
    density = (1.0 - UNIFORM_MIX) * blurred.ravel() / max(blurred.sum(), 1e-12) + UNIFORM_MIX / size
    return np.log(density)


def class_log_likelihoods(
    image: np.ndarray,
    index: np.ndarray,
    label: np.ndarray,
    num_classes: int,
    bins: int,
    cells: np.ndarray | None = None,
    shown: np.ndarray | None = None,
    prior: float = 0.0,
) -> np.ndarray:
    """``(K, *shape)`` float32: each pixel's log-likelihood (nats) under each class's histogram.

    Args:
        image: ``(C, *shape)`` float, channel-first, 2D ``(y, x)`` or 3D ``(z, y, x)``.
        index: flat indices (into ``shape``) of the drawn pixels.
        label: their classes, ``< num_classes``.
        num_classes: ``K``.
        bins: histogram bins per channel.
        cells: ``bin_index(image, bins)`` when the caller keeps it (it depends on the image
            alone); None: computed here.
        shown: the label mask ``shape`` shown before the refine, or None.
        prior: how many pixels' worth of ``shown``'s histogram of each class joins that class's
            drawn pixels (0: the drawn pixels alone).

    A class with drawn pixels (or, with a prior, pixels in ``shown``) is modelled by them; one
    without, by the whole image.
    """
    shape = image.shape[1:]
    cells = (bin_index(image, bins) if cells is None else cells).reshape(-1)
    channels = image.shape[0]
    rest = log_density(cells, bins, channels)[cells]
    out = np.empty((num_classes, cells.size), dtype=np.float32)
    seen = None if shown is None or prior <= 0 else shown.reshape(-1)
    for c in range(num_classes):
        own = index[label == c]
        extra = None if seen is None else _prior(cells[seen == c], bins**channels, prior)
        if own.size == 0 and extra is None:
            out[c] = rest
            continue
        sample = np.zeros(cells.size, dtype=bool)
        sample[own] = True
        out[c] = log_density(cells[sample], bins, channels, extra)[cells]
    return out.reshape(num_classes, *shape)


def _prior(cells: np.ndarray, size: int, pixels: float) -> np.ndarray | None:
    """The histogram of ``cells`` scaled to ``pixels`` counts in all, ``(size,)`` float64; None
    when ``cells`` is empty (the mask shows none of that class)."""
    if cells.size == 0:
        return None
    return np.bincount(cells, minlength=size).astype(np.float64) * (pixels / cells.size)
