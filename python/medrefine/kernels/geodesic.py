"""Geodesic distance from seed pixels over a per-pixel cost (the C++ kernel behind a checked
numpy facade)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from medrefine.kernels import _native
from medrefine.kernels._checks import checked_connectivity, describe, real_number


def geodesic_distance(
    cost: npt.NDArray[Any],
    seeds: npt.NDArray[Any],
    *,
    limit: float = math.inf,
    connectivity: int | None = None,
) -> npt.NDArray[np.float32]:
    """Least cost of a path from any seed to every pixel, 2D ``(H, W)`` or 3D ``(D, H, W)``.

    A path moves between neighbouring pixels; a step of Euclidean length ``l`` (1, sqrt 2 or
    sqrt 3 pixels) from ``a`` to ``b`` costs ``l * (cost[a] + cost[b]) / 2``. With ``cost = 1``
    everywhere this is the chamfer distance in pixels; a cost of ``1 + w * |gradient|`` makes
    crossing an edge as long as a detour (the geodesic distance of GeoS-style segmentation).

    Args:
        cost: float32 or float64, finite and >= 0, the spatial shape.
        seeds: bool (or any integer/bool array, non-zero = seed) of the same shape: where
            paths start (the engine's *targets*; :mod:`medrefine.engine.refine.constraints` lists
            the encodings of marked pixels, one name each).
        limit: the search stops at this path cost (>= 0); pixels beyond it get ``inf``. Only
            the pixels within ``limit`` of the seeds enter the search (P log P for P of them),
            but checking ``cost``, finding the seeds and writing the result each sweep the
            whole grid: the work is the grid size plus that search, so callers bound the grid
            (the gate computes on a window around its marks).
        connectivity: 1 = neighbours sharing a face, up to ``ndim`` = every neighbour
            (default: every neighbour, 8 in 2D, 26 in 3D).

    Returns:
        float32 array of ``cost``'s shape: 0 on seeds, ``inf`` where unreachable or beyond
        ``limit``.

    Raises:
        TypeError: ``cost`` or ``seeds`` is not a numpy array of a supported dtype, or an option
            has the wrong type.
        ValueError: shapes differ, the grid is not 2D or 3D, ``cost`` is negative or not
            finite, or an option is out of range.

    Example (unit cost: the distance along a row counts pixels):

    >>> seeds = np.zeros((3, 5), bool)
    >>> seeds[1, 0] = True
    >>> geodesic_distance(np.ones((3, 5), np.float32), seeds)[1].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    if not isinstance(cost, np.ndarray) or cost.dtype.kind != "f" or cost.itemsize not in (4, 8):
        raise TypeError(f"cost must be a float32 or float64 numpy array, got {describe(cost)}")
    if not isinstance(seeds, np.ndarray) or seeds.dtype.kind not in "biu":
        raise TypeError(f"seeds must be a bool or integer numpy array, got {describe(seeds)}")
    if cost.ndim not in (2, 3):
        raise ValueError(f"cost must be 2D or 3D, got shape {cost.shape}")
    if seeds.shape != cost.shape:
        raise ValueError(f"seeds shape {seeds.shape} differs from cost shape {cost.shape}")
    if not np.isfinite(cost).all() or (cost < 0).any():
        raise ValueError("cost must be finite and >= 0 everywhere")
    bound = real_number(limit, "limit")
    if not bound >= 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    conn = checked_connectivity(cost.ndim if connectivity is None else connectivity, cost.ndim)
    cost = np.ascontiguousarray(cost, dtype=cost.dtype.newbyteorder("="))
    marks = np.ascontiguousarray(seeds != 0, dtype=np.uint8)
    return _native.geodesic_distance(cost, marks, bound, conn)
