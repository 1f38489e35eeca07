"""The seed-method interface and the preprocessing every baseline shares.

Conventions (the same for every baseline):

- ``image``: ``(H, W)`` grey, ``(3, H, W)`` RGB channel-first, or ``(D, H, W)`` volume; any real
  numeric dtype. Which of the two 3-axis layouts is meant follows from ``seeds``: a 2D ``seeds``
  of shape ``(H, W)`` makes a ``(3, H, W)`` image RGB, a 3D ``seeds`` of the same shape makes it
  a volume. A single-channel image may also come as ``(1, *spatial)``. Spatial axes are in array
  order: 2D ``(y, x)``, 3D ``(z, y, x)``.
- ``seeds``: integer array of the spatial shape; 0 = no seed, ``c + 1`` = class ``c``. Classes are
  ``0..num_classes-1`` with 0 = background, as in the robot-user protocol.
- The result is an ``int32`` label mask of the spatial shape with values in ``0..num_classes-1``.
  Every seeded pixel keeps its seed class, a class without seeds never appears, and when only one
  class is seeded the whole mask is that class (no method is run; nor when every pixel is seeded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medrefine.errors import InputError

FloatArray = NDArray[np.float64]
LabelArray = NDArray[np.int32]

#: Intensity percentiles mapped to 0 and 1 by :func:`normalise_intensity` (robust to hot pixels).
NORMALISE_PERCENTILES = (0.5, 99.5)


class SeedMethod(Protocol):
    """A seed-based interactive segmentation method (a classical baseline).

    ``name`` is its registry name; ``spatial_dims`` lists the spatial dimensionalities (2, 3) it
    accepts. ``segment(image, seeds, num_classes)`` follows the conventions in this module's
    docstring and raises :class:`ValueError` on bad input (wrong dimensionality, no seeds, ...).
    """

    @property
    def name(self) -> str: ...

    @property
    def spatial_dims(self) -> tuple[int, ...]: ...

    def segment(self, image: np.ndarray, seeds: np.ndarray, num_classes: int) -> LabelArray: ...


@dataclass(frozen=True)
class SeedProblem:
    """One validated, normalised segmentation problem, as every baseline receives it.

    Attributes:
        image: float64 ``(C, *spatial)``, C = 1 (grey) or 3 (RGB), scaled to ``[0, 1]``.
        seeds: int32 ``(*spatial)``; 0 = none, ``c + 1`` = class ``c``.
        num_classes: K, the number of classes (labels ``0..K-1``).
        classes: the seeded classes, ascending; at least two.
    """

    image: FloatArray
    seeds: LabelArray
    num_classes: int
    classes: tuple[int, ...]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.seeds.shape)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.seeds.ndim


class SeedBaseline(ABC):
    """Template for a baseline: validate and normalise once, then run :meth:`_segment`.

    Subclasses set ``name`` and ``spatial_dims`` and implement :meth:`_segment`, which only ever
    sees a :class:`SeedProblem` with at least two seeded classes.
    """

    name: ClassVar[str]
    spatial_dims: ClassVar[tuple[int, ...]]

    def segment(self, image: np.ndarray, seeds: np.ndarray, num_classes: int) -> LabelArray:
        """Segment ``image`` from ``seeds``; see the module docstring for shapes and dtypes.

        Returns:
            int32 label mask of the spatial shape (2D ``(y, x)``, 3D ``(z, y, x)``).

        Raises:
            InputError (a ValueError): wrong dimensionality for this method, shape mismatch,
                non-integer or out-of-range seeds, no seed at all, NaN/inf in the image.
        """
        problem = prepare_problem(self.name, self.spatial_dims, image, seeds, num_classes)
        if len(problem.classes) == 1:
            return np.full(problem.spatial_shape, problem.classes[0], dtype=np.int32)
        if np.all(problem.seeds > 0):  # nothing left to decide
            return problem.seeds - 1
        labels = self._segment(problem)
        return keep_seeds(labels, problem.seeds)

    @abstractmethod
    def _segment(self, problem: SeedProblem) -> NDArray[np.integer]:
        """Return class indices ``(*spatial)`` drawn from ``problem.classes``."""


def prepare_problem(
    method: str,
    supported_dims: tuple[int, ...],
    image: np.ndarray,
    seeds: np.ndarray,
    num_classes: int,
) -> SeedProblem:
    """Validate the inputs of ``method`` and return them as a :class:`SeedProblem`."""
    seeds = np.asarray(seeds)
    image = np.asarray(image)
    channels = _as_channels_first(method, image, seeds)
    ndim = seeds.ndim
    if ndim not in supported_dims:
        raise InputError(
            f"{method} supports spatial dims {supported_dims}, got a {ndim}D problem "
            f"(image shape {image.shape}, seeds shape {seeds.shape})"
        )
    seed_map, classes = _check_seeds(method, seeds, num_classes)
    return SeedProblem(normalise_intensity(channels), seed_map, num_classes, classes)


def _as_channels_first(method: str, image: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Return ``image`` as ``(C, *spatial)``; the spatial shape is ``seeds.shape``."""
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_):
        raise InputError(f"{method}: image must be numeric, got dtype {image.dtype}")
    if np.iscomplexobj(image):
        raise InputError(f"{method}: image must be real, got dtype {image.dtype}")
    if seeds.ndim not in (2, 3):
        raise InputError(f"{method}: seeds must be 2D (y, x) or 3D (z, y, x), got {seeds.shape}")
    if image.shape == seeds.shape:
        return image[np.newaxis]
    if image.shape == (1, *seeds.shape) or (seeds.ndim == 2 and image.shape == (3, *seeds.shape)):
        return image
    raise InputError(
        f"{method}: image shape {image.shape} does not match seeds shape {seeds.shape}; "
        "expected (H, W), (3, H, W) with (H, W) seeds, or (D, H, W) (a leading channel axis "
        "of length 1 is also accepted)"
    )


def _check_seeds(
    method: str, seeds: np.ndarray, num_classes: int
) -> tuple[LabelArray, tuple[int, ...]]:
    """Check seed dtype and range; return int32 seeds and the seeded classes (ascending)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise InputError(f"{method}: num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise InputError(f"{method}: num_classes must be >= 1, got {num_classes}")
    if not np.issubdtype(seeds.dtype, np.integer):
        raise InputError(f"{method}: seeds must be an integer array, got dtype {seeds.dtype}")
    if seeds.size == 0:
        raise InputError(f"{method}: seeds are empty (shape {seeds.shape})")
    low, high = int(seeds.min()), int(seeds.max())
    if low < 0 or high > num_classes:
        raise InputError(
            f"{method}: seed values must be in 0..{num_classes} (0 = none, c+1 = class c), "
            f"got {low}..{high}"
        )
    if high == 0:
        raise InputError(f"{method}: no seeds given (seeds are all 0); mark at least one pixel")
    seeded = np.unique(seeds[seeds > 0]) - 1
    return seeds.astype(np.int32, copy=False), tuple(int(c) for c in seeded)


def normalise_intensity(channels: np.ndarray) -> FloatArray:
    """Scale ``(C, *spatial)`` to float64 ``[0, 1]``, jointly over channels (keeps colour ratios).

    The :data:`NORMALISE_PERCENTILES` map to 0 and 1 and values beyond them are clipped; if they
    coincide the minimum and maximum are used instead; a constant image becomes all zeros.
    """
    data = channels.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError("image contains NaN or infinite values")
    low, high = np.percentile(data, NORMALISE_PERCENTILES)
    if high <= low:
        low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros_like(data)
    return np.clip((data - low) / (high - low), 0.0, 1.0)


def gradient_magnitude(image: FloatArray, sigma: float) -> FloatArray:
    """Gradient magnitude of the Gaussian-smoothed image, L2 over channels.

    Args:
        image: float ``(C, *spatial)``.
        sigma: Gaussian standard deviation in pixels (voxels), the same on every spatial axis.

    Returns:
        float64 ``(*spatial)``, in intensity units per pixel.
    """
    squared = np.zeros(image.shape[1:], dtype=np.float64)
    for channel in image:
        squared += ndimage.gaussian_gradient_magnitude(channel, sigma=sigma, mode="nearest") ** 2
    return np.sqrt(squared)


def seed_mask(problem: SeedProblem, cls: int) -> NDArray[np.bool_]:
    """Boolean ``(*spatial)`` mask of the pixels seeded with class ``cls``."""
    return problem.seeds == cls + 1


def keep_seeds(labels: NDArray[np.integer], seeds: LabelArray) -> LabelArray:
    """Return ``labels`` as int32 with every seeded pixel set to its seed class."""
    out = labels.astype(np.int32, copy=True)
    seeded = seeds > 0
    out[seeded] = seeds[seeded] - 1
    return out
