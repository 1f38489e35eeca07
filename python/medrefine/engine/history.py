"""What a session remembers: its interactions and the states an undo can return to.

Memory stays bounded: masks are kept run-length encoded (:class:`PackedMask`), no state keeps
logits (the gate needs only the network's own logits, kept once per image by
:class:`medrefine.engine.step.ImageState`), and the undo stack holds at most ``depth`` states
(:attr:`medrefine.engine.limits.SessionLimits.history_depth`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from medrefine.errors import InputError, StateError
from medrefine.types import Mark, RefineResult

_NO_MASK = np.zeros(0, dtype=np.uint8)
_NO_MASK.setflags(write=False)


@dataclass(frozen=True, eq=False)
class PackedMask:
    """A label mask, run-length encoded in C order; :meth:`unpack` gives it back bit for bit.

    A label mask is long runs of one class, so a few runs per object row are kept instead of
    one byte per pixel (one pass to pack, one to unpack).

    Attributes:
        shape: spatial shape, array order.
        dtype: numpy dtype name of the labels (``"uint8"`` or ``"int32"``).
        starts: flat index where each run starts (``(R,)`` uint32, int64 past 2^32 pixels;
            the first is 0), read-only.
        values: each run's label (``(R,)``, ``dtype``), read-only.
    """

    shape: tuple[int, ...]
    dtype: str
    starts: np.ndarray
    values: np.ndarray

    @classmethod
    def pack(cls, mask: np.ndarray) -> PackedMask:
        flat = np.ascontiguousarray(mask).reshape(-1)
        index = np.uint32 if flat.size <= 2**32 else np.int64
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([np.zeros(min(flat.size, 1), index), changes.astype(index)])
        values = flat[starts]
        starts.setflags(write=False)
        values.setflags(write=False)
        return cls(tuple(mask.shape), flat.dtype.name, starts, values)

    def unpack(self) -> np.ndarray:
        """A new, writable array (changing it changes nothing stored)."""
        size = int(np.prod(self.shape))
        lengths = np.diff(np.append(self.starts.astype(np.int64), size))
        return np.repeat(self.values, lengths).astype(self.dtype).reshape(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held by the runs."""
        return int(self.starts.nbytes + self.values.nbytes)


class Interaction:
    """One entry of :attr:`medrefine.Session.history` (immutable).

    Attributes:
        kind: ``"refine"``, ``"add_class"`` or ``"reset"``.
        marks: the marks added by this interaction (refine only).
        result: the refinement's result (refine only); each access returns a new copy of its
            mask (kept compressed here), and ``wrong_where`` is read-only.
        class_name: the added class (add_class only).
    """

    __slots__ = ("_mask", "_result", "class_name", "kind", "marks")
    kind: Literal["refine", "add_class", "reset"]
    marks: tuple[Mark, ...]
    class_name: str

    def __init__(
        self,
        kind: Literal["refine", "add_class", "reset"],
        marks: tuple[Mark, ...] = (),
        result: RefineResult | None = None,
        class_name: str = "",
        *,
        packed: PackedMask | None = None,
    ) -> None:
        if kind not in ("refine", "add_class", "reset"):
            raise InputError(f"interaction kind must be refine, add_class or reset, got {kind!r}")
        mask: PackedMask | None = None
        if result is not None:
            mask = packed if packed is not None else PackedMask.pack(result.mask)
            where = np.array(result.wrong_where, dtype=np.int64)
            where.setflags(write=False)
            result = replace(result, mask=_NO_MASK, wrong_where=where)
        for name, value in (
            ("kind", kind),
            ("marks", tuple(marks)),
            ("class_name", class_name),
            ("_result", result),
            ("_mask", mask),
        ):
            object.__setattr__(self, name, value)

    @property
    def result(self) -> RefineResult | None:
        stored: RefineResult | None = self._result  # type: ignore[attr-defined]
        packed: PackedMask | None = self._mask  # type: ignore[attr-defined]
        if stored is None or packed is None:
            return None
        return replace(stored, mask=packed.unpack())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Interaction is immutable; cannot set {name}")

    def _key(self) -> tuple[object, ...]:
        return (self.kind, self.marks, self.class_name, self._result)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interaction) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.kind, self.class_name, len(self.marks)))

    def __repr__(self) -> str:
        return (
            f"Interaction(kind={self.kind!r}, marks={self.marks!r}, result={self.result!r}, "
            f"class_name={self.class_name!r})"
        )


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
