"""What a refine may change: classes nobody marked gain nothing outside the marks' reach, the
per-class change report adds up, and the rule's pieces on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import medrefine as mr
from medrefine.engine.config import GateConfig, MarksConfig
from medrefine.engine.gate.reach import (
    GLOBAL_WIDTHS,
    OPEN,
    class_changes,
    hold_unmarked,
    marked_classes,
    reach_map,
)
from medrefine.engine.refine import constraints

#: Farther than this from every mark (pixels) is beyond any default gate: 3.03 times the widest
#: default width (24 px) is 73 px.
FAR = 80


def _marked_pixels(session: mr.Session, shape: tuple[int, ...]) -> np.ndarray:
    marks = np.zeros(shape, dtype=bool)
    for mark in session.marks:
        marks.reshape(-1)[constraints.rasterize(mark, shape)] = True
    return marks


def _head_stroke(label: np.ndarray, new: int) -> list[mr.Mark]:
    """A stroke across the fetal head's centre and a background stroke in a corner."""
    ys, xs = np.nonzero(label)
    cy, cx, w = int(ys.mean()), int(xs.mean()), int(0.3 * (xs.max() - xs.min()))
    return [
        mr.Scribble(new, [(cy, cx - w), (cy, cx + w)], radius=2),
        mr.Scribble(0, [(5, 5), (5, 40)], radius=2),
    ]


def _nucleus_click(label: np.ndarray, new: int) -> list[mr.Mark]:
    """A click in the first nucleus and a background stroke in a corner."""
    objects = ndimage.find_objects(ndimage.label(label > 0)[0])[0]
    centre = tuple((s.start + s.stop) // 2 for s in objects)
    return [mr.Click(new, centre, radius=2), mr.Scribble(0, [(3, 3), (3, 30)], radius=2)]


# Each pairing asks a network for a structure it never learned (add_class), as a new user does;
# before the rule, the network's own class grew by 244 to 16,034 pixels farther than FAR.
PAIRINGS = [
    ("nuclei-unet2d", "fetalhead", "head", _head_stroke),
    ("fetalhead-unet2d", "nuclei-stained", "nucleus", _nucleus_click),
    ("fetalhead-unet2d", "nuclei-fluorescence", "nucleus", _nucleus_click),
]


@pytest.mark.parametrize(("model", "sample", "name", "marks"), PAIRINGS)
def test_a_class_nobody_marked_gains_nothing_far_from_the_marks(
    model: str, sample: str, name: str, marks: object
) -> None:
    case = mr.load_sample(sample)
    session = mr.Session(mr.load_model(model))
    before = session.set_image(case.image)
    new = session.add_class(name)
    for mark in marks(case.label, new):  # type: ignore[operator]
        session.add(mark)
    result = session.refine()
    assert result.unmarked == (1,)  # the network's own structure, never marked
    far = ndimage.distance_transform_edt(~_marked_pixels(session, before.shape)) > FAR
    grew = (result.mask == 1) & (before != 1) & far
    assert int(grew.sum()) == 0
    assert result.outside_gain_unmarked == 0
    assert (result.mask == new).sum() > 0  # the new structure itself did appear


def test_the_change_report_adds_up_to_the_mask_difference() -> None:
    case = mr.load_sample("fetalhead")
    session = mr.Session(mr.load_model("nuclei-unet2d"))
    before = session.set_image(case.image)
    new = session.add_class("head")
    for mark in _head_stroke(case.label, new):
        session.add(mark)
    result = session.refine()
    changed = before != result.mask
    assert len(result.changes) == 3 and [c.label for c in result.changes] == [0, 1, 2]
    gained = sum(c.gained_inside + c.gained_outside for c in result.changes)
    lost = sum(c.lost_inside + c.lost_outside for c in result.changes)
    assert gained == lost == int(changed.sum()) > 0
    for c in result.changes:
        grown = int((result.mask == c.label).sum()) - int((before == c.label).sum())
        assert c.gained_inside + c.gained_outside - c.lost_inside - c.lost_outside == grown


def test_in_3d_the_network_classes_nobody_marked_do_not_grow_outside_the_reach() -> None:
    case = mr.load_sample("hippocampus-007")
    session = mr.Session(mr.load_model("hippocampus-unet3d"))
    before = session.set_image(case.image)
    # anterior (1) marked where the network says background; posterior (2) never marked
    wrong = np.argwhere((case.label == 1) & (before != 1))[:20]
    session.add(mr.Paint(1, wrong))
    session.add(mr.Click(0, (2, 2, 2), radius=1))
    result = session.refine()
    assert result.unmarked == (2,)
    assert result.outside_gain_unmarked == 0
    assert sum(c.gained_inside + c.gained_outside for c in result.changes) == int(
        (before != result.mask).sum()
    )


def test_marked_classes_lists_every_mark_kind() -> None:
    marks = [
        mr.Click(2, (1, 1)),
        mr.Box(3, (0, 0), (2, 2)),
        mr.Paint(0, np.array([[0, 0]])),
        mr.Scribble(2, [(0, 0), (1, 1)]),
    ]
    assert marked_classes(marks) == frozenset({0, 2, 3})


def test_hold_keeps_an_unmarked_class_where_it_was_and_nowhere_new_outside() -> None:
    before = np.array([[0, 1, 1, 0]])
    reach = np.array([[True, False, False, False]])
    logits = torch.zeros(3, 1, 4)
    logits[1] = 5.0  # class 1 (never marked) would win everywhere
    hold_unmarked(logits, frozenset({0, 2}), reach, before)
    assert logits.argmax(0).tolist() == [[1, 1, 1, 0]]  # inside: free; held pixels: kept
    assert torch.isinf(logits[1, 0, 3]) and torch.isfinite(logits[0]).all()


def test_hold_leaves_marked_classes_and_an_all_reaching_refine_alone() -> None:
    before = np.zeros((2, 2), dtype=np.uint8)
    logits = torch.randn(2, 2, 2)
    copy = logits.clone()
    hold_unmarked(logits, frozenset({0, 1}), np.zeros((2, 2), bool), before)
    hold_unmarked(logits, frozenset({0}), np.ones((2, 2), bool), before)
    torch.testing.assert_close(logits, copy)


def _cons(marks: list[mr.Mark], shape: tuple[int, ...]) -> constraints.Constraints:
    return constraints.build(marks, shape, MarksConfig())


def test_reach_is_the_open_gate_plus_the_marks() -> None:
    shape = (1, 12)
    cons = _cons([mr.Click(1, (0, 11), radius=0)], shape)
    weights = torch.zeros((1, *shape))
    weights[0, 0, :3] = torch.tensor([1.0, OPEN, OPEN / 2])
    reach = reach_map(weights, np.zeros(0, np.int64), cons, np.zeros(shape, int), GateConfig())
    assert reach.tolist() == [[True, True] + [False] * 9 + [True]]


def test_without_a_gate_the_reach_is_the_widest_finite_width_around_the_contradicted_marks() -> (
    None
):
    shape = (1, 400)
    cons = _cons([mr.Click(1, (0, 0))], shape)
    gate = GateConfig()  # widest finite adaptive width: 24 * 2 = 48 px
    reach = reach_map(None, np.array([0]), cons, np.zeros(shape, int), gate)
    limit = GLOBAL_WIDTHS * 48
    assert reach[0, int(limit)] and not reach[0, int(limit) + 1]


def test_what_a_box_takes_from_its_class_is_within_reach() -> None:
    shape = (1, 10)
    before = np.array([[0, 2, 2, 2, 0, 0, 0, 0, 2, 2]])
    cons = _cons([mr.Box(2, (0, 0), (1, 4))], shape)
    weights = torch.zeros((1, *shape))
    reach = reach_map(weights, np.zeros(0, np.int64), cons, before, GateConfig())
    # class 2 outside its box, and the box's centre (the network mask was not given)
    assert np.flatnonzero(reach[0]).tolist() == [1, 8, 9]


def test_class_changes_counts_inside_and_outside() -> None:
    before = np.array([0, 0, 1, 1, 2])
    after = np.array([1, 0, 1, 2, 0])
    reach = np.array([True, False, False, False, True])
    changes = class_changes(before, after, reach, 3)
    as_rows = [(c.gained_inside, c.gained_outside, c.lost_inside, c.lost_outside) for c in changes]
    assert as_rows == [(1, 0, 1, 0), (1, 0, 0, 1), (0, 1, 1, 0)]


def _ellipse(label: np.ndarray, scale: float, n: int = 40) -> list[tuple[int, int]]:
    """``n - 1`` points on the label's bounding ellipse scaled by ``scale``, clipped to it."""
    ys, xs = np.nonzero(label)
    cy, cx = ys.mean(), xs.mean()
    ry, rx = scale * (ys.max() - ys.min()) / 2, scale * (xs.max() - xs.min()) / 2
    t = np.linspace(0.0, 2 * np.pi, n)[:-1]
    y = np.clip(np.rint(cy + ry * np.sin(t)), 0, label.shape[0] - 1).astype(int)
    x = np.clip(np.rint(cx + rx * np.cos(t)), 0, label.shape[1] - 1).astype(int)
    return list(zip(y.tolist(), x.tolist(), strict=True))


def test_a_ring_drawn_along_the_skull_fills_the_head() -> None:
    # A user encircles the fetal head along its bright skull and the fluid around it. The ring's
    # colour (bright) is unlike the brain inside it (dark, as the fluid): before closed strokes
    # marked their inside, a quarter of the head stayed background.
    case = mr.load_sample("fetalhead")
    session = mr.Session(mr.load_model("nuclei-unet2d"))
    session.set_image(case.image)
    head = session.add_class("head")
    session.add(mr.Scribble(head, _ellipse(case.label, 1.0), radius=2))
    session.add(mr.Scribble(0, _ellipse(case.label, 1.25), radius=2))
    mask = session.refine().mask == head
    inner = np.zeros_like(mask)
    inner.reshape(-1)[
        constraints.enclosed(mr.Scribble(head, _ellipse(case.label, 0.95), radius=0), mask.shape)
    ] = True
    assert mask[inner].all()
    truth = case.label > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.9


@pytest.mark.parametrize(
    ("model", "sample"),
    [("nuclei-unet2d", "nuclei-fluorescence"), ("fetalhead-unet2d", "nuclei-stained")],
)
def test_one_stroke_of_a_new_class_takes_its_structure_and_look_alikes_not_the_image(
    model: str, sample: str
) -> None:
    # With only the new class marked it used to take every pixel it reached: all of the image.
    case = mr.load_sample(sample)
    nuclei = case.label > 0
    session = mr.Session(mr.load_model(model))
    session.set_image(case.image)
    new = session.add_class("lesion")
    objects = ndimage.find_objects(ndimage.label(nuclei)[0])
    largest = max(objects, key=lambda o: (o[0].stop - o[0].start) * (o[1].stop - o[1].start))
    cy, cx = ((s.start + s.stop) // 2 for s in largest)
    session.add(mr.Scribble(new, [(cy, cx - 10), (cy, cx + 10)], radius=2))  # 21 px, on a nucleus
    got = session.refine().mask == new
    assert got.mean() <= 0.25
    dice = 2 * (got & nuclei).sum() / (got.sum() + nuclei.sum())
    assert dice > 0.6  # the other nuclei, never marked, came along by look
