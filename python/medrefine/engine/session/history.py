"""What a session remembers: the states an undo can return to.

Memory stays bounded by what the interactions changed: a state's mask is kept as its runs
(:class:`~medrefine.packed.PackedMask`) while it is current or one undo or redo away, and
otherwise only as the ranges where it differs from the mask it was refined from, so a refine that
changes a few thousand voxels of a 128x256x256 volume keeps kilobytes, not the mask; head tensors
equal to the previous state's are shared. No state keeps logits (the gate needs only the
network's own logits, kept once per image by
:class:`medrefine.engine.session.image.ImageState`), and the undo stack holds at most ``depth``
states (:attr:`medrefine.engine.budget.limits.SessionLimits.history_depth`). Every mask comes
back bit for bit. The interactions themselves are :class:`medrefine.records.Interaction`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import torch

from medrefine.engine.budget import heap
from medrefine.errors import InputError, StateError
from medrefine.packed import PackedMask
from medrefine.records import Interaction
from medrefine.types import Mark


def snapshot(head: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``head``'s state (weights and buffers)."""
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


@dataclass(frozen=True)
class SessionState:
    """Everything an undo restores.

    Attributes:
        marks: every mark the mask was refined on.
        head: the head's ``state_dict`` (adapted weights).
        params0: the pre-trained head parameters (the anchor W0; grows with added classes).
        class_names: one per output channel.
        mask: the label mask shown to the user, compressed.
        top_floor: the lowest, over pixels, of the highest class logit behind ``mask``; a class
            added later starts below it everywhere.
        history: the interactions that led here.
        reach: widest adaptive gate of the session so far, in pixels (inf = global).
    """

    marks: tuple[Mark, ...]
    head: dict[str, torch.Tensor]
    params0: dict[str, torch.Tensor]
    class_names: tuple[str, ...]
    mask: PackedMask
    top_floor: float
    history: tuple[Interaction, ...]
    reach: float = 0.0


def _shared_head(
    head: dict[str, torch.Tensor], previous: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``head`` with each tensor equal (same shape, dtype and values) to ``previous``'s under
    the same name replaced by ``previous``'s: a refine that leaves layers untouched (frozen by
    ``loop.trainable_layers``, buffers) keeps one copy of them. Snapshots are never written
    in place, so sharing is exact."""
    shared = {}
    for name, tensor in head.items():
        old = previous.get(name)
        same = (
            old is not None
            and old.shape == tensor.shape
            and old.dtype == tensor.dtype
            and old.device == tensor.device
            and torch.equal(old, tensor)
        )
        shared[name] = old if same and old is not None else tensor
    return shared


class History:
    """Undo and redo stacks over :class:`SessionState`, starting at the network's own output.

    At most ``depth`` states can be undone to (older ones are dropped); ``initial`` is always
    kept.
    """

    def __init__(self, initial: SessionState, depth: int = 32) -> None:
        if depth < 0:
            raise InputError(f"history depth must be >= 0, got {depth}")
        self.initial = initial
        self.current = initial
        self._undo: deque[SessionState] = deque(maxlen=depth)
        self._redo: list[SessionState] = []
        self._neighbours: tuple[SessionState, ...] = ()  # states one undo or redo away

    def commit(self, state: SessionState) -> None:
        """Make ``state`` current; the previous one can be undone to, redo is cleared.

        A new mask is linked to the previous one (:meth:`PackedMask.link`) and the previous
        one's runs dropped, so each state kept costs what its refine changed; head tensors
        equal to the previous state's are shared, not copied (:func:`_shared_head`). The C
        heap's free pages are then given back to the system
        (:func:`medrefine.engine.budget.heap.trim`): what the step that made ``state`` freed
        does not stay resident."""
        previous = self.current
        mask = state.mask
        if mask is not self.initial.mask and mask is not previous.mask:
            mask.link(previous.mask)
        state = replace(state, head=_shared_head(state.head, previous.head))
        self._undo.append(previous)
        self._redo.clear()
        self.current = state
        self._moved(previous)
        heap.trim()  # the step's temporaries, freed, would otherwise stay resident

    def undo(self) -> SessionState:
        """Step back one state and return it."""
        if not self._undo:
            raise StateError("nothing to undo")
        previous = self.current
        self._redo.append(previous)
        self.current = self._undo.pop()
        self._moved(previous)
        return self.current

    def redo(self) -> SessionState:
        """Step forward to the last undone state and return it."""
        if not self._redo:
            raise StateError("nothing to redo")
        previous = self.current
        self._undo.append(previous)
        self.current = self._redo.pop()
        self._moved(previous)
        return self.current

    def _held(self) -> list[PackedMask]:
        """The masks that hold their runs: the current one and those one undo or redo away."""
        held = [self.current.mask]
        if self._undo:
            held.append(self._undo[-1].mask)
        if self._redo:
            held.append(self._redo[-1].mask)
        return held

    def _moved(self, previous: SessionState) -> None:
        """After a move from ``previous``: the masks now current or one step away hold their
        runs (rebuilt from the current one, a delta away); any other keeps only its delta."""
        current = self.current.mask
        current.keep()
        for mask in self._held()[1:]:
            mask.keep(current)
        kept = {id(m) for m in self._held()}
        for state in (previous, *self._neighbours):
            if id(state.mask) not in kept:
                state.mask.drop()
        self._neighbours = tuple(s for s in (self._top(self._undo), self._top(self._redo)) if s)

    @staticmethod
    def _top(stack: deque[SessionState] | list[SessionState]) -> SessionState | None:
        return stack[-1] if stack else None

    def undo_target(self) -> SessionState:
        """The state :meth:`undo` would return, without moving."""
        if not self._undo:
            raise StateError("nothing to undo")
        return self._undo[-1]

    def redo_target(self) -> SessionState:
        """The state :meth:`redo` would return, without moving."""
        if not self._redo:
            raise StateError("nothing to redo")
        return self._redo[-1]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def depth(self) -> int:
        """The most states that can be undone to."""
        return self._undo.maxlen or 0


def reset_target(history: History) -> SessionState:
    """The state a reset commits: the network's own, with the interactions so far plus a reset."""
    entry = Interaction("reset")
    return replace(history.initial, history=history.current.history + (entry,))
