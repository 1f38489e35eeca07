"""Distance maps for the gates: Euclidean, or geodesic over an image's edges.

Both take a bool array of *targets* (True = a pixel distances are measured from; a window of the
image, 2D ``(H, W)`` or 3D ``(D, H, W)``) and give every pixel's distance to the nearest target
in pixels, float64. Large windows are computed on a grid coarsened by an integer stride
(max-pooled targets, mean-pooled image) and upsampled by nearest neighbour: the error is below
the stride, and a gate wide enough to need such a window does not need single-pixel detail.

Anisotropic images: given ``spacing`` (voxel size per axis, from
:func:`medrefine.types.relative_spacing`, in units of the finest axis's voxel size), a step
along a coarse axis is as long as the spacing says.
The Euclidean map is exact; the geodesic one repeats every voxel of a coarse axis
``round(spacing)`` times (an isotropic grid, exact for integer ratios), computes there and reads
each voxel's centre back. Without a spacing (or with an isotropic one) nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import ndimage

from medrefine.kernels.geodesic import geodesic_distance
from medrefine.types import Spacing

#: Pixels above which a distance map is computed on a coarser grid (Euclidean, geodesic).
EDT_PIXELS = 1 << 18
GEODESIC_PIXELS = 1 << 16

EDGE_SMOOTHING = 1.0  # (coarse) pixels, Gaussian sigma before the gradient


def _stride(shape: tuple[int, ...], budget: int) -> int:
    return max(1, int(np.ceil((float(np.prod(shape)) / budget) ** (1 / len(shape)))))


def _pool(array: np.ndarray, stride: int, kind: str) -> np.ndarray:
    """``(C, *S)`` pooled by ``stride`` on every spatial axis (``"max"`` or ``"mean"``)."""
    ndim = array.ndim - 1
    fn = {
        ("max", 2): F.max_pool2d,
        ("max", 3): F.max_pool3d,
        ("mean", 2): F.avg_pool2d,
        ("mean", 3): F.avg_pool3d,
    }[kind, ndim]
    pool = cast(Callable[..., torch.Tensor], fn)
    x = torch.from_numpy(np.array(array, dtype=np.float32))[None]  # a copy: inputs may be read-only
    return pool(x, stride, stride, ceil_mode=True)[0].numpy()


def _upsample(d: np.ndarray, stride: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling of a coarse map by ``stride``, cut to ``shape``."""
    t = torch.from_numpy(d)
    for axis, size in enumerate(shape):
        t = t.repeat_interleave(stride, dim=axis).narrow(axis, 0, size)
    return t.numpy()


@dataclass(frozen=True)
class CoarseMap:
    """A distance map of a window of ``shape``, held on the grid it was computed on: coarsened
    by ``stride`` on every axis (1: the window's own grid). A pixel ``p`` reads
    ``values[p // stride]``, as nearest-neighbour upsampling would give it; reading points or
    transforming values here, before any upsampling, saves the full-size copies.

    Attributes:
        values: float64 ``ceil(shape / stride)``, pixels.
        stride: the coarsening, >= 1.
        shape: the window's shape.
    """

    values: np.ndarray
    stride: int
    shape: tuple[int, ...]

    def full(self) -> np.ndarray:
        """The map at the window's resolution, ``shape``."""
        return self.values if self.stride == 1 else _upsample(self.values, self.stride, self.shape)

    def at(self, points: np.ndarray) -> np.ndarray:
        """Values at ``points`` ``(N, ndim)`` int (window coordinates), ``(N,)``."""
        return self.values[tuple((points // self.stride).T)]

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> CoarseMap:
        """``fn`` applied to every value (an elementwise function: it commutes with the
        upsampling)."""
        return CoarseMap(fn(self.values), self.stride, self.shape)


def euclidean_to(targets: np.ndarray, spacing: Spacing | None = None) -> np.ndarray:
    """Euclidean distance (pixels) to the nearest True pixel of ``targets`` (inf if none); a
    step along axis ``i`` is ``spacing[i]`` pixels long (None: 1 on every axis)."""
    return euclidean_map(targets, spacing).full()


def euclidean_map(targets: np.ndarray, spacing: Spacing | None = None) -> CoarseMap:
    """:func:`euclidean_to` before its upsampling."""
    if not targets.any():
        return CoarseMap(np.full(targets.shape, np.inf), 1, targets.shape)
    sampling = np.ones(targets.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    stride = _stride(targets.shape, EDT_PIXELS)
    if stride == 1:
        d = ndimage.distance_transform_edt(~targets, sampling=sampling)
        return CoarseMap(d, 1, targets.shape)
    coarse = _pool(targets[None], stride, "max")[0] > 0
    d = ndimage.distance_transform_edt(~coarse, sampling=sampling * stride)
    return CoarseMap(d, stride, targets.shape)


def edge_cost(image: np.ndarray, weight: float) -> np.ndarray:
    """Path cost per pixel over ``image`` (``(C, *S)``): ``1 + weight * m / mean(m)``, ``m`` the
    gradient magnitude of the Gaussian-smoothed image (L2 over channels). Crossing an edge ``k``
    times as strong as the mean gradient costs about ``weight * k`` extra pixels per pixel of
    edge; relative to the mean, so ``weight`` reads the same at any intensity scale."""
    squared = np.zeros(image.shape[1:], dtype=np.float32)
    for channel in image:
        grad = ndimage.gaussian_gradient_magnitude(
            channel.astype(np.float32), EDGE_SMOOTHING, mode="nearest"
        )
        squared += grad * grad
    m = np.sqrt(squared)
    return (1.0 + weight * m / max(float(m.mean()), 1e-12)).astype(np.float32)


def geodesic_to(
    targets: np.ndarray,
    image: np.ndarray,
    weight: float,
    limit: float,
    spacing: Spacing | None = None,
) -> np.ndarray:
    """Geodesic distance (pixels) to the nearest True pixel of ``targets`` over
    :func:`edge_cost` of ``image`` (``(C, *targets.shape)``); inf beyond ``limit`` pixels or
    where unreachable. With ``spacing``, a coarse axis's voxels are repeated ``round(spacing)``
    times so that the grid the distance is computed on is isotropic."""
    return geodesic_map(targets, image, weight, limit, spacing).full()


def geodesic_map(
    targets: np.ndarray,
    image: np.ndarray,
    weight: float,
    limit: float,
    spacing: Spacing | None = None,
) -> CoarseMap:
    """:func:`geodesic_to` before its upsampling (an anisotropic ``spacing``: after it)."""
    if spacing is not None:
        repeats = tuple(max(1, round(v)) for v in spacing)
        if any(r > 1 for r in repeats):
            # Each voxel becomes a block of repeats; its centre stands for it (targets too).
            centres = np.ix_(
                *(np.arange(n) * r + r // 2 for n, r in zip(targets.shape, repeats, strict=True))
            )
            fine_i = image
            for axis, r in enumerate(repeats):
                fine_i = np.repeat(fine_i, r, axis=axis + 1)
            fine_t = np.zeros(fine_i.shape[1:], dtype=bool)
            fine_t[centres] = targets
            d = geodesic_to(fine_t, fine_i, weight, limit)[centres]
            return CoarseMap(d, 1, targets.shape)
    shape = targets.shape
    if not targets.any():
        return CoarseMap(np.full(shape, np.inf), 1, shape)
    stride = _stride(shape, GEODESIC_PIXELS)
    if stride > 1:
        targets = _pool(targets[None], stride, "max")[0] > 0
        image = _pool(image, stride, "mean")
    coarse = geodesic_distance(edge_cost(image, weight), targets, limit=limit / stride)
    return CoarseMap(coarse.astype(np.float64) * stride, stride, shape)
