"""Robot protocol R8-R12: smoothing, skeleton path, length bound, blob fallback, brush."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from medrefine_lab.eval import Robot, RobotConfig, Stroke, check_stroke
from medrefine_lab.eval.robot.regions import disk, padded_edt
from medrefine_lab.eval.robot.scribble import (
    blob_stroke,
    brush,
    longest_path,
    principal_axis,
    round_half_up,
    skeleton,
    smooth,
    smoothing_radius,
    window,
)


def _mask(shape: tuple[int, int], *boxes: tuple[slice, slice]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for box in boxes:
        m[box] = True
    return m


# R8 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("area, radius", [(400, 1.5), (10_000, 7.5), (1_000_000, 16.0)])
def test_r8_radius_is_0_075_sqrt_area_capped_at_16(area: int, radius: float) -> None:
    assert smoothing_radius(area) == pytest.approx(radius)


def test_r8_round_is_half_up() -> None:
    assert [round_half_up(x) for x in (1.49, 1.5, 2.5, 2.51)] == [1, 2, 3, 3]


def test_r8_opening_with_disk_2_removes_a_spur_and_square_corners() -> None:
    region = _mask((40, 50), np.s_[5:25, 5:25])  # 20 x 20 square
    region[14, 25:35] = True  # 1-px spur; area 410 -> r = 1.52 -> disk(2)
    expected = _mask((40, 50), np.s_[5:25, 5:25])
    for y, x in [(5, 5), (24, 5), (5, 24), (24, 24)]:  # disk(2) centres sit >= 2 px inside,
        dy, dx = (1 if y == 5 else -1), (1 if x == 5 else -1)  # so 3 px per corner go
        expected[y, x] = expected[y + dy, x] = expected[y, x + dx] = False
    expected[14, 25] = True  # the disk centred at (14, 23) still fits and covers it
    assert np.array_equal(smooth(region), expected)


def test_r8_radius_shrinks_by_0_9_until_the_opening_survives() -> None:
    region = _mask((7, 404), np.s_[2:5, 2:402])  # 3 x 400 bar, area 1200, r0 = 2.60
    # r: 2.60 (disk 3), 2.34, 2.10, 1.89, 1.70, 1.53 (disk 2) all empty; 1.38 -> disk(1)
    expected = region.copy()
    expected[[2, 4, 2, 4], [2, 2, 401, 401]] = False  # the cross cannot cover the 4 corners
    assert np.array_equal(smooth(region), expected)


def test_r8_the_0_9_factor_does_not_skip_a_radius() -> None:
    region = _mask((15, 504), np.s_[2:13, 2:502])  # 11 x 500, area 5500: r0 = 5.56 -> disk(6)
    # disk(6) does not fit; 0.9 r0 = 5.01 -> disk(5) fits (a faster shrink could jump to 4).
    # Its erosion is the centre row, x = 7..496, so the opening is the union of those disks.
    centres = np.zeros_like(region)
    centres[7, 7:497] = True
    expected = ndi.binary_dilation(centres, structure=disk(5))
    assert np.array_equal(smooth(region), expected)


@pytest.mark.parametrize("length", [150, 200])
def test_r8_region_is_kept_when_r_drops_to_1(length: int) -> None:
    # 150: r = 0.92 from the start; 200: r = 1.06, disk(1) empties a 1-px line, 0.95 stops
    region = _mask((3, 210), np.s_[1:2, 2 : 2 + length])
    assert np.array_equal(smooth(region), region)


def test_r8_opening_ignores_the_array_border() -> None:
    region = _mask((40, 40), np.s_[0:20, :])  # area 800 -> disk(2); touches 3 borders
    # beyond the border nothing erodes, so the corners at the border survive
    assert np.array_equal(smooth(region), region)


# R9 -------------------------------------------------------------------------------------------


def test_r9_skeleton_of_a_bar_touching_the_border_is_its_centre_row() -> None:
    skel = skeleton(np.ones((5, 30), bool))  # padding makes the border a boundary
    assert skel[2, 2:28].all()
    assert skel[:, 2:28].sum() == 26


def test_r9_longest_path_of_an_l_takes_the_diagonal_shortcut() -> None:
    skel = np.zeros((8, 10), bool)
    skel[0:6, 1] = True
    skel[5, 1:9] = True
    # from (0, 1) the farthest pixel is (5, 8) (4 + sqrt2 + 6); from there it is (0, 1)
    expected = [[5, x] for x in range(8, 1, -1)] + [[y, 1] for y in range(4, -1, -1)]
    assert longest_path(skel).tolist() == expected


def test_r9_a_branch_does_not_beat_the_main_bar() -> None:
    skel = np.zeros((5, 20), bool)
    skel[3, :] = True
    skel[0:3, 10] = True  # first skeleton pixel (0, 10) is the branch tip
    assert longest_path(skel).tolist() == [[3, x] for x in range(20)]


def test_r9_farthest_ties_go_to_the_lowest_raster_index() -> None:
    skel = np.zeros((7, 7), bool)
    skel[0:4, 3] = True
    skel[[4, 5, 6], [2, 1, 0]] = True
    skel[[4, 5, 6], [4, 5, 6]] = True
    # from (0, 3), (6, 0) and (6, 6) tie at 3 + 3 sqrt2: u = (6, 0); v = (6, 6)
    expected = [[6, 0], [5, 1], [4, 2], [3, 3], [4, 4], [5, 5], [6, 6]]
    assert longest_path(skel).tolist() == expected


def test_r9_only_the_component_of_the_first_skeleton_pixel_is_swept() -> None:
    skel = np.zeros((8, 30), bool)
    skel[0, 5:8] = True
    skel[5, 0:25] = True  # longer, but later in raster order
    assert longest_path(skel).tolist() == [[0, 7], [0, 6], [0, 5]]


# R10 ------------------------------------------------------------------------------------------


def _reversed_row_path(n: int) -> np.ndarray:
    return np.array([[0, x] for x in range(n - 1, -1, -1)], dtype=np.int64)


def test_r10_window_is_centred_on_the_deepest_path_pixel() -> None:
    path = _reversed_row_path(100)  # path index i holds x = 99 - i
    depth = np.ones((1, 100))
    depth[0, 60] = 5.0  # i = 39 -> window i = 7..70 -> x = 92..29
    kept = window(path, depth, 64)
    assert len(kept) == 64
    assert kept[0].tolist() == [0, 92] and kept[32].tolist() == [0, 60]
    assert kept[-1].tolist() == [0, 29]


def test_r10_window_is_shifted_at_the_path_end() -> None:
    path = _reversed_row_path(100)
    depth = np.ones((1, 100))
    depth[0, 30] = 5.0  # i = 69 -> start 37 would overrun, start = 100 - 64 = 36
    kept = window(path, depth, 64)
    assert kept[0].tolist() == [0, 63] and kept[-1].tolist() == [0, 0]


@pytest.mark.parametrize("reverse", [True, False])
def test_r10_depth_ties_go_to_the_lowest_raster_index_not_path_order(reverse: bool) -> None:
    path = _reversed_row_path(100)
    path = path if reverse else path[::-1]
    depth = np.ones((1, 100))
    depth[0, [40, 70]] = 5.0  # x = 40 is lower in raster order, whatever the path direction
    kept = window(path, depth, 64)
    assert kept[32].tolist() == [0, 40]


def test_r10_short_paths_are_kept_whole() -> None:
    path = _reversed_row_path(10)
    assert np.array_equal(window(path, np.ones((1, 10)), 64), path)


def test_r10_a_long_bar_gives_a_64_px_stroke_through_its_deepest_row() -> None:
    gt = np.zeros((11, 200), np.int64)
    gt[2:9, 10:190] = 1  # 7 x 180, depth 4 only on row 5
    strokes = Robot().interact(gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32))
    (stroke,) = strokes
    assert len(stroke.centerline) == 64
    assert np.all(gt[tuple(stroke.centerline.T)] == 1)
    # the first deepest pixel in raster order is (5, 13); the window holds it and runs along
    # the centre row
    assert [5, 13] in stroke.centerline.tolist()
    assert np.count_nonzero(stroke.centerline[:, 0] == 5) >= 60


# R11 ------------------------------------------------------------------------------------------


def test_r11_principal_axis_of_a_horizontal_and_a_diagonal_region() -> None:
    v, lam = principal_axis(_mask((5, 12), np.s_[1:4, 1:10]))
    assert v == pytest.approx([0.0, 1.0])
    assert lam == pytest.approx(60 / 9)  # variance of x = 0..8
    diag = np.zeros((12, 12), bool)  # a 3-px thick diagonal band, symmetric in y <-> x
    diag[range(10), range(10)] = True
    diag[range(9), range(1, 10)] = True
    diag[range(1, 10), range(9)] = True
    v, _ = principal_axis(diag)
    assert v == pytest.approx([math.sqrt(0.5), math.sqrt(0.5)])


def test_r11_blob_stroke_on_a_disc_is_horizontal_through_the_centre() -> None:
    yy, xx = np.indices((21, 21))
    disc = (yy - 10) ** 2 + (xx - 10) ** 2 <= 36
    half = round(math.sqrt(((xx - 10) ** 2)[disc].mean()))  # isotropic: x axis, sqrt(lambda)
    line = blob_stroke(disc, padded_edt(disc))
    assert line.tolist() == [[10, x] for x in range(10 - half, 11 + half)]


def test_r11_blob_stroke_stops_at_the_region_border() -> None:
    region = _mask((5, 30), np.s_[0:5, 5:10], np.s_[0:5, 20:25])  # two squares
    region[2, 10:20] = True  # joined by a 1-px line: depth 3 at (2, 7) and (2, 22)
    xs = np.argwhere(region)[:, 1]
    half = math.sqrt(xs.var())
    line = blob_stroke(region, padded_edt(region))
    # p0 = (2, 7); going left it stops at x = 5, going right it runs to 7 + round(half)
    assert line.tolist() == [[2, x] for x in range(5, 8 + round(half))]


def test_r11_tiny_region_falls_back_to_a_click() -> None:
    gt = np.zeros((8, 8), np.int64)
    gt[3:5, 3:5] = 1  # 2 x 2: skeleton path < 3, blob line 2 px < 3 -> click
    (stroke,) = Robot(RobotConfig(a_min=1)).interact(
        gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32)
    )
    assert stroke.kind == "click"
    assert stroke.centerline.tolist() == [[3, 3]]  # all depths 1: first in raster order
    assert stroke.pixels.tolist() == [[3, 3], [3, 4], [4, 3]]  # R12 brush cut to the region


def test_r11_single_pixel_is_a_one_pixel_click() -> None:
    gt = np.zeros((5, 5), np.int64)
    gt[2, 2] = 1
    (stroke,) = Robot(RobotConfig(a_min=1)).interact(
        gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32)
    )
    assert (stroke.kind, stroke.pixels.tolist()) == ("click", [[2, 2]])


# R12 ------------------------------------------------------------------------------------------


def test_r12_brush_is_the_cross_dilation_cut_to_the_region() -> None:
    region = _mask((6, 6), np.s_[0:5, 0:5])
    region[2, 3] = False
    painted = brush(np.array([[2, 1], [2, 2]], dtype=np.int64), region)
    expected = [[1, 1], [1, 2], [2, 0], [2, 1], [2, 2], [3, 1], [3, 2]]
    assert np.argwhere(painted).tolist() == expected


def test_r12_strokes_never_paint_another_class_or_a_seeded_pixel() -> None:
    gt = np.zeros((30, 40), np.int64)
    gt[10:13, 2:38] = 1  # thin class-1 bar
    gt[13:20, 2:38] = 2  # class 2 right below it
    pred = np.zeros_like(gt)
    seeds = np.zeros(gt.shape, np.int32)
    seeds[11, 15:20] = 2  # part of the bar already seeded
    strokes = Robot().interact(gt, pred, seeds)
    assert [s.label for s in strokes] == [1, 2]
    for s in strokes:
        idx = tuple(s.pixels.T)
        assert np.all(gt[idx] == s.label) and np.all(seeds[idx] == 0)
        flat = np.ravel_multi_index(idx, gt.shape)
        assert np.all(np.diff(flat) > 0)  # unique, C-order sorted


def test_r12_check_stroke_rejects_a_wrong_label() -> None:
    gt = np.zeros((4, 4), np.int64)
    bad = Stroke(1, np.array([[0, 0]], np.int64), np.array([[0, 0]], np.int64), "scribble")
    with pytest.raises(AssertionError, match="another class"):
        check_stroke(gt, bad)
