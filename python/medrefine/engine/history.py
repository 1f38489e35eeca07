"""What a session remembers: its interactions and the states an undo can return to.

Memory stays bounded by what the interactions changed: a state's mask is kept as its runs
(:class:`PackedMask`) while it is current or one undo or redo away, and otherwise only as the
ranges where it differs from the mask it was refined from, so a refine that changes a few
thousand voxels of a 128x256x256 volume keeps kilobytes, not the mask; head tensors equal to the
previous state's are shared. No state keeps logits (the gate needs only the network's own
logits, kept once per image by :class:`medrefine.engine.step.ImageState`), and the undo stack
holds at most ``depth`` states (:attr:`medrefine.engine.limits.SessionLimits.history_depth`).
Every mask comes back bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from medrefine.engine import heap
from medrefine.errors import InputError, StateError
from medrefine.types import Mark, RefineResult

_NO_MASK = np.zeros(0, dtype=np.uint8)
_NO_MASK.setflags(write=False)


@dataclass(frozen=True)
class _Runs:
    """A mask run-length encoded in C order: run ``i`` starts at flat index ``starts[i]`` (the
    first at 0) and holds ``values[i]``; both read-only."""

    starts: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.values.nbytes)


@dataclass(frozen=True)
class _Delta:
    """How a mask differs from ``base``: on each flat range ``[starts[i], ends[i])`` it holds
    ``values[i]`` where ``base`` holds ``before[i]``, and equals ``base`` elsewhere. Either
    mask rebuilds the other (read-only arrays)."""

    base: PackedMask
    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray
    before: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.ends.nbytes + self.values.nbytes + self.before.nbytes)


def _index_dtype(size: int) -> type[np.integer]:
    return np.uint32 if size < 2**32 else np.int64


def _frozen(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def _merge(*parts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct values of sorted arrays, sorted, and for each array how many of its
    elements are at or below each value. A stable sort merges sorted arrays in about linear
    time; no binary search."""
    values = np.concatenate([p.astype(np.int64, copy=False) for p in parts])
    order = np.argsort(values, kind="stable")
    merged = values[order]
    last = np.append(merged[1:] != merged[:-1], True)  # the last of each equal group
    owner = np.repeat(np.arange(len(parts), dtype=np.int8), [p.size for p in parts])[order]
    counts = [np.cumsum(owner == k)[last] for k in range(len(parts) - 1)]
    counts.append(np.flatnonzero(last) + 1 - sum(counts, np.zeros(1, np.int64)))
    return merged[last], counts


def _diff(old: _Runs, new: _Runs, size: int) -> tuple[np.ndarray, ...]:
    """The ranges where ``new`` differs from ``old``, with ``new``'s and ``old``'s value on
    each (adjacent ranges with both values equal merged): ``(starts, ends, values, before)``.
    Works on the runs alone: its cost is the runs', not the mask's."""
    cuts, (in_old, in_new) = _merge(old.starts, new.starts)
    was, now = old.values[in_old - 1], new.values[in_new - 1]
    ends = np.append(cuts[1:], size)
    changed = was != now
    starts, ends, values, before = cuts[changed], ends[changed], now[changed], was[changed]
    if starts.size:
        joined = (starts[1:] == ends[:-1]) & (values[1:] == values[:-1])
        first = np.concatenate([[True], ~(joined & (before[1:] == before[:-1]))])
        last = np.append(first[1:], True)
        starts, ends, values, before = starts[first], ends[last], values[first], before[first]
    index = _index_dtype(size)
    out = (starts.astype(index), ends.astype(index), values.copy(), before.copy())
    _frozen(*out)
    return out


def _overwrite(runs: _Runs, delta: _Delta, values: np.ndarray, size: int, dtype: str) -> _Runs:
    """The runs of ``runs`` overwritten on ``delta``'s ranges by ``values`` (one per range)."""
    if delta.starts.size == 0:
        return _Runs(runs.starts, runs.values.astype(dtype, copy=False))
    ends = delta.ends[delta.ends < size]
    cuts, (in_runs, opened, closed) = _merge(runs.starts, delta.starts, ends)
    inside = opened > closed  # ranges are disjoint and sorted: one is open here
    labels = np.where(inside, values[np.maximum(opened - 1, 0)], runs.values[in_runs - 1])
    labels = labels.astype(dtype, copy=False)
    keep = np.concatenate([[True], labels[1:] != labels[:-1]])
    out = _Runs(cuts[keep].astype(_index_dtype(size)), labels[keep])
    _frozen(out.starts, out.values)
    return out


def _path(below: PackedMask, above: PackedMask, most: int = 64) -> list[PackedMask] | None:
    """The masks from ``below`` up its chain to just before ``above`` (at most ``most``), or
    None when ``above`` is not that close up ``below``'s chain."""
    path: list[PackedMask] = []
    node = below
    while node is not above:
        delta = node._delta
        if delta is None or len(path) >= most:
            return None
        path.append(node)
        node = delta.base
    return path


class PackedMask:
    """A label mask kept compressed; :meth:`unpack` gives it back bit for bit.

    Two forms, both exact. A mask just packed holds its runs in C order (a label mask is long
    runs of one class, so a few runs per object row instead of one byte per pixel). Linked to
    the mask it was refined from (:meth:`link`, done by :class:`History`), it also holds the
    ranges where it differs from that mask; :meth:`drop` then forgets its runs, which are rebuilt
    on demand from the nearest mask up the chain that holds its own (the network's mask always
    does). A state the user has moved past thus costs only what its refine changed.

    Thread-safe for readers: each form is swapped in as one attribute, a delta before its runs
    are dropped, so a reader always finds one of them.

    Attributes:
        shape: spatial shape, array order.
        dtype: numpy dtype name of the labels (``"uint8"`` or ``"int32"``).
    """

    __slots__ = ("_delta", "_runs", "dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: str, runs: _Runs) -> None:
        self.shape, self.dtype = shape, dtype
        self._runs: _Runs | None = runs
        self._delta: _Delta | None = None

    @classmethod
    def pack(cls, mask: np.ndarray) -> PackedMask:
        flat = np.ascontiguousarray(mask).reshape(-1)
        index = np.uint32 if flat.size <= 2**32 else np.int64
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([np.zeros(min(flat.size, 1), index), changes.astype(index)])
        values = flat[starts]
        _frozen(starts, values)
        return cls(tuple(mask.shape), flat.dtype.name, _Runs(starts, values))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def _rebuilt(self, near: PackedMask | None = None) -> _Runs:
        """The runs: held; or rebuilt from ``near`` (holding its runs) when this mask is up
        ``near``'s chain (undoing its deltas); else from the nearest mask up this one's chain
        that holds its own (redoing the deltas below it)."""
        runs = self._runs
        if runs is not None:
            return runs
        if near is not None and (path := _path(near, self)) is not None:
            runs = near._rebuilt()
            for step in path:
                delta = step._delta
                assert delta is not None
                runs = _overwrite(runs, delta, delta.before, step.size, delta.base.dtype)
            return runs
        chain: list[PackedMask] = []
        node: PackedMask = self
        while (held := node._runs) is None:
            delta = node._delta
            assert delta is not None  # runs are dropped only once a delta is held
            chain.append(node)
            node = delta.base
        for node in reversed(chain):
            delta = node._delta
            assert delta is not None
            held = _overwrite(held, delta, delta.values, node.size, node.dtype)
        return held

    def unpack(self) -> np.ndarray:
        """A new, writable array (changing it changes nothing stored)."""
        runs = self._rebuilt()
        if self.size == 0:
            return np.zeros(self.shape, dtype=self.dtype)
        lengths = np.diff(np.append(runs.starts.astype(np.int64), self.size))
        return np.repeat(runs.values, lengths).astype(self.dtype).reshape(self.shape)

    def link(self, base: PackedMask) -> bool:
        """Also hold this mask as its difference from ``base`` (the mask it was refined from),
        so that :meth:`drop` can forget its runs. Not done (False) when it is ``base``, when it
        is already linked, or when ``base`` has another shape (or no pixels)."""
        if base is self or self._delta is not None or base.shape != self.shape or not self.size:
            return False
        starts, ends, values, before = _diff(base._rebuilt(), self._rebuilt(), self.size)
        self._delta = _Delta(base, starts, ends, values, before)
        return True

    def keep(self, near: PackedMask | None = None) -> None:
        """Hold the runs (rebuilt from ``near`` when it is a mask refined from this one)."""
        if self._runs is None:
            self._runs = self._rebuilt(near)

    def drop(self) -> None:
        """Forget the runs if a delta can rebuild them (a mask without one keeps them)."""
        if self._delta is not None:
            self._runs = None

    @property
    def nbytes(self) -> int:
        """Bytes this mask holds now: its runs, its delta, or both (not its base's)."""
        runs, delta = self._runs, self._delta
        return (runs.nbytes if runs is not None else 0) + (delta.nbytes if delta is not None else 0)

    def __repr__(self) -> str:
        form = "runs" if self._runs is not None else "delta"
        return f"PackedMask(shape={self.shape}, dtype={self.dtype!r}, {form}, {self.nbytes} B)"


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
        heap's free pages are then given back to the system (:func:`medrefine.engine.heap.trim`):
        what the step that made ``state`` freed does not stay resident."""
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
