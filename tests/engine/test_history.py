"""History: undo and redo stacks with a fixed initial state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engine.history import History, Interaction, SessionState
from medrefine.errors import StateError


def _state(tag: int) -> SessionState:
    return SessionState(
        (), {}, {}, ("bg",), np.full(2, tag), torch.zeros(1), (Interaction("reset"),) * tag
    )


def test_commit_undo_redo() -> None:
    h = History(_state(0))
    h.commit(_state(1))
    h.commit(_state(2))
    assert h.undo().mask[0] == 1 and h.undo().mask[0] == 0 and not h.can_undo
    with pytest.raises(StateError, match="nothing to undo"):
        h.undo()
    assert h.redo().mask[0] == 1 and h.can_redo
    h.commit(_state(3))  # a new branch drops what was undone
    assert not h.can_redo and h.current.mask[0] == 3 and h.initial.mask[0] == 0
    with pytest.raises(StateError, match="nothing to redo"):
        h.redo()
