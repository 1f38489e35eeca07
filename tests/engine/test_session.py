"""Session: refinement honours marks, undo/redo/reset exact, classes added, bad input typed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.gate.plan import loop_settings
from medrefine.engine.refine import constraints
from medrefine.engine.session import refinement
from medrefine.errors import InputError, StateError


def _head_state(session: mr.Session) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in session._head.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_set_image_returns_network_mask(model2d: mr.SplitModel, case2d) -> None:
    image, label = case2d
    mask = mr.Session(model2d).set_image(image)
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert np.mean(mask == label) > 0.95


def test_multiclass_marks_in_one_refine_are_all_satisfied(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(
        model2d, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=300")
    )
    mask = session.set_image(image)
    # Contradict the network: background where it says 1, class 1 and 2 where it says 0.
    inner = np.zeros_like(mask, dtype=bool)
    inner[2:-2, 2:-2] = True
    ys, xs = np.nonzero((mask == 1) & inner)
    session.add(mr.Click(0, (int(ys[0]), int(xs[0])), radius=1))  # 5 pixels
    session.add(mr.Scribble(1, [(2, 2), (2, 8)], radius=0))
    session.add(mr.Scribble(2, [(37, 40), (37, 44)], radius=0))
    result = session.refine()
    assert result.satisfied and result.wrong_marks == 0 and result.iterations > 0
    assert result.mask[2, 2:9].tolist() == [1] * 7
    assert result.mask[37, 40:45].tolist() == [2] * 5
    assert result.mask[ys[0], xs[0]] == 0
    assert result.marked_pixels == 1 + 4 + 7 + 5


def test_write_marks_shows_every_drawn_pixel_even_when_unsatisfied(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d, mr.RefineConfig().with_overrides("loop.max_iterations=0"))
    session.set_image(image)
    session.add(mr.Scribble(2, [(3, 3), (3, 12)], radius=0))
    result = session.refine()
    assert result.iterations == 0 and not result.satisfied and result.wrong_marks == 10
    assert result.wrong_where.shape == (10, 2)
    assert set(map(tuple, result.wrong_where.tolist())) == {(3, x) for x in range(3, 13)}
    assert (result.mask[3, 3:13] == 2).all()


def test_undo_redo_restore_mask_and_weights_exactly(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d)
    m0 = session.set_image(image)
    w0 = _head_state(session)
    session.add(mr.Scribble(2, [(5, 5), (5, 15)], radius=1))
    r1 = session.refine()
    w1 = _head_state(session)
    session.add(mr.Scribble(0, [(20, 20), (25, 25)], radius=1))
    r2 = session.refine()
    assert not _same(w0, w1)
    assert np.array_equal(session.undo(), r1.mask) and _same(_head_state(session), w1)
    assert len(session.history) == 1 and len(session.marks) == 1
    assert np.array_equal(session.undo(), m0) and _same(_head_state(session), w0)
    with pytest.raises(StateError, match="nothing to undo"):
        session.undo()
    assert np.array_equal(session.redo(), r1.mask) and _same(_head_state(session), w1)
    assert np.array_equal(session.redo(), r2.mask)
    with pytest.raises(StateError, match="nothing to redo"):
        session.redo()


def test_reset_returns_network_output_and_is_undoable(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d)
    m0 = session.set_image(image)
    session.add(mr.Scribble(2, [(5, 5), (5, 15)], radius=1))
    r1 = session.refine()
    assert np.array_equal(session.reset(), m0) and session.marks == ()
    assert [h.kind for h in session.history] == ["refine", "reset"]
    assert np.array_equal(session.undo(), r1.mask)


def test_warm_start_keeps_weights_and_reset_start_repeats(model2d, case2d) -> None:
    image, _ = case2d
    marks = [mr.Scribble(2, [(5, 5), (5, 15)], radius=1)]
    warm = mr.Session(model2d, mr.RefineConfig().with_overrides("loop.max_iterations=200"))
    warm.set_image(image)
    warm.add(marks[0])
    first = warm.refine()
    warm.add(mr.Click(2, (5, 10), radius=0))  # already satisfied by the adapted head
    assert first.satisfied and warm.refine().iterations == 0
    cold = mr.Session(
        model2d, mr.RefineConfig().with_overrides("loop.max_iterations=200,loop.warm_start=off")
    )
    cold.set_image(image)
    cold.add(marks[0])
    a = cold.refine()
    cold.add(mr.Click(2, (5, 10), radius=0))
    b = cold.refine()
    assert b.iterations > 0 and a.iterations == b.iterations


def test_refine_is_deterministic(model2d, case2d) -> None:
    image, _ = case2d
    masks = []
    for _ in range(2):
        s = mr.Session(model2d, mr.RefineConfig().with_overrides("objective.anchor_weight=0.5"))
        s.set_image(image)
        s.add(mr.Scribble(2, [(5, 5), (9, 15)], radius=1))
        masks.append(s.refine().mask)
    assert np.array_equal(*masks)


def test_inserted_class_the_network_never_predicts_appears_3d(model3d, case3d) -> None:
    image, _ = case3d
    session = mr.Session(
        model3d, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=300")
    )
    mask = session.set_image(image)
    assert 2 not in mask
    session.add(mr.Scribble(2, [(9, 2, 2), (9, 2, 8)], radius=0))
    result = session.refine()
    assert result.satisfied and (result.mask[9, 2, 2:9] == 2).all()


def test_add_class_extends_head_and_undo_removes_it(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(
        model2d, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=300")
    )
    m0 = session.set_image(image)
    label = session.add_class("lesion")
    assert label == 3 and session.num_classes == 4 and session.class_names[-1] == "lesion"
    assert np.array_equal(session.mask, m0)
    session.add(mr.Scribble(label, [(20, 3), (20, 9)], radius=0))
    result = session.refine()
    assert result.satisfied and (result.mask[20, 3:10] == 3).all()
    session.undo()
    session.undo()
    assert session.num_classes == 3 and np.array_equal(session.mask, m0)
    with pytest.raises(InputError, match="not a class"):
        session.add(mr.Click(3, (1, 1)))


def test_cache_serves_second_set_image(model2d, case2d) -> None:
    image, _ = case2d
    cache = FeatureCache()
    session = mr.Session(model2d, cache=cache)
    calls = []
    original = session.backend.features
    session.backend.features = lambda x: calls.append(1) or original(x)  # type: ignore[method-assign]
    first = session.set_image(image)
    second = session.set_image(image.copy())
    assert np.array_equal(first, second) and len(calls) == 1
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 5, 6, 7, 8), np.float32), "axes"),
        (np.zeros((2, 32, 32), np.float32), "channels"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
        (np.full((32, 32), np.inf, np.float32), "NaN or infinite"),
        (np.zeros((32, 32), bool), "numeric"),
        (np.zeros((0, 32), np.float32), "non-empty"),
        ([[1.0, 2.0]], "numpy array"),
    ],
)
def test_bad_images_raise_typed_errors_and_keep_session(model2d, case2d, image, match) -> None:
    session = mr.Session(model2d)
    good = session.set_image(case2d[0])
    with pytest.raises(InputError, match=match):
        session.set_image(image)
    assert np.array_equal(session.mask, good)


@pytest.mark.parametrize(
    ("mark", "match"),
    [
        (mr.Click(1, (40, 3)), "outside the image"),
        (mr.Scribble(1, [(1, 1), (1, 99)]), "outside the image"),
        (mr.Click(5, (1, 1)), "not a class"),
        (mr.Click(1, (1, 1, 1)), "3 coordinates"),
        (mr.Box(1, (0, 0), (41, 10)), "exceeds the image"),
        (mr.Paint(1, np.array([[0, 0], [-1, 3]])), "outside the image"),
    ],
)
def test_bad_marks_raise_and_session_stays_usable(model2d, case2d, mark, match) -> None:
    session = mr.Session(model2d)
    session.set_image(case2d[0])
    with pytest.raises(InputError, match=match):
        session.add(mark)
    assert session.pending == ()
    session.add(mr.Click(2, (3, 3)))
    assert session.refine().mask[3, 3] == 2


def test_refine_before_image_and_without_marks(model2d, case2d) -> None:
    session = mr.Session(model2d)
    with pytest.raises(StateError, match="set_image"):
        session.refine()
    with pytest.raises(StateError, match="set_image"):
        session.add(mr.Click(1, (1, 1)))
    session.set_image(case2d[0])
    with pytest.raises(StateError, match="no marks"):
        session.refine()


def test_box_keeps_class_inside_and_excludes_it_outside(model2d, case2d) -> None:
    image, label = case2d
    session = mr.Session(model2d)
    session.set_image(image)
    from scipy import ndimage

    components, _ = ndimage.label(label == 1)
    ys, xs = np.nonzero(components == 1)  # one disk, as a user would box it
    box = mr.Box(1, (int(ys.min()), int(xs.min())), (int(ys.max()) + 1, int(xs.max()) + 1))
    session.add(box)
    result = session.refine()
    outside = np.ones(label.shape, bool)
    outside[box.start[0] : box.stop[0], box.start[1] : box.stop[1]] = False
    assert not (result.mask[outside] == 1).any()
    centre = ((box.start[0] + box.stop[0] - 1) // 2, (box.start[1] + box.stop[1] - 1) // 2)
    assert result.mask[centre] == 1


def test_wide_gate_drops_or_relaxes_the_anchor(model2d, case2d) -> None:
    image, _ = case2d

    def refine(overrides: str) -> mr.RefineResult:
        cfg = mr.RefineConfig().with_overrides(
            f"loop.max_iterations=20,gate.evidence=0,{overrides}"
        )
        s = mr.Session(model2d, cfg)
        s.set_image(image)
        s.add(mr.Scribble(2, [(5, 5), (9, 15)], radius=1))
        return s.refine()

    free = refine("objective.anchor_weight=0").mask
    assert np.array_equal(refine("gate.anchor_reach=0").mask, free)  # wider than 0 px: dropped
    assert not np.array_equal(refine("gate.anchor_reach=1e9").mask, free)  # never wide: held
    # Relaxed: pixels that look like the contradicted mark are released, the rest held.
    relaxed = "gate.anchor_reach=0,gate.anchor_relax=on,gate.evidence=0"
    s = mr.Session(model2d, mr.RefineConfig().with_overrides(relaxed))
    s.set_image(image)
    s.add(mr.Scribble(2, [(5, 5), (9, 15)], radius=1))
    img = s._img
    assert img is not None
    cons = constraints.build(s.pending, image.shape, s.config.marks, img.image)
    plan = refinement.gate_plan(img, s.config, cons, s.num_classes)
    cfg, hold = loop_settings(s.config, plan, img.features_gate)
    assert hold is not None and cfg.objective.anchor_weight == 1.0
    assert cfg.loop.max_iterations == 50
    marked = hold(plan.wrong_index[:5])
    assert float(marked.max()) < 0.5 and float(hold(np.arange(image.size)).max()) > 0.9


def test_a_wide_gate_gets_wide_iterations(model2d, case2d) -> None:
    image, _ = case2d

    def steps(anchor_reach: float) -> int:
        cfg = mr.RefineConfig().with_overrides(
            f"loop.max_iterations=1,loop.wide_iterations=3,gate.anchor_reach={anchor_reach},"
            "gate.evidence=0"
        )
        s = mr.Session(model2d, cfg)
        s.set_image(image)
        s.add(mr.Scribble(2, [(5, 5), (9, 15)], radius=1))
        return s.refine().iterations

    assert steps(1e9) == 1 and steps(0.0) == 3


def test_refine_without_new_marks_returns_the_mask_unchanged(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d)
    mask = session.set_image(image)
    session.add(mr.Scribble(2, [(3, 3), (3, 12)], radius=1))
    session.add(mr.Scribble(0, [(20, 20), (20, 30)], radius=1))
    first = session.refine()
    head = _head_state(session)
    assert not np.array_equal(first.mask, mask)  # the first refine did change something
    for _ in range(3):
        again = session.refine()
        np.testing.assert_array_equal(again.mask, first.mask)
        assert again.iterations == 0 and again.loss_trace == ()
        assert (again.satisfied, again.wrong_marks) == (first.satisfied, first.wrong_marks)
    assert _same(_head_state(session), head)
    assert [i.kind for i in session.history] == ["refine"]  # nothing to undo but the refine
    np.testing.assert_array_equal(session.undo(), mask)
    # after an undo there are no marks again: refine says so
    with pytest.raises(StateError, match="no marks"):
        session.refine()


def test_weight_anchor_pulls_the_head_towards_the_pretrained_one(model2d, case2d) -> None:
    image, _ = case2d

    def moved(alpha: float) -> float:
        config = mr.RefineConfig().with_overrides(
            f"objective.alpha={alpha},objective.anchor_weight=0,gate.kind=none"
        )
        session = mr.Session(model2d, config)
        session.set_image(image)
        before = _head_state(session)
        session.add(mr.Scribble(2, [(3, 3), (3, 30)], radius=1))
        session.add(mr.Scribble(0, [(20, 20), (20, 40)], radius=1))
        assert session.refine().iterations > 0
        after = _head_state(session)
        return float(sum(((after[k] - before[k]) ** 2).sum() for k in before) ** 0.5)

    free, held = moved(0.0), moved(100.0)
    assert held < 0.8 * free  # W0 is detached: the term has a gradient


def test_honoured_before_is_the_networks_own_prediction_at_the_drawn_pixels(
    model2d, case2d
) -> None:
    image, _ = case2d
    s = mr.Session(model2d)
    mask = s.set_image(image)
    agree = (5, 7)  # clicked with the network's own label there
    disagree = (20, 30)  # clicked with another label
    s.add(mr.Click(label=int(mask[agree]), point=agree, radius=0))
    s.add(mr.Click(label=(int(mask[disagree]) + 1) % s.num_classes, point=disagree, radius=0))
    result = s.refine()
    assert result.marked_pixels == 2
    assert result.honoured_before == 0.5
