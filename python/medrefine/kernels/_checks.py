"""Argument checks shared by the kernels' numpy facades (they raise TypeError / ValueError)."""

from __future__ import annotations

import numbers

import numpy as np


def real_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def checked_connectivity(connectivity: object, ndim: int) -> int:
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral):
        raise TypeError(f"connectivity must be an int, got {type(connectivity).__name__}")
    if not 1 <= int(connectivity) <= ndim:
        raise ValueError(f"connectivity must be 1..{ndim} for {ndim}D seeds, got {connectivity}")
    return int(connectivity)


def describe(value: object) -> str:
    """What ``value`` is, for an error message: a numpy array's dtype, else the type's name."""
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype}"
    return type(value).__name__
