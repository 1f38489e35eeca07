"""medrefine.kernels.geodesic_distance: the kernel against scikit-image's Dijkstra, limits,
errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from skimage.graph import MCP_Geometric

import medrefine
from medrefine.kernels.geodesic import geodesic_distance
from medrefine_lab.benchmarks import geodesic as geodesic_bench


def _reference(cost: np.ndarray, seeds: np.ndarray, fully_connected: bool) -> np.ndarray:
    mcp = MCP_Geometric(cost.astype(np.float64), fully_connected=fully_connected)
    distances, _ = mcp.find_costs([tuple(p) for p in np.argwhere(seeds)])
    return distances


def _cost_and_one_seed(
    shape: tuple[int, ...], at: tuple[int, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random float64 cost in [1, 2) and a seed mask with the one pixel ``at``."""
    cost = 1 + np.random.default_rng(seed).random(shape)
    seeds = np.zeros(shape, bool)
    seeds[at] = True
    return cost, seeds


@pytest.mark.parametrize("shape", [(37, 41), (13, 17, 11)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("full", [True, False])
def test_matches_scikit_image(shape: tuple[int, ...], dtype: type, full: bool) -> None:
    rng = np.random.default_rng(len(shape))
    cost = (0.2 + 5 * rng.random(shape)).astype(dtype)
    seeds = rng.random(shape) > 0.995
    seeds[(0,) * len(shape)] = True
    got = geodesic_distance(cost, seeds, connectivity=len(shape) if full else 1)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, _reference(cost, seeds, full), rtol=1e-5)


def test_limit_cuts_the_search_without_changing_what_is_within() -> None:
    cost, seeds = _cost_and_one_seed((50, 50), (25, 25), 3)
    full = geodesic_distance(cost, seeds)
    cut = geodesic_distance(cost, seeds, limit=10.0)
    inside = full <= 10.0
    np.testing.assert_array_equal(cut[inside], full[inside])
    assert np.isinf(cut[~inside]).all() and inside.sum() > 100
    assert np.isinf(geodesic_distance(cost, np.zeros((50, 50), bool))).all()
    assert medrefine.kernels.geodesic_distance is geodesic_distance


@pytest.mark.parametrize(
    ("cost", "seeds", "kwargs", "error", "words"),
    [
        (np.ones((4, 4), np.int32), np.ones((4, 4), bool), {}, TypeError, "float32 or float64"),
        ([[1.0]], np.ones((1, 1), bool), {}, TypeError, "cost must be"),
        (np.ones((4, 4)), np.ones((4, 4), np.float32), {}, TypeError, "seeds must be"),
        (np.ones(4), np.ones(4, bool), {}, ValueError, "2D or 3D"),
        (np.ones((4, 4)), np.ones((4, 5), bool), {}, ValueError, "differs"),
        (-np.ones((4, 4)), np.ones((4, 4), bool), {}, ValueError, "finite and >= 0"),
        (np.full((4, 4), np.nan), np.ones((4, 4), bool), {}, ValueError, "finite and >= 0"),
        (np.ones((4, 4)), np.ones((4, 4), bool), {"limit": -1.0}, ValueError, "limit"),
        (np.ones((4, 4)), np.ones((4, 4), bool), {"limit": math.nan}, ValueError, "limit"),
        (np.ones((4, 4)), np.ones((4, 4), bool), {"limit": "5"}, TypeError, "limit"),
        (np.ones((4, 4)), np.ones((4, 4), bool), {"connectivity": 3}, ValueError, "connectivity"),
        (np.ones((4, 4)), np.ones((4, 4), bool), {"connectivity": 1.0}, TypeError, "connectivity"),
    ],
)
def test_bad_arguments_are_named(
    cost: object, seeds: object, kwargs: dict[str, object], error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        geodesic_distance(cost, seeds, **kwargs)  # type: ignore[arg-type]


def test_non_contiguous_and_swapped_byte_order_inputs() -> None:
    cost, seeds = _cost_and_one_seed((30, 40), (3, 4), 5)
    expected = geodesic_distance(cost, seeds)
    np.testing.assert_array_equal(geodesic_distance(cost.T.copy().T, seeds), expected)
    swapped = cost.astype(cost.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(geodesic_distance(swapped, seeds), expected)
    wide = np.zeros((30, 80))
    wide[:, ::2] = cost
    np.testing.assert_array_equal(geodesic_distance(wide[:, ::2], seeds), expected)


def test_benchmark_runs_on_small_scenes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a table wide enough not to wrap its cells
    args = SimpleNamespace(size2d=48, size3d=16, repeats=2, seed=0)
    assert geodesic_bench.run(args) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "48x48" in out and "16x16x16" in out and "MCP" in out
    rows = geodesic_bench.measure((40, 40), 1, 0)
    assert [r["limit"] for r in rows] == [16.0, 48.0, math.inf]
    assert all(r["max_abs_diff"] < 1e-3 for r in rows)  # the kernel agrees with MCP within
    assert rows[0]["reached"] < rows[-1]["reached"] == 40 * 40
