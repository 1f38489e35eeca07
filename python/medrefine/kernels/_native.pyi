"""Private C++ kernels; use the checked facades in the medrefine package."""

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

_Image: TypeAlias = (
    npt.NDArray[np.uint8]
    | npt.NDArray[np.uint16]
    | npt.NDArray[np.int16]
    | npt.NDArray[np.int32]
    | npt.NDArray[np.float32]
    | npt.NDArray[np.float64]
)

ABI_VERSION: int

def region_grow(
    image: _Image,
    seeds: npt.NDArray[np.int32],
    threshold: float,
    criterion: str,
    connectivity: int,
    max_distance: float,
    spacing: Sequence[float],
) -> npt.NDArray[np.int32]:
    """Grow int32 seeds over a C-contiguous (C, *S) image of one of the six dtypes; no copies."""

def geodesic_distance(
    cost: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    seeds: npt.NDArray[np.uint8],
    limit: float,
    connectivity: int,
) -> npt.NDArray[np.float32]:
    """Least path cost from the non-zero seeds over a C-contiguous cost of the same shape."""

def grid_min_cut(
    terminal: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int32],
    forward: npt.NDArray[np.float64],
    backward: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.uint8], float]:
    """Exact s-t min cut of a grid graph: (uint8 sink side of terminal's shape, max-flow value)."""
