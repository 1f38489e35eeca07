"""Session.refine reports progress before each step and can be cancelled without a trace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.errors import CancelledError
from medrefine.types import RefineProgress


def _contradicting_session(model: mr.SplitModel, image: np.ndarray) -> mr.Session:
    """A session whose one mark the network contradicts, so refine must take steps."""
    session = mr.Session(
        model, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=30")
    )
    session.set_image(image)
    session.add(mr.Scribble(2, [(3, 3), (3, 12)], radius=0))
    return session


def test_progress_arrives_before_each_step_in_order(model2d, case2d) -> None:
    session = _contradicting_session(model2d, case2d[0])
    events: list[RefineProgress] = []
    result = session.refine(progress=events.append)
    assert result.iterations > 0
    assert [e.iteration for e in events] == list(range(result.iterations))
    assert all(e.max_iterations == 30 for e in events)
    assert math.isnan(events[0].loss)
    assert [e.loss for e in events[1:]] == pytest.approx(list(result.loss_trace[:-1]))
    assert events[0].wrong_marks == 10  # the whole stroke is contradicted at first
    assert all(e.wrong_marks > 0 for e in events)  # no step is reported once all are honoured


def test_cancel_mid_refine_leaves_the_session_as_before(model2d, case2d) -> None:
    session = _contradicting_session(model2d, case2d[0])
    head_before = {k: v.clone() for k, v in session._head.state_dict().items()}
    mask_before, marks_before = session.mask, session.marks

    def stop_at_third(event: RefineProgress) -> None:
        if event.iteration == 3:
            raise CancelledError("cancelled by the client")

    with pytest.raises(CancelledError, match="cancelled by the client"):
        session.refine(progress=stop_at_third)
    after = session._head.state_dict()
    assert all(torch.equal(head_before[k], after[k]) for k in head_before)
    np.testing.assert_array_equal(session.mask, mask_before)
    assert session.marks == marks_before and session.history == ()
    # Still usable, and the same refine run again gives what an uncancelled one gives.
    again = session.refine()
    fresh = _contradicting_session(model2d, case2d[0]).refine()
    np.testing.assert_array_equal(again.mask, fresh.mask)
    assert again.iterations == fresh.iterations
