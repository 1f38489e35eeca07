"""History keeps each state's mask as what its refine changed, and gives every mask back bit
for bit through any sequence of commits, undos, redos and resets."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from medrefine.engine.session.history import History, SessionState
from medrefine.packed import PackedMask
from medrefine.records import Interaction


def _state(mask: np.ndarray, head: dict[str, torch.Tensor] | None = None) -> SessionState:
    packed = PackedMask.pack(mask)
    entry = Interaction("reset")
    return SessionState((), head or {}, {}, ("bg", "a", "b"), packed, 0.0, (entry,))


def _blob(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[slice, ...]:
    lo = [int(rng.integers(0, s - 4)) for s in shape]
    return tuple(slice(a, a + int(rng.integers(1, 5))) for a in lo)


def _network_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for _ in range(40):
        mask[_blob(shape, rng)] = rng.integers(0, 3)
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_every_mask_comes_back_through_random_moves(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (12, 20, 18)
    first = _network_mask(shape, rng)
    history = History(_state(first), depth=int(rng.integers(1, 6)))
    truth: dict[int, np.ndarray] = {id(history.initial.mask): first}
    seen = [history.initial]
    for _ in range(80):
        move = rng.choice(["refine", "refine", "undo", "redo", "reset", "same"])
        if move == "refine":
            mask = history.current.mask.unpack()
            for _ in range(int(rng.integers(0, 4))):
                mask[_blob(shape, rng)] = rng.integers(0, 3)
            state = _state(mask)
            truth[id(state.mask)] = mask
            history.commit(state)
        elif move == "undo" and history.can_undo:
            history.undo()
        elif move == "redo" and history.can_redo:
            history.redo()
        elif move == "reset":
            history.commit(replace(history.initial, history=()))
        elif move == "same":  # add_class: the same mask, another state
            history.commit(replace(history.current, class_names=("x",)))
        seen.append(history.current)
        for state in seen:  # every state ever current, whether still reachable or not
            np.testing.assert_array_equal(state.mask.unpack(), truth[id(state.mask)])


def test_a_refine_costs_what_it_changed_not_the_mask() -> None:
    # A fragmented mask (many runs), refined 30 times by small changes: each state left behind
    # holds its delta only; the runs of the whole mask are kept by at most four masks.
    rng = np.random.default_rng(0)
    shape = (32, 128, 128)
    mask = (rng.random(shape) < 0.3).astype(np.uint8)  # ~30% of voxels start a run
    history = History(_state(mask))
    full = history.initial.mask.nbytes
    masks = [history.initial.mask]
    for _ in range(30):
        mask = mask.copy()
        mask[_blob(shape, rng)] = 2
        state = _state(mask)
        history.commit(state)
        masks.append(state.mask)
    held = sum(m.nbytes for m in masks)
    assert full > 500_000
    assert held < 4 * full + 30 * 10_000  # was 31 full masks
    np.testing.assert_array_equal(history.current.mask.unpack(), mask)
    for _ in range(30):
        history.undo()
    np.testing.assert_array_equal(history.current.mask.unpack(), masks[0].unpack())


def test_equal_head_tensors_are_shared_with_the_previous_state() -> None:
    mask = np.zeros((4, 4), np.uint8)
    frozen, moved = torch.ones(100, 100), torch.zeros(3)
    history = History(_state(mask, {"frozen": frozen, "moved": moved}))
    history.commit(_state(mask, {"frozen": frozen.clone(), "moved": moved + 1}))
    head = history.current.head
    assert head["frozen"] is frozen and torch.equal(head["moved"], moved + 1)
    history.undo()
    assert torch.equal(history.current.head["moved"], moved)


def test_readers_in_other_threads_see_every_mask_while_states_move() -> None:
    rng = np.random.default_rng(3)
    shape = (16, 64, 64)
    masks = [_network_mask(shape, rng)]
    history = History(_state(masks[0]))
    states = [history.initial]
    for _ in range(12):
        mask = masks[-1].copy()
        mask[_blob(shape, rng)] = 1
        masks.append(mask)
        states.append(_state(mask))
        history.commit(states[-1])
    stop, failures = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            for state, mask in zip(states, masks, strict=True):
                if not np.array_equal(state.mask.unpack(), mask):
                    failures.append(1)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for _ in range(30):
        while history.can_undo:
            history.undo()
        while history.can_redo:
            history.redo()
    stop.set()
    for t in readers:
        t.join()
    assert not failures
