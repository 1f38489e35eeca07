"""What a session remembers: its interactions and every state an undo can return to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from medrefine.errors import StateError
from medrefine.types import Mark, RefineResult


@dataclass(frozen=True)
class Interaction:
    """One entry of :attr:`medrefine.Session.history`.

    Attributes:
        kind: ``"refine"``, ``"add_class"`` or ``"reset"``.
        marks: the marks added by this interaction (refine only).
        result: the refinement's result (refine only).
        class_name: the added class (add_class only).
    """

    kind: Literal["refine", "add_class", "reset"]
    marks: tuple[Mark, ...] = ()
    result: RefineResult | None = None
    class_name: str = ""


@dataclass(frozen=True)
class SessionState:
    """Everything an undo restores.

    Attributes:
        marks: every mark the mask was refined on.
        head: the head's ``state_dict`` (adapted weights).
        params0: the pre-trained head parameters (the anchor W0; grows with added classes).
        class_names: one per output channel.
        mask: the label mask shown to the user.
        logits: ``(K, *shape)`` float32 logits behind ``mask`` (before marks are written).
        history: the interactions that led here.
        reach: widest adaptive gate of the session so far, in pixels (inf = global).
    """

    marks: tuple[Mark, ...]
    head: dict[str, torch.Tensor]
    params0: dict[str, torch.Tensor]
    class_names: tuple[str, ...]
    mask: np.ndarray
    logits: torch.Tensor
    history: tuple[Interaction, ...]
    reach: float = 0.0


class History:
    """Undo and redo stacks over :class:`SessionState`, starting at the network's own output."""

    def __init__(self, initial: SessionState) -> None:
        self.initial = initial
        self.current = initial
        self._undo: list[SessionState] = []
        self._redo: list[SessionState] = []

    def commit(self, state: SessionState) -> None:
        """Make ``state`` current; the previous one can be undone to, redo is cleared."""
        self._undo.append(self.current)
        self._redo.clear()
        self.current = state

    def undo(self) -> SessionState:
        """Step back one state and return it."""
        if not self._undo:
            raise StateError("nothing to undo")
        self._redo.append(self.current)
        self.current = self._undo.pop()
        return self.current

    def redo(self) -> SessionState:
        """Step forward to the last undone state and return it."""
        if not self._redo:
            raise StateError("nothing to redo")
        self._undo.append(self.current)
        self.current = self._redo.pop()
        return self.current

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)
