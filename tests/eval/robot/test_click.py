"""Robot protocol R13a (RITM binary clicks) and R13b (CVPR25 multi-class / 3D clicks)."""

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine_lab.eval import Robot, RobotConfig, Stroke
from medrefine_lab.eval.robot.click import binarize_probability

CLICK = RobotConfig(mode="click")


def _click(
    gt: np.ndarray,
    pred: np.ndarray | None,
    seeds: np.ndarray | None = None,
    config: RobotConfig = CLICK,
) -> list[Stroke]:
    if seeds is None:
        seeds = np.zeros(gt.shape, np.int32)
    return Robot(config).interact(gt, pred, seeds)


def _summary(strokes: list[Stroke]) -> list[tuple[int, list[int]]]:
    return [(s.label, s.centerline[0].tolist()) for s in strokes]


def _square(n: int, rows: slice, cols: slice) -> np.ndarray:
    gt = np.zeros((n, n), np.int64)
    gt[rows, cols] = 1
    return gt


# R13a -----------------------------------------------------------------------------------------


def test_r13a_positive_click_at_the_first_fn_edt_maximum() -> None:
    gt = _square(20, np.s_[2:12], np.s_[2:12])  # depth 5 on rows 6-7, cols 6-7
    (stroke,) = _click(gt, np.zeros_like(gt))
    assert (stroke.kind, stroke.label) == ("click", 1)
    assert stroke.centerline.tolist() == [[6, 6]]
    assert stroke.pixels.tolist() == [[6, 6]]


def test_r13a_negative_click_when_the_fp_is_deeper() -> None:
    gt = _square(20, np.s_[2:5], np.s_[2:5])  # FN depth 2
    pred = _square(20, np.s_[8:18], np.s_[8:18])  # FP depth 5 at rows/cols 12-13
    assert _summary(_click(gt, pred)) == [(0, [12, 12])]


def test_r13a_equal_depths_give_a_negative_click() -> None:
    gt = _square(20, np.s_[2:5], np.s_[2:5])
    pred = _square(20, np.s_[10:13], np.s_[10:13])  # both depth 2: FN wins only if deeper
    assert _summary(_click(gt, pred)) == [(0, [11, 11])]


def test_r13a_array_border_counts_as_boundary() -> None:
    gt = np.zeros((12, 12), np.int64)
    gt[:, 0:6] = 1  # touches three borders; depth = min(y+1, 12-y, x+1, 6-x), max 3
    assert _summary(_click(gt, np.zeros_like(gt))) == [(1, [2, 2])]


def test_r13a_seeded_pixels_are_never_clicked_again() -> None:
    gt = _square(20, np.s_[2:12], np.s_[2:12])
    seeds = np.zeros(gt.shape, np.int32)
    seeds[6, 6] = 2
    assert _summary(_click(gt, np.zeros_like(gt), seeds)) == [(1, [6, 7])]


def test_r13a_no_error_no_click() -> None:
    gt = _square(10, np.s_[2:5], np.s_[2:5])
    assert _click(gt, gt.copy()) == []


def test_r13a_radius_2_renders_a_disk_cut_to_the_error() -> None:
    gt = _square(20, np.s_[2:12], np.s_[2:12])
    (stroke,) = _click(gt, np.zeros_like(gt), config=RobotConfig(mode="click", click_radius=2))
    assert len(stroke.pixels) == 13  # disk(2): 1 + 4 + 4 + 4
    gt_edge = _square(20, np.s_[2:12], np.s_[2:4])  # 10 x 2 strip: depth 1 everywhere
    (stroke,) = _click(gt_edge, np.zeros_like(gt), config=RobotConfig("click", click_radius=2))
    assert stroke.centerline.tolist() == [[2, 2]]
    assert stroke.pixels.tolist() == [[2, 2], [2, 3], [3, 2], [3, 3], [4, 2]]


def test_r13a_probability_threshold_is_0_49() -> None:
    prob = np.array([0.2, 0.49, 0.491, 0.9])
    assert binarize_probability(prob).tolist() == [False, False, True, True]


def test_r13a_is_the_auto_rule_for_binary_2d_and_differs_from_r13b() -> None:
    gt = np.zeros((20, 40), np.int64)
    gt[1, 2:32] = 1  # 30 px, depth 1: the largest region (R13b)
    gt[10:14, 10:14] = 1  # 16 px, depth 2: the deepest error (R13a)
    pred = np.zeros_like(gt)
    assert _summary(_click(gt, pred)) == [(1, [11, 11])]
    cvpr = RobotConfig("click", click_rule="cvpr25")
    assert _summary(_click(gt, pred, config=cvpr)) == [(1, [1, 2])]


def test_r13a_rule_refuses_multi_class_labels() -> None:
    gt = _square(20, np.s_[2:12], np.s_[2:12])
    gt[15:18, 15:18] = 2
    with pytest.raises(InputError, match="R13a"):
        _click(gt, np.zeros_like(gt), config=RobotConfig("click", click_rule="ritm"))


# R13b -----------------------------------------------------------------------------------------


def _two_class_case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((22, 12), np.int64)
    gt[2:10, 2:10] = 1
    gt[12:20, 2:10] = 2
    pred = gt.copy()
    pred[2:6, 2:10] = 2  # over-segmentation of class 2 on class 1: 4 x 8
    pred[14:20, 2:10] = 0  # class 2 under-segmented: 6 x 8
    return gt, pred


def test_r13b_one_click_per_class_in_its_largest_error_region() -> None:
    gt, pred = _two_class_case()
    # class 1: rows 2-5 (depth 2 first at (3, 3)); class 2: its 6 x 8 miss beats the 4 x 8
    # over-segmentation, depth 3 first at (16, 4)
    assert _summary(_click(gt, pred)) == [(1, [3, 3]), (2, [16, 4])]


def test_r13b_click_label_is_the_ground_truth_at_the_click() -> None:
    gt, pred = _two_class_case()
    pred[14:20, 2:10] = 2  # only the over-segmentation is left, for both classes
    assert _summary(_click(gt, pred)) == [(1, [3, 3]), (1, [3, 3])]


def test_r13b_single_mode_keeps_the_largest_error_region() -> None:
    gt, pred = _two_class_case()
    strokes = _click(gt, pred, config=RobotConfig("click", per_class=False))
    assert _summary(strokes) == [(2, [16, 4])]


def test_r13b_3d_click_at_the_centre_with_a_ball_of_radius_2() -> None:
    gt = np.zeros((9, 9, 9), np.int64)
    gt[1:8, 1:8, 1:8] = 1
    (stroke,) = _click(gt, None, config=RobotConfig("click", click_radius=2))
    assert _summary([stroke]) == [(1, [4, 4, 4])]
    assert len(stroke.pixels) == 33  # 1 + 6 + 12 + 8 + 6


def test_r13b_regions_are_26_connected_in_3d() -> None:
    gt = np.zeros((6, 6, 6), np.int64)
    gt[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = 1  # corner-touching chain of 5
    gt[5, 0:2, 4:6] = 1  # a 2 x 2 patch of 4
    assert _summary(_click(gt, np.zeros_like(gt))) == [(1, [0, 0, 0])]


def test_r13b_repeats_a_click_the_method_ignored() -> None:
    gt, pred = _two_class_case()
    seeds = np.zeros(gt.shape, np.int32)
    seeds[3, 3] = 2
    seeds[16, 4] = 3
    assert _summary(_click(gt, pred, seeds)) == [(1, [3, 3]), (2, [16, 4])]
