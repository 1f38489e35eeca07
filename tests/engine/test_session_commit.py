"""Session.refine(before_commit=...): a refine computed to the end can still be refused before it
becomes the session's state (a server whose call's deadline passed meanwhile), without a trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.errors import CancelledError


def _session(model: mr.SplitModel, image: np.ndarray) -> mr.Session:
    """A session whose one mark the network contradicts, so refine trains the head."""
    session = mr.Session(
        model, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=30")
    )
    session.set_image(image)
    session.add(mr.Scribble(2, [(3, 3), (3, 12)], radius=0))
    return session


def test_a_refusal_before_the_commit_leaves_the_session_as_before(model2d, case2d) -> None:
    session = _session(model2d, case2d[0])
    head_before = {k: v.clone() for k, v in session._head.state_dict().items()}
    mask_before, pending_before = session.mask, session.pending
    calls: list[int] = []

    def refuse() -> None:
        calls.append(1)
        raise CancelledError("the refine's deadline passed")

    with pytest.raises(CancelledError, match="deadline"):
        session.refine(before_commit=refuse)
    assert calls == [1]  # once, after the training
    after = session._head.state_dict()
    assert all(torch.equal(head_before[k], after[k]) for k in head_before)
    np.testing.assert_array_equal(session.mask, mask_before)
    assert session.pending == pending_before and session.history == ()
    again = session.refine(before_commit=lambda: None)
    fresh = _session(model2d, case2d[0]).refine()
    np.testing.assert_array_equal(again.mask, fresh.mask)
    assert again.iterations == fresh.iterations > 0
    assert len(session.history) == 1
