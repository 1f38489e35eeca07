"""History: undo and redo stacks with a fixed initial state."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.engine.session.history import History, SessionState
from medrefine.errors import StateError
from medrefine.packed import PackedMask
from medrefine.records import Interaction


def _state(tag: int) -> SessionState:
    mask = PackedMask.pack(np.full(2, tag, dtype=np.uint8))
    return SessionState((), {}, {}, ("bg",), mask, 0.0, (Interaction("reset"),) * tag)


def test_commit_undo_redo() -> None:
    h = History(_state(0))
    h.commit(_state(1))
    h.commit(_state(2))
    assert h.undo().mask.unpack()[0] == 1 and h.undo().mask.unpack()[0] == 0 and not h.can_undo
    with pytest.raises(StateError, match="nothing to undo"):
        h.undo()
    assert h.redo().mask.unpack()[0] == 1 and h.can_redo
    h.commit(_state(3))  # a new branch drops what was undone
    assert not h.can_redo and h.current.mask.unpack()[0] == 3 and h.initial.mask.unpack()[0] == 0
    with pytest.raises(StateError, match="nothing to redo"):
        h.redo()
