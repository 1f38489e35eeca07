"""Silence what the calling thread writes to ``sys.stderr``, and only that.

``contextlib.redirect_stderr`` swaps ``sys.stderr`` for the whole process: while it is active,
every other thread's messages go to the replacement too, and two threads that enter and leave it
interleaved restore each other's replacement, leaving ``sys.stderr`` pointing at a discarded
buffer for the rest of the process (a server would lose its logs). :func:`quiet_stderr` swaps
in a stream that drops the calling thread's writes and passes every other thread's through,
and the swaps of all threads nest under one lock.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["quiet_stderr"]

_SWAP = threading.Lock()


class _OthersOnly:
    """A text stream that drops writes from threads in ``silent`` and forwards the rest."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.silent: Counter[int] = Counter()  # thread id -> open quiet_stderr blocks

    def write(self, text: str) -> int:
        if threading.get_ident() in self.silent:
            return len(text)
        return self.target.write(text)

    def flush(self) -> None:
        if threading.get_ident() not in self.silent:
            self.target.flush()

    def __getattr__(self, name: str) -> object:  # encoding, isatty, fileno, ...
        return getattr(self.target, name)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Within the block, the calling thread's writes to ``sys.stderr`` are dropped (torch.fx
    prints a traceback there before raising from a traced module); other threads' are not."""
    me = threading.get_ident()
    with _SWAP:
        current: object = sys.stderr
        stream = current if isinstance(current, _OthersOnly) else _OthersOnly(sys.stderr)
        sys.stderr = stream
        stream.silent[me] += 1
    try:
        yield
    finally:
        with _SWAP:
            stream.silent[me] -= 1
            if not stream.silent[me]:
                del stream.silent[me]
            if not stream.silent and sys.stderr is stream:
                sys.stderr = stream.target
