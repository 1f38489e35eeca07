"""Robot protocol R13c: tight 2D boxes, seeded jitter, the 3D CVPR25 form and the seed ring."""

import numpy as np

from medrefine_lab.eval import Robot, RobotConfig, Stroke, paint

BOX = RobotConfig(mode="box")


def _boxes(gt: np.ndarray, config: RobotConfig = BOX) -> list[Stroke]:
    return Robot(config).interact(gt, None, np.zeros(gt.shape, np.int32))


def test_r13c_tight_2d_boxes_with_exclusive_stop_per_class_ascending() -> None:
    gt = np.zeros((20, 20), np.int64)
    gt[3:7, 4:10] = 2
    gt[12, 1] = gt[15, 8] = 1
    strokes = _boxes(gt)
    assert [(s.label, s.kind, s.box) for s in strokes] == [
        (1, "box", ((12, 1), (16, 9))),
        (2, "box", ((3, 4), (7, 10))),
    ]
    assert all(len(s.centerline) == 0 and s.box_mid is None for s in strokes)


def test_r13c_ring_is_2_px_outside_the_box_cut_to_background() -> None:
    gt = np.zeros((20, 20), np.int64)
    gt[5:9, 5:9] = 1  # 4 x 4 box -> ring = 8 x 8 - 4 x 4 = 48 px
    (stroke,) = _boxes(gt)
    assert len(stroke.pixels) == 48 and stroke.seed_label == 0
    assert paint(np.zeros(gt.shape, np.int32), [stroke]).sum() == 48  # background seeds = 1
    gt[3, 3] = 2  # a pixel of another class on the ring is left out
    one, _ = _boxes(gt)
    assert len(one.pixels) == 47 and [3, 3] not in one.pixels.tolist()


def test_r13c_ring_is_clipped_at_the_border() -> None:
    gt = np.zeros((10, 10), np.int64)
    gt[0:2, 0:2] = 1  # ring rows/cols 0-3 minus the 2 x 2 box
    (stroke,) = _boxes(gt)
    assert len(stroke.pixels) == 12


def test_r13c_jitter_is_outward_and_reproducible_with_the_seed() -> None:
    gt = np.zeros((40, 40), np.int64)
    gt[10:20, 12:30] = 1
    config = RobotConfig(mode="box", box_jitter=5, seed=7)
    first, second = _boxes(gt, config), _boxes(gt, config)
    offsets = np.random.default_rng(7).integers(0, 5, size=4, endpoint=True)
    expected = ((10 - offsets[0], 12 - offsets[1]), (20 + offsets[2], 30 + offsets[3]))
    assert first[0].box == second[0].box == tuple(tuple(int(v) for v in c) for c in expected)
    other = np.random.default_rng(8).integers(0, 5, size=4, endpoint=True)
    assert not np.array_equal(offsets, other)
    assert _boxes(gt, RobotConfig(mode="box", box_jitter=5, seed=8))[0].box != first[0].box


def test_r13c_jitter_is_clipped_to_the_array() -> None:
    gt = np.zeros((10, 10), np.int64)
    gt[0:10, 0:10] = 1
    (stroke,) = _boxes(gt, RobotConfig(mode="box", box_jitter=20, seed=3))
    assert stroke.box == ((0, 0), (10, 10))


def test_r13c_3d_form_z_span_max_area_slice_and_its_2d_box() -> None:
    gt = np.zeros((8, 10, 10), np.int64)
    gt[2, 0:2, 0:2] = 1  # area 4
    gt[3, 4:7, 1:4] = 1  # area 9: first slice of the largest area
    gt[4, 5:8, 5:8] = 1  # area 9 again (tie -> z = 3)
    gt[5, 9, 9] = 1  # area 1
    (stroke,) = _boxes(gt)
    assert stroke.box_mid == 3
    assert stroke.box == ((2, 4, 1), (6, 7, 4))  # z_min..z_max + 1, 2D box of slice 3
    assert set(stroke.pixels[:, 0].tolist()) == {3}  # the ring lies on z_mid
    assert len(stroke.pixels) == 7 * 6 - 9  # rows 2-8, cols 0-5 (clipped at x = 0)


def test_r13c_3d_form_on_another_annotation_axis() -> None:
    gt = np.zeros((6, 6, 8), np.int64)
    gt[1:4, 2:4, 3:6] = 1  # x spans 3..5; every x-slice has area 6 -> x_mid = 3
    (stroke,) = _boxes(gt, RobotConfig(mode="box", axis=2))
    assert stroke.box_mid == 3
    assert stroke.box == ((1, 2, 3), (4, 4, 6))


def test_r13c_single_mode_boxes_the_largest_class() -> None:
    gt = np.zeros((20, 20), np.int64)
    gt[1:3, 1:3] = 1
    gt[5:10, 5:10] = 2
    strokes = _boxes(gt, RobotConfig(mode="box", per_class=False))
    assert [s.label for s in strokes] == [2]
