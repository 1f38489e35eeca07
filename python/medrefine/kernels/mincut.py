"""Exact s-t minimum cut of a 2D or 3D grid graph (the C++ Boykov-Kolmogorov max-flow behind a
checked numpy facade)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from medrefine.kernels import _native
from medrefine.kernels._checks import describe

#: The most neighbour offsets one cut takes (the kernel stores an arc index in one byte).
MAX_OFFSETS = 126


def grid_min_cut(
    terminal: npt.NDArray[Any],
    offsets: Sequence[Sequence[int]] | npt.NDArray[Any],
    forward: npt.NDArray[Any],
    backward: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.bool_], float]:
    """Minimum s-t cut of a graph with one node per pixel of a 2D ``(H, W)`` or 3D ``(D, H, W)``
    grid and arcs between neighbours.

    The graph: ``terminal[p] > 0`` is the capacity of the arc source -> ``p``; ``terminal[p] < 0``
    makes ``-terminal[p]`` the capacity of ``p`` -> sink. For every offset ``k`` and pixel ``p``
    whose neighbour ``q = p + offsets[k]`` lies inside the grid, the arc ``p -> q`` has capacity
    ``forward[k][p]`` and the arc ``q -> p`` capacity ``backward[k][p]``; entries whose ``q``
    falls outside the grid are ignored. Repeated offsets add parallel arcs.

    Args:
        terminal: float32 or float64 ``(H, W)`` or ``(D, H, W)``, finite; axis order of the grid.
        offsets: ``K`` neighbour offsets in the same axis order (``(dy, dx)`` or
            ``(dz, dy, dx)``), each step -1, 0 or 1 and not all zero; a sequence of integer
            tuples or an integer array of shape ``(K, ndim)``; ``0 <= K <= 126``.
        forward: float32 or float64 ``(K, *terminal.shape)``, finite and >= 0 everywhere.
        backward: like ``forward``.

    Returns:
        ``(sink_side, flow)``: ``sink_side`` is a bool array of ``terminal``'s shape, True for
        exactly the pixels from which the sink can still be reached in the residual graph of a
        maximum flow (the smallest sink side among all minimum cuts; PyMaxflow's
        ``get_grid_segments`` reports the same set). ``flow`` is the max-flow value, which is the
        capacity of the cut.

    Raises:
        TypeError: an array is not a numpy array of a float dtype, or ``offsets`` is not integer.
        ValueError: the grid is not 2D or 3D, a shape does not match, an offset is out of range or
            all zero, there are more than :data:`MAX_OFFSETS` offsets, a capacity is negative or
            not finite, or ``terminal`` is not finite.

    Example (source -5-> a -2-> b -3-> c -4-> sink: the weakest arc is cut):

    >>> sink, flow = grid_min_cut(
    ...     np.array([[5.0, 0.0, -4.0]]), [(0, 1)], np.array([[[2.0, 3.0, 0.0]]]),
    ...     np.zeros((1, 1, 3)))
    >>> sink.tolist(), flow
    ([[False, True, True]], 2.0)
    """
    _check_float(terminal, "terminal")
    _check_float(forward, "forward")
    _check_float(backward, "backward")
    if terminal.ndim not in (2, 3):
        raise ValueError(f"terminal must be 2D or 3D, got shape {terminal.shape}")
    steps = _checked_offsets(offsets, terminal.ndim)
    expected = (len(steps), *terminal.shape)
    for array, name in ((forward, "forward"), (backward, "backward")):
        if array.shape != expected:
            raise ValueError(
                f"{name} must have shape (len(offsets), *terminal.shape) = {expected}, "
                f"got {array.shape}"
            )
    if not np.isfinite(terminal).all():
        raise ValueError("terminal must be finite everywhere")
    for array, name in ((forward, "forward"), (backward, "backward")):
        if not np.isfinite(array).all() or (array < 0).any():
            raise ValueError(f"{name} capacities must be finite and >= 0 everywhere")
    sink, flow = _native.grid_min_cut(
        np.ascontiguousarray(terminal, dtype=np.float64),
        steps,
        np.ascontiguousarray(forward, dtype=np.float64),
        np.ascontiguousarray(backward, dtype=np.float64),
    )
    return sink.view(np.bool_), flow


def _check_float(value: object, name: str) -> None:
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.itemsize not in (4, 8):
        raise TypeError(f"{name} must be a float32 or float64 numpy array, got {describe(value)}")


def _checked_offsets(offsets: object, ndim: int) -> npt.NDArray[np.int32]:
    """``offsets`` as a C-contiguous int32 ``(K, ndim)`` array, each row checked."""
    if isinstance(offsets, np.ndarray):
        if offsets.dtype.kind not in "iu":
            raise TypeError(f"offsets must be an integer array, got dtype {offsets.dtype}")
        if offsets.ndim != 2:
            raise ValueError(f"an offsets array must be (K, {ndim}), got shape {offsets.shape}")
        rows: list[Any] = list(offsets)
    elif isinstance(offsets, Sequence) and not isinstance(offsets, str | bytes):
        rows = list(offsets)
    else:
        raise TypeError(f"offsets must be a sequence of integer tuples, got {describe(offsets)}")
    if len(rows) > MAX_OFFSETS:
        raise ValueError(f"at most {MAX_OFFSETS} offsets, got {len(rows)}")
    out = np.zeros((len(rows), ndim), dtype=np.int32)
    for k, row in enumerate(rows):
        if not isinstance(row, Sequence | np.ndarray) or isinstance(row, str | bytes):
            raise TypeError(f"offsets[{k}] must be a sequence of ints, got {describe(row)}")
        steps = list(row)
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, numbers.Integral):
                raise TypeError(f"offsets[{k}] must hold ints, got {describe(step)}")
        if len(steps) != ndim:
            raise ValueError(f"offsets[{k}] must have {ndim} entries for a {ndim}D grid: {row}")
        if any(not -1 <= int(s) <= 1 for s in steps):
            raise ValueError(f"offsets[{k}] steps must each be -1, 0 or 1, got {tuple(steps)}")
        if all(int(s) == 0 for s in steps):
            raise ValueError(f"offsets[{k}] must not be all zero")
        out[k] = [int(s) for s in steps]
    return out
