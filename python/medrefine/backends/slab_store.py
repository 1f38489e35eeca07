"""Stored convolution outputs of the slab executor, freed plane by plane after their last read.

The slab executor (:mod:`medrefine.backends.slabs`) keeps the output of every spatial
convolution whole; everything else is a recipe that reads slabs of those outputs. A stored output
is needed until the last *eager reader* of its recipes has run: the next spatial convolutions
and, at the end, the writing of the graph outputs. During that last reader the reads come in
increasing order along the first spatial axis (every recipe maps a slab ``[a, b)`` to a source
range whose start never decreases with ``a``), so the planes before the lowest one read in a step
are never read again and can be freed while the reader's own output grows. At 256x256x128 this
keeps one full-resolution 16-channel float32 tensor (512 MiB) from sitting beside the next one,
or beside the float16 feature buffer.

:class:`ChunkStore` holds an output as the per-slab chunks the convolution produced;
:func:`last_readers` finds, for each stored node, the eager reader after which it is dead;
:class:`Release` frees what a reader has passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import fx


class ChunkStore:
    """A ``(1, C, *spatial)`` float32 tensor kept as chunks ``[start, stop)`` along the first
    spatial axis (axis 2), each a separate tensor so that it can be freed on its own."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self._chunks: list[tuple[int, int, torch.Tensor | None]] = []
        self._low: int | None = None

    def append(self, start: int, stop: int, chunk: torch.Tensor) -> None:
        """Add planes ``[start, stop)`` (``chunk`` is ``(1, C, stop - start, ...)``), in order."""
        self._chunks.append((start, stop, chunk))

    def take(self, a: int, b: int) -> torch.Tensor:
        """Planes ``[a, b)``: a view when one chunk holds them all, else a new tensor.

        Raises:
            RuntimeError: a plane was already freed (a reader out of order: a bug).
        """
        self._low = a if self._low is None else min(self._low, a)
        parts = []
        for start, stop, chunk in self._chunks:
            if stop <= a or start >= b:
                continue
            if chunk is None:
                raise RuntimeError(f"planes [{start}, {stop}) freed before a read of [{a}, {b})")
            parts.append(chunk[:, :, max(a, start) - start : min(b, stop) - start])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def forget_reads(self) -> None:
        """Start counting reads afresh (a new reader begins)."""
        self._low = None

    def free_passed(self) -> None:
        """Free the chunks wholly before the lowest plane read since the last call."""
        if self._low is None:
            return
        self._chunks = [
            (start, stop, None if stop <= self._low else chunk)
            for start, stop, chunk in self._chunks
        ]
        self._low = None

    @property
    def held_bytes(self) -> int:
        """Bytes of the chunks not yet freed."""
        return sum(c.numel() * c.element_size() for _, _, c in self._chunks if c is not None)


class Release:
    """Frees the stores a reader is the last to read, after each of its steps."""

    def __init__(self, stores: Iterable[ChunkStore]) -> None:
        self.stores = tuple(stores)

    def begin(self) -> None:
        for store in self.stores:
            store.forget_reads()

    def step_done(self) -> None:
        for store in self.stores:
            store.free_passed()


def last_readers(
    gm: fx.GraphModule, stores_output: Callable[[fx.Node], bool]
) -> dict[fx.Node, fx.Node]:
    """For each node whose output is stored (``stores_output``), its last eager reader: of the
    storing nodes and the graph's output that read it through recipe nodes (any other node),
    the one that runs last."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    last: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if not stores_output(node):
            continue
        readers, todo, seen = [], list(node.users), set()
        while todo:
            user = todo.pop()
            if user in seen:
                continue
            seen.add(user)
            if user.op == "output" or stores_output(user):
                readers.append(user)
            else:
                todo.extend(user.users)
        if readers:
            last[node] = max(readers, key=order.__getitem__)
    return last
