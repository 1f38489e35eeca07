"""A label mask kept compressed (:class:`PackedMask`): its runs, or its difference from the mask it
was refined from. numpy only.

Masks are any shape (2D ``(y, x)``, 3D ``(z, y, x)``) of integer labels; runs are taken over the
flat mask in C order. :meth:`PackedMask.unpack` gives every mask back bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
