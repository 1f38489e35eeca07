"""Convolution outputs freed plane by plane by their last reader: same features, less held."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from medrefine.backends import slab_store
from medrefine.backends.slab_store import ChunkStore
from medrefine.backends.slabs import run_slabs, slab_plan, write
from medrefine.models.unet import UNet
from splits import split


def _store() -> ChunkStore:
    store = ChunkStore((1, 2, 6, 3))
    values = torch.arange(36, dtype=torch.float32).reshape(1, 2, 6, 3)
    for a in range(0, 6, 2):
        store.append(a, a + 2, values[:, :, a : a + 2].clone())
    return store


def test_a_store_reads_across_chunks_and_frees_what_was_passed() -> None:
    store = _store()
    want = torch.arange(36, dtype=torch.float32).reshape(1, 2, 6, 3)
    torch.testing.assert_close(store.take(1, 5), want[:, :, 1:5])
    torch.testing.assert_close(store.take(2, 4), want[:, :, 2:4])
    store.free_passed()  # lowest read since the last call: plane 1, so chunk [0, 2) stays
    assert store.held_bytes == 36 * 4
    store.take(3, 6)
    store.free_passed()  # lowest read 3: chunk [0, 2) goes, [2, 4) holds plane 3
    assert store.held_bytes == 24 * 4
    torch.testing.assert_close(store.take(3, 6), want[:, :, 3:6])
    with pytest.raises(RuntimeError, match=r"planes \[0, 2\) freed"):
        store.take(1, 3)


def _held_peak(
    net: UNet, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch, free: bool
) -> tuple[int, tuple[torch.Tensor, ...]]:
    """The most bytes all live stores held at once during the slab pass, and the features."""
    stores: list[weakref.ref[ChunkStore]] = []
    peak = [0]
    original_init, original_append = ChunkStore.__init__, ChunkStore.append

    def init(self: ChunkStore, size: tuple[int, ...]) -> None:
        original_init(self, size)
        stores.append(weakref.ref(self))

    def append(self: ChunkStore, start: int, stop: int, chunk: torch.Tensor) -> None:
        original_append(self, start, stop, chunk)
        live = (ref() for ref in stores)
        peak[0] = max(peak[0], sum(s.held_bytes for s in live if s is not None))

    monkeypatch.setattr(ChunkStore, "__init__", init)
    monkeypatch.setattr(ChunkStore, "append", append)
    if not free:
        monkeypatch.setattr(slab_store.Release, "step_done", lambda self: None)
    model = split(net)
    x = model.preprocessing(np.random.default_rng(5).normal(size=shape).astype(np.float32))
    gm = slab_plan(model.backbone, 1, len(shape), model.preprocessing.multiple)
    assert gm is not None
    plane = int(np.prod(x.shape[3:]))
    with torch.no_grad():
        features = write(run_slabs(gm, x, 4 * 16 * plane), shape, torch.float32, 4 * 16 * plane)
    monkeypatch.undo()
    return peak[0], features


def test_freeing_passed_planes_lowers_the_held_peak_and_keeps_the_features(
    net3d: UNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape = (40, 16, 16)
    kept, whole = _held_peak(net3d, shape, monkeypatch, free=False)
    freed, got = _held_peak(net3d, shape, monkeypatch, free=True)
    for g, w in zip(got, whole, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    # the decoder's full-resolution convolutions no longer hold the encoder's beside them
    assert freed < 0.8 * kept, (freed, kept)
