"""Marks validate their own fields."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.types import Box, Click, Paint, RefineResult, Scribble


def test_marks_normalise_numpy_coordinates() -> None:
    s = Scribble(np.int64(1), [np.array([1, 2]), (3.0, 4.0)], radius=np.int32(2))
    assert s.points == ((1, 2), (3, 4)) and s.label == 1 and s.radius == 2 and s.ndim == 2
    assert Click(0, (1, 2, 3)).ndim == 3


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Scribble(-1, [(0, 0)]), "label"),
        (lambda: Scribble(True, [(0, 0)]), "label"),
        (lambda: Scribble(1, []), "at least one point"),
        (lambda: Scribble(1, [(0, 0), (1, 1, 1)]), "same number"),
        (lambda: Scribble(1, [(0.5, 0)]), "whole pixel"),
        (lambda: Scribble(1, [(0, 0)], radius=-1), "radius"),
        (lambda: Click(1, (1,)), "2 \\(y, x\\) or 3"),
        (lambda: Click(1, "ab"), "integers"),
        (lambda: Box(1, (5, 5), (5, 9)), "must exceed"),
        (lambda: Box(1, (0, 0), (5, 5, 5)), "same number"),
        (lambda: Paint(1, np.zeros((0, 2), int)), "non-empty"),
        (lambda: Paint(1, np.zeros((3, 2), float)), "integers"),
        # raised TypeError / ValueError from inside the constructors before
        (lambda: Scribble(1, 5), "sequence of points"),
        (lambda: Scribble(1, None), "sequence of points"),
        (lambda: Scribble(1, "ab"), "sequence of points"),
        (lambda: Paint(1, [[1, 2], [3]]), "non-empty \\(N, 2\\|3\\) array"),
    ],
)
def test_invalid_marks(factory, match) -> None:
    with pytest.raises(InputError, match=match):
        factory()


def test_paint_pixels_are_read_only() -> None:
    p = Paint(1, np.array([[1, 2]]))
    with pytest.raises(ValueError, match="read-only"):
        p.pixels[0, 0] = 5


def test_honoured_fraction() -> None:
    r = RefineResult(np.zeros(1), 3, False, 2, np.zeros((2, 2)), 8, 0.1, (), "pointwise")
    assert r.honoured_fraction == 0.75
    assert (
        RefineResult(
            np.zeros(1), 0, True, 0, np.zeros((0, 2)), 0, 0.0, (), "full"
        ).honoured_fraction
        == 1.0
    )
