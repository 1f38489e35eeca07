"""Metrics R14 (Dice, Dice-AUC, NSD) and R15 (NoC), against hand-computed values."""

import math

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine_lab.eval import (
    NoC,
    dice_auc,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    noc,
    nsd_per_class,
)


def _case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((4, 6), np.int64)
    gt[0:2, 0:3] = 1  # 6 px
    gt[2:4, 3:6] = 3  # 6 px; class 2 absent from gt
    pred = np.zeros_like(gt)
    pred[0:2, 0:2] = 1  # 4 px, all inside class 1
    pred[3, 0:2] = 2  # class 2 predicted but absent: not scored
    pred[2:4, 4:6] = 3  # 4 px inside class 3
    pred[0, 5] = 3  # 1 px outside
    return gt, pred


def test_r14_dice_per_class_scores_only_classes_present_in_gt() -> None:
    gt, pred = _case()
    assert dice_per_class(gt, pred, 4) == pytest.approx({1: 8 / 10, 3: 8 / 11})
    assert mean_dice(gt, pred, 4) == pytest.approx((0.8 + 8 / 11) / 2)


def test_r15_iou_per_class() -> None:
    gt, pred = _case()
    assert iou_per_class(gt, pred, 4) == pytest.approx({1: 4 / 6, 3: 4 / 7})
    assert mean_iou(gt, pred, 4) == pytest.approx((4 / 6 + 4 / 7) / 2)


def test_r14_perfect_empty_and_background_only_cases() -> None:
    gt, _ = _case()
    assert dice_per_class(gt, gt, 4) == {1: 1.0, 3: 1.0}
    assert dice_per_class(gt, np.zeros_like(gt), 4) == {1: 0.0, 3: 0.0}
    assert math.isnan(mean_dice(np.zeros((3, 3), np.int64), np.ones((3, 3), np.int64), 2))


def test_metrics_reject_bad_labels_and_shapes() -> None:
    gt, pred = _case()
    with pytest.raises(InputError, match="outside"):
        dice_per_class(gt, pred, 3)
    with pytest.raises(InputError, match="shape"):
        dice_per_class(gt, pred[:, :5], 4)


def test_r14_dice_auc_is_the_unit_step_trapezoid() -> None:
    assert dice_auc([0.5, 0.6, 0.7, 0.8, 0.9]) == pytest.approx(0.55 + 0.65 + 0.75 + 0.85)
    assert dice_auc([1.0] * 5) == pytest.approx(4.0)
    with pytest.raises(InputError):
        dice_auc([0.5])


def test_r15_noc_first_interaction_reaching_tau() -> None:
    scores = [0.5, 0.86, 0.91, 0.95]
    assert noc(scores, 0.85) == NoC(k=2, reached=True)
    assert noc(scores, 0.90) == NoC(k=3, reached=True)
    assert noc(scores, 0.86) == NoC(k=2, reached=True)  # >= tau counts


def test_r15_noc_never_reached_is_n_max_and_flagged() -> None:
    assert noc([0.5, 0.6], 0.9) == NoC(k=20, reached=False)
    assert noc([0.5] * 19 + [0.9], 0.9) == NoC(k=20, reached=True)
    assert noc([0.5, 0.5, 0.95], 0.9, n_max=2) == NoC(k=2, reached=False)
    with pytest.raises(InputError):
        noc([0.9], 0.9, n_max=0)


def _shifted_squares() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((20, 20), np.int64)
    gt[2:12, 2:12] = 1
    pred = np.zeros_like(gt)
    pred[2:12, 5:15] = 1  # shifted 3 px along x
    return gt, pred


def test_r14_nsd_of_a_shifted_square_by_hand() -> None:
    # Each 36-px outline has 14 px farther than 2 px from the other outline: its trailing
    # side (10 px at distance 3) and rows 5-8 of its leading side (3 px from the other's side,
    # >= 3 px from its top and bottom rows). NSD = 2 * 22 / 72.
    gt, pred = _shifted_squares()
    assert nsd_per_class(gt, pred, 2, spacing=(1.0, 1.0)) == pytest.approx({1: 44 / 72})


def test_r14_nsd_uses_spacing_in_array_order() -> None:
    gt, pred = _shifted_squares()
    assert nsd_per_class(gt, pred, 2, spacing=(1.0, 0.5)) == {1: 1.0}  # 3 px in x = 1.5 mm
    # 0.5 mm rows: rows 5-8 of the leading side are now 2 mm from the other's top/bottom row
    assert nsd_per_class(gt, pred, 2, spacing=(0.5, 1.0)) == pytest.approx({1: 52 / 72})


def test_r14_nsd_edge_cases() -> None:
    gt, _ = _shifted_squares()
    assert nsd_per_class(gt, gt, 2, spacing=(1.0, 1.0)) == {1: 1.0}
    assert nsd_per_class(gt, np.zeros_like(gt), 2, spacing=(1.0, 1.0)) == {1: 0.0}
    with pytest.raises(InputError, match="spacing"):
        nsd_per_class(gt, gt, 2, spacing=(1.0,))
