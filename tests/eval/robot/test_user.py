"""Robot API: configuration, validation, paint, effort (R16), determinism and invariants."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medrefine.errors import InputError
from medrefine_lab.eval import Effort, Robot, RobotConfig, Stroke, paint
from medrefine_lab.eval.robot.types import Mode

MODES: tuple[Mode, ...] = ("scribble", "click", "box")


def _stroke(label: int, pixels: list[list[int]], kind: Mode = "scribble") -> Stroke:
    coords = np.array(pixels, dtype=np.int64).reshape(-1, 2)
    return Stroke(label, coords, coords[:1], kind)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "lasso"},
        {"a_min": 0},
        {"max_length": 0},
        {"axis": 3},
        {"box_jitter": -1},
        {"click_radius": -2},
        {"click_rule": "sam"},
        {"first_rounds": 0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        RobotConfig(**kwargs)  # type: ignore[arg-type]


def test_config_default_a_min_depends_on_dimension() -> None:
    assert RobotConfig().resolved_a_min(2) == 10
    assert RobotConfig().resolved_a_min(3) == 50
    assert RobotConfig(a_min=3).resolved_a_min(3) == 3


@pytest.mark.parametrize(
    "gt, pred, seeds, message",
    [
        (np.zeros((4, 4), np.float32), None, np.zeros((4, 4), np.int32), "dtype"),
        (np.zeros(4, np.int64), None, np.zeros(4, np.int32), "2D"),
        (np.zeros((4, 4), np.int64), np.zeros((4, 5), np.int64), np.zeros((4, 4)), "shape"),
        (np.zeros((4, 4), np.int64), None, np.zeros((4, 5), np.int32), "shape"),
        (-np.ones((4, 4), np.int64), None, np.zeros((4, 4), np.int32), "negative"),
    ],
)
def test_interact_validates_its_arrays(
    gt: np.ndarray, pred: np.ndarray | None, seeds: np.ndarray, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        Robot().interact(gt, pred, seeds)


def test_interact_does_not_mutate_seeds_and_paint_copies() -> None:
    gt = np.zeros((20, 20), np.int64)
    gt[4:12, 4:12] = 1
    seeds = np.zeros(gt.shape, np.int32)
    strokes = Robot().interact(gt, None, seeds)
    assert not seeds.any()
    painted = paint(seeds, strokes)
    assert not seeds.any() and painted.dtype == np.int32
    for s in strokes:
        assert np.all(painted[tuple(s.pixels.T)] == s.label + 1)


def test_paint_later_strokes_win_and_empty_strokes_are_fine() -> None:
    seeds = np.zeros((3, 3), np.int32)
    out = paint(seeds, [_stroke(1, [[0, 0], [0, 1]]), _stroke(2, [[0, 1]]), _stroke(0, [])])
    assert out.tolist() == [[2, 3, 0], [0, 0, 0], [0, 0, 0]]


def test_stroke_coordinates_are_read_only_int64() -> None:
    s = _stroke(1, [[0, 0]])
    with pytest.raises(ValueError, match="read-only"):
        s.pixels[0, 0] = 3
    with pytest.raises(InputError):
        Stroke(1, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int64), "click")


def test_r16_effort_counts_pixels_centerline_strokes_clicks_boxes() -> None:
    box = Stroke(1, np.zeros((5, 2), np.int64), np.zeros((0, 2), np.int64), "box")
    effort = Effort().add([_stroke(1, [[0, 0], [0, 1], [0, 2]]), _stroke(0, [[1, 1]])])
    effort = effort.add([_stroke(1, [[2, 2]], kind="click"), box])
    assert dict(effort.painted) == {1: 4, 0: 1}
    assert dict(effort.centerline) == {1: 2, 0: 1}
    assert (effort.strokes, effort.clicks, effort.boxes) == (2, 1, 1)
    assert effort.total_painted == 5
    assert Effort().total_painted == 0  # add returned new objects


def test_robot_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    gt = (rng.random((48, 48)) < 0.5).astype(np.int64)
    gt[10:30, 10:30] = 2
    pred = np.roll(gt, 3, axis=1)
    seeds = np.zeros(gt.shape, np.int32)
    for mode in MODES:
        a = Robot(RobotConfig(mode=mode)).interact(gt, pred, seeds)
        b = Robot(RobotConfig(mode=mode)).interact(gt, pred, seeds)
        assert [(s.label, s.pixels.tolist(), s.centerline.tolist()) for s in a] == [
            (s.label, s.pixels.tolist(), s.centerline.tolist()) for s in b
        ]


_labels = arrays(np.int64, (14, 14), elements=st.integers(0, 2))


@settings(max_examples=30, deadline=None)
@given(gt=_labels, pred=_labels, seed_mask=arrays(np.bool_, (14, 14)))
def test_strokes_only_paint_true_labels_on_unseeded_error_pixels(
    gt: np.ndarray, pred: np.ndarray, seed_mask: np.ndarray
) -> None:
    seeds = np.where(seed_mask, gt + 1, 0).astype(np.int32)
    for config in (RobotConfig(a_min=1), RobotConfig(a_min=1, per_class=False)):
        for s in Robot(config).interact(gt, pred, seeds):
            idx = tuple(s.pixels.T)
            assert len(s.pixels) > 0
            assert np.all(gt[idx] == s.label) and np.all(pred[idx] != s.label)
            assert np.all(seeds[idx] == 0)
            assert np.all(np.diff(np.ravel_multi_index(idx, gt.shape)) > 0)
            assert len(s.centerline) <= config.max_length
    for mode in MODES[1:]:
        for s in Robot(RobotConfig(mode=mode)).interact(gt, pred, seeds):
            assert np.all(gt[tuple(s.pixels.T)] == s.seed_label)


def _three_missed_objects() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((60, 90), dtype=np.int64)
    gt[5:25, 5:35] = 1  # three objects the prediction misses, largest first
    gt[35:50, 10:30] = 1
    gt[30:40, 60:70] = 1
    pred = np.zeros_like(gt)
    pred[50:58, 50:85] = 1  # and one it invents
    return gt, pred


def test_first_interaction_draws_one_stroke_per_untouched_region() -> None:
    gt, pred = _three_missed_objects()
    seeds = np.zeros(gt.shape, np.int32)
    one = Robot().first_interaction(gt, pred, seeds)
    assert [s.label for s in one] == [s.label for s in Robot().interact(gt, pred, seeds)]
    strokes = Robot(RobotConfig(first_rounds=4)).first_interaction(gt, pred, seeds)
    assert sorted(s.label for s in strokes) == [0, 1, 1, 1]  # one invented, three missed
    painted = paint(seeds, strokes)
    for box in (np.s_[5:25, 5:35], np.s_[35:50, 10:30], np.s_[30:40, 60:70]):
        assert np.any(painted[box] == 2)  # every missed object got its own stroke
    assert np.any(painted[50:58, 50:85] == 1)  # the invented object is marked background
    for s in strokes:
        assert np.all(gt[tuple(s.pixels.T)] == s.seed_label)


def test_first_interaction_without_a_start_result_seeds_several_objects() -> None:
    gt, _ = _three_missed_objects()
    strokes = Robot(RobotConfig(first_rounds=3)).first_interaction(
        gt, None, np.zeros(gt.shape, np.int32)
    )
    assert sum(s.label == 1 for s in strokes) == 3  # one per object
    assert sum(s.label == 0 for s in strokes) == 3  # three places of the one background


def test_first_interaction_draws_several_strokes_in_one_large_region() -> None:
    gt = np.zeros((200, 200), dtype=np.int64)
    gt[20:180, 20:180] = 1
    strokes = Robot(RobotConfig(first_rounds=3)).first_interaction(
        gt, np.zeros_like(gt), np.zeros(gt.shape, np.int32)
    )
    assert [s.label for s in strokes] == [1, 1, 1, 0]  # 0: R6b, the structure was absent
    centres = [s.centerline.mean(0) for s in strokes if s.label == 1]
    assert min(np.hypot(*(a - b)) for i, a in enumerate(centres) for b in centres[i + 1 :]) > 20


def test_r6b_a_structure_the_start_mask_lacks_gets_a_background_stroke_too() -> None:
    gt, _ = _three_missed_objects()
    seeds = np.zeros(gt.shape, np.int32)
    absent = np.zeros_like(gt)  # the network shows none of class 1
    strokes = Robot().first_interaction(gt, absent, seeds)
    assert [s.label for s in strokes] == [1, 0]
    (background,) = [s for s in strokes if s.label == 0]
    assert np.all(gt[tuple(background.pixels.T)] == 0)
    # v1: only the error; a start mask that shows the class: nothing added; no start result:
    # the background stroke is v1's own
    v1 = Robot(RobotConfig(absent_background=False)).first_interaction(gt, absent, seeds)
    assert [s.label for s in v1] == [1]
    shown = absent.copy()
    shown[5:8, 5:8] = 1
    assert [s.label for s in Robot().first_interaction(gt, shown, seeds)] == [1]
    assert sorted(s.label for s in Robot().first_interaction(gt, None, seeds)) == [0, 1]
