"""A refine's note says what happened and a remedy that applies to the network at hand."""

from __future__ import annotations

import numpy as np

import medrefine as mr


def test_no_note_when_every_drawn_pixel_was_already_right(model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d)
    mask = session.set_image(image)
    ys, xs = np.nonzero(mask == 0)
    session.add(mr.Click(0, (int(ys[0]), int(xs[0])), radius=0))  # already background
    one = np.argwhere(mask == 1)[0]
    start, stop = tuple(int(v) for v in one), tuple(int(v) + 1 for v in one)
    session.add(mr.Box(1, start, stop))  # "class 1 only here": the loop has pixels to move
    result = session.refine()
    assert result.iterations > 0 and result.honoured_before == 1.0
    assert result.note == ""


def test_a_confident_network_gets_advice_about_marks_and_steps_not_logits(model2d, case2d) -> None:
    image, _ = case2d
    config = mr.RefineConfig().with_overrides("loop.max_iterations=1,loop.lr=1e-6")
    session = mr.Session(model2d, config)
    mask = session.set_image(image)
    wrong = np.argwhere(mask == 0)[:6]
    session.add(mr.Paint(1, wrong))
    result = session.refine()
    assert result.iterations == 1 and result.honoured_fraction == 0.0
    assert "did not move the network's prediction" in result.note
    assert "loop.max_iterations" in result.note and "logits" not in result.note
