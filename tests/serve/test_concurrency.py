"""Sixteen clients on separate sessions at once all get what an in-process session gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import medrefine as mr
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache

from .conftest import Served

CLIENTS = 16


def _crop(nuclei: np.ndarray, i: int) -> np.ndarray:
    y, x = 6 * (i % 4), 8 * (i // 4)
    return np.ascontiguousarray(nuclei[:, y : y + 40, x : x + 40])


def _marks(i: int) -> list[mr.Mark]:
    return [mr.Scribble(1, [(8 + i, 8), (18 + i, 26)], 1), mr.Click(0, (34, 34 - i), 2)]


def test_sixteen_concurrent_clients(served: Served, nuclei: np.ndarray) -> None:
    model = mr.load_model("nuclei-unet2d")

    def in_process(i: int) -> tuple[np.ndarray, np.ndarray]:
        local = mr.Session(model, cache=FeatureCache())
        local.set_image(_crop(nuclei, i))
        for mark in _marks(i):
            local.add(mark)
        return local.refine().mask, local.undo()

    with ThreadPoolExecutor(2) as pool:
        expected = list(pool.map(in_process, range(CLIENTS)))

    def client(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with RemoteSession(served.target, "nuclei-unet2d") as remote:
            remote.set_image(_crop(nuclei, i))
            for mark in _marks(i):
                remote.add(mark)
            refined = remote.refine().mask
            undone = remote.undo()
            fetched = remote.get_mask()
            remote.close_session()
            return refined, undone, fetched

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    for i, ((refined, undone, fetched), (want_refined, want_undone)) in enumerate(
        zip(results, expected, strict=True)
    ):
        np.testing.assert_array_equal(refined, want_refined, err_msg=f"client {i}")
        np.testing.assert_array_equal(undone, want_undone, err_msg=f"client {i}")
        np.testing.assert_array_equal(fetched, want_undone, err_msg=f"client {i}")
