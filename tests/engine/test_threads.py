"""The refine loop runs on one thread in its own thread only; torch's process-wide thread count
is never changed (a server refines sessions in parallel threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.head.threads import single_threaded
from medrefine.types import RefineProgress


@pytest.fixture()
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _in_fresh_thread() -> int:
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_single_threaded_pins_only_the_calling_thread(two_threads) -> None:
    inside, elsewhere = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def pinned() -> None:
        with single_threaded():
            seen["inside"] = torch.get_num_threads()
            x = torch.ones(512, 96)
            seen["product"] = int((x @ x.T).sum())  # ops still run, on one thread
            inside.set()
            elsewhere.wait()
        seen["after"] = torch.get_num_threads()

    t = threading.Thread(target=pinned)
    t.start()
    inside.wait()
    seen["other thread"] = torch.get_num_threads()
    seen["new thread"] = _in_fresh_thread()
    elsewhere.set()
    t.join()
    assert seen == {
        "inside": 1,
        "product": 512 * 512 * 96,
        "other thread": 2,
        "new thread": 2,
        "after": 2,
    }


def test_a_refine_leaves_the_process_thread_count_alone(two_threads, model2d, case2d) -> None:
    image, _ = case2d
    session = mr.Session(model2d, mr.RefineConfig().with_overrides("loop.max_iterations=5"))
    mask = session.set_image(image)
    ys, xs = np.nonzero(mask == 0)
    session.add(mr.Click(1, (int(ys[0]), int(xs[0])), radius=2))
    during: list[tuple[int, int]] = []

    def progress(_: RefineProgress) -> None:  # called from inside the loop
        during.append((torch.get_num_threads(), _in_fresh_thread()))

    session.refine(progress)
    assert during, "the loop took no step"
    assert all(loop == 1 and fresh == 2 for loop, fresh in during), during
    assert torch.get_num_threads() == 2
