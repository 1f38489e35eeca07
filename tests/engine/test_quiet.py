"""quiet_stderr: silences only the calling thread, and threads entering and leaving it in any
order leave ``sys.stderr`` as it was (``contextlib.redirect_stderr`` does neither)."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from medrefine.models.quiet import quiet_stderr


def _interleave(enter: Callable[[], AbstractContextManager[object]]) -> None:
    """Thread A enters, B enters, A leaves, B leaves: the order that breaks a plain swap."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with enter():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with enter():
            b_in.set()
            a_out.wait(5)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A stand-in for the process's stderr that the test can read (set in the test's call,
    after pytest's own capture took ``sys.stderr``; put back after it)."""
    stream = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", stream)
        yield stream


def test_a_plain_redirect_interleaved_loses_stderr(stderr: io.StringIO) -> None:
    sys.stderr = stderr
    _interleave(lambda: contextlib.redirect_stderr(io.StringIO()))
    assert sys.stderr is not stderr  # the hazard: left on a discarded buffer


def test_interleaved_quiet_blocks_leave_stderr_as_it_was(stderr: io.StringIO) -> None:
    sys.stderr = stderr
    _interleave(quiet_stderr)
    assert sys.stderr is stderr


def test_only_the_calling_thread_is_silenced(stderr: io.StringIO) -> None:
    sys.stderr = stderr
    inside, printed = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(5)
        print("from another thread", file=sys.stderr)
        printed.set()

    t = threading.Thread(target=other)
    t.start()
    with quiet_stderr():
        with quiet_stderr():  # nested: still quiet after the inner block
            pass
        print("dropped", file=sys.stderr)
        inside.set()
        printed.wait(5)
    t.join()
    print("after", file=sys.stderr)
    assert stderr.getvalue() == "from another thread\nafter\n"
