"""Robot protocol R4-R7: error sets, largest region, a_min, per-class vs single, 3D slice."""

import numpy as np
import pytest

from medrefine_lab.eval import Robot, RobotConfig, has_error
from medrefine_lab.eval.robot.regions import error_sets, largest_region, worst_slice


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


def test_r5_error_sets_partition_the_wrong_unseeded_pixels() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [2, 2, 0, 0]])
    pred = np.array([[0, 1, 1, 0], [2, 2, 0, 1], [2, 0, 0, 1]])
    seeds = np.zeros(gt.shape, np.int32)
    seeds[0, 3] = 2  # (0, 3) is wrong but already seeded
    sets = error_sets(gt, pred, seeds)
    assert sorted(sets) == [0, 1, 2]
    # wrong: (0,1) G0/P1, (0,3) seeded, (1,0) G0/P2, (1,2) G2/P0, (2,1) G2/P0, (2,3) G0/P1
    assert np.argwhere(sets[0]).tolist() == [[0, 1], [1, 0], [2, 3]]
    assert np.argwhere(sets[1]).tolist() == []
    assert np.argwhere(sets[2]).tolist() == [[1, 2], [2, 1]]
    union = sets[0] | sets[1] | sets[2]
    assert np.array_equal(union, (gt != pred) & (seeds == 0))
    assert sum(s.sum() for s in sets.values()) == union.sum()  # disjoint


def test_r5_without_prediction_every_class_is_an_error_incl_background() -> None:
    gt = np.array([[0, 1], [2, 0]])
    seeds = np.array([[1, 0], [0, 0]], dtype=np.int32)
    sets = error_sets(gt, None, seeds)
    assert np.argwhere(sets[0]).tolist() == [[1, 1]]
    assert np.argwhere(sets[1]).tolist() == [[0, 1]]
    assert np.argwhere(sets[2]).tolist() == [[1, 0]]


def test_r6_largest_region_uses_8_connectivity_in_2d() -> None:
    mask = np.zeros((8, 8), bool)
    mask[[0, 1, 2, 3], [0, 1, 2, 3]] = True  # diagonal chain: one 8-connected region of 4
    mask[6, 3:6] = True  # straight segment of 3
    region, size = largest_region(mask)
    assert size == 4
    assert np.argwhere(region).tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]


def test_r6_largest_region_uses_26_connectivity_in_3d() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[2, 2, 2] = True  # corner-touching voxels
    mask[3, 0, 0:2] = True
    _, size = largest_region(mask)
    assert size == 3


def test_r6_equal_regions_tie_to_the_first_pixel_in_raster_order() -> None:
    mask = np.zeros((6, 8), bool)
    mask[3:5, 0:2] = True  # 4 px, first pixel (3, 0)
    mask[1:5, 6] = True  # 4 px, first pixel (1, 6): earlier in raster order
    region, size = largest_region(mask)
    assert size == 4
    assert np.argwhere(region).tolist() == [[1, 6], [2, 6], [3, 6], [4, 6]]


def test_r6_empty_mask_gives_no_region() -> None:
    region, size = largest_region(np.zeros((3, 3), bool))
    assert size == 0 and not region.any()


def test_r6_regions_below_a_min_are_skipped_2d() -> None:
    gt = _zeros((20, 20))
    gt[2, 0:9] = 1  # 9 px, one short of the 2D default 10
    gt[10, 0:10] = 2  # 10 px
    strokes = Robot().interact(gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32))
    assert [s.label for s in strokes] == [2]


def test_r6_regions_below_a_min_are_skipped_3d() -> None:
    gt = _zeros((6, 12, 12))
    gt[1, 0:7, 0:7] = 1  # 49 voxels
    gt[3, 0:5, 0:10] = 2  # 50 voxels
    strokes = Robot().interact(gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32))
    assert [s.label for s in strokes] == [2]
    strokes = Robot(RobotConfig(a_min=49)).interact(
        gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32)
    )
    assert [s.label for s in strokes] == [1, 2]


def _three_class_case() -> tuple[np.ndarray, np.ndarray]:
    gt = _zeros((30, 30))
    gt[2:8, 2:7] = 1  # 30 px missed
    gt[12:20, 2:7] = 2  # 40 px missed
    gt[22:30, 2:7] = 3  # 40 px missed
    return gt, np.zeros_like(gt)


def test_r6_per_class_mode_gives_one_stroke_per_class_ascending() -> None:
    gt, pred = _three_class_case()
    strokes = Robot().interact(gt, pred, np.zeros(gt.shape, np.int32))
    assert [s.label for s in strokes] == [1, 2, 3]
    for s in strokes:
        assert np.all(gt[tuple(s.pixels.T)] == s.label)


def test_r6_single_mode_keeps_the_largest_region_ties_to_lower_class() -> None:
    gt, pred = _three_class_case()
    strokes = Robot(RobotConfig(per_class=False)).interact(gt, pred, np.zeros(gt.shape, np.int32))
    assert [s.label for s in strokes] == [2]


def test_r7_worst_slice_is_argmax_with_ties_to_lower_index() -> None:
    region = np.zeros((5, 4, 4), bool)
    region[1, 0:2, 0:2] = True  # 4
    region[3, 0:3, 0:3] = True  # 9
    assert worst_slice(region, 0) == 3
    region[4, 0:3, 0:3] = True  # 9 again: tie goes to 3
    assert worst_slice(region, 0) == 3
    assert worst_slice(region, 2) == 0  # x = 0, 1, 2 hold 2 + 3 + 3, 2 + 3 + 3, 0 + 3 + 3


def test_r7_3d_stroke_lies_on_the_worst_slice_and_its_largest_2d_region() -> None:
    gt = _zeros((6, 20, 20))
    gt[1:5, 2:10, 2:10] = 1  # 64 voxels per slice
    gt[3, 2:10, 10] = 1  # slice 3 holds 72: the worst slice
    gt[2:4, 15:17, 15:17] = 1  # island, 4 voxels on slices 2 and 3
    gt[2, range(10, 15), range(10, 15)] = 1  # diagonal bridge on slice 2: one 3D region
    # slice sizes: 1 -> 64, 2 -> 64 + 5 + 4 = 73, 3 -> 64 + 8 + 4 = 76, 4 -> 64
    pred = np.zeros_like(gt)
    strokes = Robot().interact(gt, pred, np.zeros(gt.shape, np.int32))
    (stroke,) = [s for s in strokes if s.label == 1]
    assert set(stroke.pixels[:, 0].tolist()) == {3}
    assert set(stroke.centerline[:, 0].tolist()) == {3}
    # on slice 3 the bar + block (72 px) and the 2x2 island are separate 2D regions
    assert np.all(stroke.pixels[:, 1] < 10) and np.all(stroke.pixels[:, 2] <= 10)


def test_r7_annotation_axis_selects_the_plane() -> None:
    gt = _zeros((10, 10, 12))
    gt[2:8, 2:8, 3:9] = 1
    gt[2:9, 2:9, 5] = 1  # x = 5 holds the most voxels
    strokes = Robot(RobotConfig(axis=2)).interact(
        gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32)
    )
    (stroke,) = [s for s in strokes if s.label == 1]
    assert set(stroke.pixels[:, 2].tolist()) == {5}


@pytest.mark.parametrize("a_min, expected", [(10, True), (11, False)])
def test_r4_has_error_compares_the_largest_region_with_a_min(a_min: int, expected: bool) -> None:
    gt = _zeros((12, 12))
    gt[0, 0:10] = 1  # 10 px missed
    gt[5, 0:6] = 1  # 6 px missed elsewhere
    pred = np.zeros_like(gt)
    assert has_error(gt, pred, np.zeros(gt.shape, np.int32), a_min) is expected


def test_r4_has_error_default_a_min_and_seeded_pixels() -> None:
    gt = _zeros((12, 12))
    gt[0, 0:10] = 1
    pred = np.zeros_like(gt)
    seeds = np.zeros(gt.shape, np.int32)
    assert has_error(gt, pred, seeds)
    seeds[0, 0] = 2  # now only 9 unseeded wrong pixels remain
    assert not has_error(gt, pred, seeds)
    assert not has_error(gt, gt.copy(), np.zeros(gt.shape, np.int32))
