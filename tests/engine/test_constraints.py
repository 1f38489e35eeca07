"""Marks -> constraints: rasterisation, box rule, later marks win, region-grown hints."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.engine.config import MarksConfig
from medrefine.engine.refine.constraints import build, enclosed, rasterize
from medrefine.errors import InputError
from medrefine.types import Box, Click, Paint, Scribble


def _coords(flat: np.ndarray, shape: tuple[int, ...]) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in np.stack(np.unravel_index(flat, shape), 1)}


def test_scribble_polyline_without_radius_is_the_line() -> None:
    got = _coords(rasterize(Scribble(1, [(2, 2), (2, 6), (5, 6)], radius=0), (10, 10)), (10, 10))
    assert got == {(2, x) for x in range(2, 7)} | {(y, 6) for y in range(2, 6)}


def test_diagonal_segment_is_connected() -> None:
    got = _coords(rasterize(Scribble(1, [(0, 0), (7, 7)], radius=0), (8, 8)), (8, 8))
    assert got == {(i, i) for i in range(8)}


def test_click_is_a_disk_clipped_at_the_border() -> None:
    got = _coords(rasterize(Click(0, (0, 0), radius=2), (5, 5)), (5, 5))
    assert got == {(y, x) for y in range(3) for x in range(3) if y * y + x * x <= 4}


def test_3d_click_is_a_ball() -> None:
    assert rasterize(Click(0, (3, 3, 3), radius=1), (7, 7, 7)).size == 7


def test_box_centre_positive_and_outside_negative() -> None:
    shape = (40, 40)
    cons = build([Box(2, (10, 10), (20, 30))], shape, MarksConfig(box_center_fraction=0.2))
    assert _coords(cons.index, shape) == {(y, x) for y in (14, 15) for x in range(18, 22)}
    assert (cons.label == 2).all() and cons.required.all() and not cons.written.any()
    neg = _coords(cons.neg_index, shape)
    assert all(not (10 <= y < 20 and 10 <= x < 30) for y, x in neg)
    band = {(y, x) for y in range(4, 26) for x in range(4, 36)} - {
        (y, x) for y in range(10, 20) for x in range(10, 30)
    }
    assert band <= neg and (cons.neg_label == 2).all()
    (region,) = cons.box_regions
    assert region.sum() == 200 and cons.box_classes == (2,)


def test_two_boxes_of_one_class_exclude_only_outside_both() -> None:
    cons = build([Box(1, (0, 0), (5, 5)), Box(1, (10, 10), (15, 15))], (20, 20), MarksConfig())
    neg = _coords(cons.neg_index, (20, 20))
    assert (12, 12) not in neg and (2, 2) not in neg and (7, 7) in neg


def test_later_marks_win_and_drawn_overrides_box_exclusion() -> None:
    shape = (20, 20)
    marks = [
        Scribble(1, [(5, 0), (5, 19)], 0),
        Scribble(2, [(0, 7), (19, 7)], 0),
        Box(1, (0, 0), (4, 4)),
    ]
    cons = build(marks, shape, MarksConfig())
    label = dict(
        zip(
            map(tuple, np.stack(np.unravel_index(cons.index, shape), 1).tolist()),
            cons.label.tolist(),
            strict=True,
        )
    )
    assert label[(5, 7)] == 2 and label[(5, 3)] == 1 and label[(9, 7)] == 2
    neg = _coords(cons.neg_index, shape)
    assert (5, 10) not in neg  # drawn class 1 there overrides "not 1"
    assert np.all(np.diff(cons.index) > 0)  # one entry per pixel, sorted


def test_paint_takes_exact_pixels() -> None:
    px = np.array([[1, 1], [3, 4], [1, 1]])
    assert _coords(rasterize(Paint(0, px), (5, 5)), (5, 5)) == {(1, 1), (3, 4)}


def test_region_growing_adds_weighted_hints_only() -> None:
    image = np.zeros((1, 12, 12), np.float32)
    image[0, :, 6:] = 5.0
    cfg = MarksConfig(grow=True, grow_threshold=0.5, grow_max_distance=None, grown_weight=0.25)
    cons = build([Click(1, (6, 9), 0), Click(0, (6, 2), 0)], (12, 12), cfg, image)
    assert cons.index.size == 144
    drawn = cons.written
    assert drawn.sum() == 2 and cons.required.sum() == 2
    assert np.allclose(cons.weight[~drawn], 0.25)
    grid = np.full(144, -1)
    grid[cons.index] = cons.label
    assert (grid.reshape(12, 12)[:, 6:] == 1).all() and (grid.reshape(12, 12)[:, :6] == 0).all()


@pytest.mark.parametrize(
    ("mark", "match"),
    [
        (Scribble(1, [(0, 0), (0, 12)]), "outside"),
        (Click(1, (0, 0, 0)), "3 coordinates"),
        (Box(1, (0, 0), (5, 13)), "exceeds"),
    ],
)
def test_out_of_image_marks_are_refused(mark, match) -> None:
    with pytest.raises(InputError, match=match):
        build([mark], (10, 12), MarksConfig())


def test_box_around_objects_the_network_finds_adds_no_centre() -> None:
    network = np.zeros((30, 30), np.int64)
    network[5:8, 5:8] = 1  # one object found, off the centre of the box
    box = Box(1, (2, 2), (28, 28))
    found = build([box], (30, 30), MarksConfig(), network_mask=network)
    assert found.index.size == 0 and found.neg_index.size > 0  # only "not 1" outside
    missed = build([box], (30, 30), MarksConfig(), network_mask=np.zeros_like(network))
    assert missed.index.size > 0 and (missed.label == 1).all()  # centre of a missed object


def test_region_growing_caps_distance_by_the_spacing_of_an_anisotropic_volume() -> None:
    image = np.zeros((1, 20, 20, 20), np.float32)  # flat: growth stops only at the cap
    cfg = MarksConfig(grow=True, grow_threshold=0.5, grow_max_distance=6.0)
    click = [Click(1, (10, 10, 10), 0)]

    def extent(spacing: tuple[float, ...] | None) -> tuple[int, int]:
        cons = build(click, (20, 20, 20), cfg, image, spacing=spacing)
        z, y, x = np.unravel_index(cons.index, (20, 20, 20))
        return int(np.ptp(z[(y == 10) & (x == 10)])), int(np.ptp(x[(z == 10) & (y == 10)]))

    assert extent(None) == (12, 12)  # 6 pixels each way along every axis
    assert extent((1.0, 1.0, 1.0)) == (12, 12)  # isotropic: the same
    assert extent((2.0, 1.0, 1.0)) == (6, 12)  # 3 slices of 2 pixels each way
    assert extent((6.0, 2.0, 2.0)) == (4, 12)  # the cap is in finest-axis voxels, not in mm


def test_a_bad_spacing_is_refused() -> None:
    with pytest.raises(InputError, match="spacing"):
        build(
            [Click(1, (1, 1), 0)],
            (4, 4),
            MarksConfig(grow=True),
            np.zeros((1, 4, 4)),
            spacing=(1.0, 0.0),
        )


def _ring(centre: tuple[int, int], radius: float, n: int = 24) -> list[tuple[int, int]]:
    """Points on a circle, the last one short of the first (as a hand closes a ring)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)[: n - 1]
    return [
        (round(centre[0] + radius * np.sin(a)), round(centre[1] + radius * np.cos(a))) for a in t
    ]


def test_a_closed_stroke_marks_what_it_encloses() -> None:
    shape = (40, 40)
    ring = Scribble(2, _ring((20, 20), 10), radius=1)
    inside = _coords(enclosed(ring, shape), shape)
    assert (20, 20) in inside and (12, 20) in inside and (2, 2) not in inside
    assert not inside & _coords(rasterize(ring, shape), shape)
    cons = build([ring], shape, MarksConfig())
    at_centre = np.searchsorted(cons.index, 20 * 40 + 20)
    assert cons.label[at_centre] == 2 and cons.written[at_centre] and cons.required[at_centre]
    assert not cons.drawn[at_centre]  # enclosed, not drawn: the colour model learns the line


def test_open_strokes_background_rings_and_off_slice_strokes_enclose_nothing() -> None:
    shape = (40, 40)
    arc = _ring((20, 20), 10)[:12]
    assert enclosed(Scribble(1, arc, radius=1), shape).size == 0
    assert enclosed(Scribble(0, _ring((20, 20), 10), radius=1), shape).size == 0
    tilted = [(z, y, x) for z, (y, x) in enumerate(_ring((20, 20), 10))]
    assert enclosed(Scribble(1, tilted, radius=1), (30, 40, 40)).size == 0


def test_a_ring_in_one_slice_of_a_volume_fills_that_slice_only() -> None:
    shape = (5, 40, 40)
    ring = Scribble(1, [(2, y, x) for y, x in _ring((20, 20), 10)], radius=1)
    inside = np.stack(np.unravel_index(enclosed(ring, shape), shape), 1)
    assert inside.shape[0] > 200 and set(inside[:, 0].tolist()) == {2}
