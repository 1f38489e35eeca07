"""medrefine.kernels.grid_min_cut: exact against brute force on tiny grids, against PyMaxflow on
large ones, and every argument check."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from medrefine.kernels import grid_min_cut
from medrefine.kernels.potts import edge_slices

Offset = tuple[int, ...]


def all_offsets(ndim: int) -> list[Offset]:
    return [o for o in itertools.product((-1, 0, 1), repeat=ndim) if any(o)]


def arcs(
    shape: tuple[int, ...], offsets: list[Offset], forward: np.ndarray, backward: np.ndarray
) -> list[tuple[int, int, float]]:
    """Every arc ``(tail, head, capacity)`` by flat index, written out from the definition."""
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    out = []
    for k, offset in enumerate(offsets):
        for p in itertools.product(*(range(n) for n in shape)):
            q = tuple(a + o for a, o in zip(p, offset, strict=True))
            if all(0 <= a < n for a, n in zip(q, shape, strict=True)):
                out.append((int(flat[p]), int(flat[q]), float(forward[k][p])))
                out.append((int(flat[q]), int(flat[p]), float(backward[k][p])))
    return out


def cut_costs(
    terminal: np.ndarray, arc_list: list[tuple[int, int, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Every sink side (rows of a bool ``(2^n, n)`` table) and the capacity of its cut."""
    t = terminal.ravel()
    n = t.size
    sides = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    cost = np.where(sides, np.maximum(t, 0.0), np.maximum(-t, 0.0)).sum(axis=1)
    for tail, head, capacity in arc_list:
        cost += capacity * (~sides[:, tail] & sides[:, head])
    return sides, cost


def random_problem(
    rng: np.random.Generator, shape: tuple[int, ...], integer: bool
) -> tuple[np.ndarray, list[Offset], np.ndarray, np.ndarray]:
    choices = all_offsets(len(shape))
    count = int(rng.integers(1, 5))
    offsets = [choices[i] for i in rng.integers(0, len(choices), size=count)]

    def draw(size: tuple[int, ...], low: float) -> np.ndarray:
        if integer:
            return rng.integers(int(low), 6, size=size).astype(np.float64)
        return rng.uniform(low, 5.0, size=size)

    terminal = draw(shape, -5.0)
    forward = np.maximum(draw((count, *shape), -2.0), 0.0)  # about a third of the arcs absent
    backward = np.maximum(draw((count, *shape), -2.0), 0.0)
    return terminal, offsets, forward, backward


SHAPES = [(3, 4), (2, 5), (1, 6), (4, 3), (2, 2, 3), (2, 3, 2), (1, 2, 5), (3, 1, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(6))
def test_integer_capacities_give_the_smallest_minimum_cut(
    shape: tuple[int, ...], seed: int
) -> None:
    # Integer capacities keep the flow exact, so ties between cuts are real ties.
    rng = np.random.default_rng([seed, len(shape), *shape])
    terminal, offsets, forward, backward = random_problem(rng, shape, integer=True)
    sides, cost = cut_costs(terminal, arcs(shape, offsets, forward, backward))
    sink, flow = grid_min_cut(terminal, offsets, forward, backward)
    assert sink.dtype == np.bool_ and sink.shape == shape
    assert flow == cost.min()
    minimal = np.logical_and.reduce(sides[cost == cost.min()], axis=0)  # every min cut's sink side
    np.testing.assert_array_equal(sink.ravel(), minimal)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(4))
def test_real_capacities_give_a_minimum_cut(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng([seed, 7, *shape])
    terminal, offsets, forward, backward = random_problem(rng, shape, integer=False)
    sides, cost = cut_costs(terminal, arcs(shape, offsets, forward, backward))
    sink, flow = grid_min_cut(terminal, offsets, forward, backward)
    assert flow == pytest.approx(cost.min(), rel=1e-12, abs=1e-12)
    row = int((sink.ravel().astype(np.int64) << np.arange(sink.size)).sum())
    assert cost[row] == pytest.approx(cost.min(), rel=1e-12, abs=1e-12)
    # Continuous random capacities have no ties: the minimum cut is unique.
    best = sides[cost <= cost.min() * (1 + 1e-12) + 1e-12]
    np.testing.assert_array_equal(sink.ravel(), np.logical_and.reduce(best, axis=0))


def test_float32_inputs_and_array_offsets() -> None:
    terminal = np.array([[5.0, 0.0, -4.0]], dtype=np.float32)
    forward = np.array([[[2.0, 3.0, 0.0]]], dtype=np.float32)
    sink, flow = grid_min_cut(terminal, np.array([[0, 1]]), forward, np.zeros_like(forward))
    assert sink.tolist() == [[False, True, True]]
    assert flow == 2.0


def test_repeated_offsets_add_parallel_arcs_up_to_the_limit() -> None:
    # 126 copies of offset (0, 1) with capacity 1 between a source pixel and a sink pixel; the
    # reverse arcs (backward) run sink pixel -> source pixel and carry nothing.
    terminal = np.array([[200.0, -200.0]])
    forward = np.zeros((126, 1, 2))
    forward[:, 0, 0] = 1.0
    sink, flow = grid_min_cut(terminal, [(0, 1)] * 126, forward, np.ones_like(forward))
    assert flow == 126.0
    assert sink.tolist() == [[False, True]]


def test_no_offsets() -> None:
    terminal = np.array([[1.0, -2.0], [0.0, -0.5]])
    empty = np.zeros((0, 2, 2))
    sink, flow = grid_min_cut(terminal, [], empty, empty)
    assert flow == 0.0
    assert sink.tolist() == [[False, True], [False, True]]


def _pymaxflow(
    terminal: np.ndarray, offsets: list[Offset], forward: np.ndarray, backward: np.ndarray
) -> tuple[np.ndarray, float]:
    maxflow = pytest.importorskip("maxflow")
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(terminal.shape)
    for k, offset in enumerate(offsets):
        for step, weights in ((offset, forward[k]), (tuple(-o for o in offset), None)):
            structure = np.zeros((3,) * terminal.ndim)
            structure[tuple(1 + s for s in step)] = 1.0
            if weights is None:  # the arc q -> p, weight stored at p = q - offset
                source, target = edge_slices(offset, terminal.shape)
                weights = np.zeros(terminal.shape)
                weights[target] = backward[k][source]
            graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=False)
    graph.add_grid_tedges(nodes, np.maximum(terminal, 0.0), np.maximum(-terminal, 0.0))
    flow = graph.maxflow()
    return np.asarray(graph.get_grid_segments(nodes)), float(flow)


def smooth_image(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Blobs: a random image averaged over a few shifts, so that it has regions and edges."""
    image = rng.random(shape)
    for axis in range(len(shape)):
        for _ in range(4):
            image = (image + np.roll(image, 1, axis=axis)) / 2
    return image


@pytest.mark.slow
def test_512_square_with_four_offsets_matches_pymaxflow() -> None:
    rng = np.random.default_rng(3)
    image = smooth_image(rng, (512, 512))
    offsets: list[Offset] = [(0, 1), (1, -1), (1, 0), (1, 1)]
    forward = np.zeros((4, 512, 512))
    for k, offset in enumerate(offsets):
        source, target = edge_slices(offset, image.shape)
        forward[k][source] = 2.0 * np.exp(-50.0 * (image[source] - image[target]) ** 2)
    terminal = 4.0 * (image - image.mean()) / image.std() + rng.normal(0.0, 1.0, image.shape)
    sink, flow = grid_min_cut(terminal, offsets, forward, forward)
    reference_sink, reference_flow = _pymaxflow(terminal, offsets, forward, forward)
    assert flow == pytest.approx(reference_flow, rel=1e-9)
    assert (sink != reference_sink).sum() <= 10  # round-off ties only
    assert 0.2 < sink.mean() < 0.8  # a real cut, not a trivial one


@pytest.mark.parametrize("shape", [(40, 50), (12, 14, 16)])
def test_integer_capacities_match_pymaxflow_exactly(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    offsets = all_offsets(len(shape))[: 2 * len(shape) + 1]
    terminal = rng.integers(-20, 21, size=shape).astype(np.float64)
    forward = rng.integers(0, 9, size=(len(offsets), *shape)).astype(np.float64)
    backward = rng.integers(0, 9, size=(len(offsets), *shape)).astype(np.float64)
    sink, flow = grid_min_cut(terminal, offsets, forward, backward)
    reference_sink, reference_flow = _pymaxflow(terminal, offsets, forward, backward)
    assert flow == reference_flow
    np.testing.assert_array_equal(sink, reference_sink)


def _good() -> dict[str, Any]:
    return {
        "terminal": np.zeros((3, 4)),
        "offsets": [(0, 1), (1, 0)],
        "forward": np.ones((2, 3, 4)),
        "backward": np.ones((2, 3, 4)),
    }


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"terminal": [[0.0, 1.0]]}, TypeError, "terminal must be a float32 or float64"),
        ({"terminal": np.zeros((3, 4), np.int64)}, TypeError, "terminal must be a float32"),
        ({"forward": np.ones((2, 3, 4), np.float16)}, TypeError, "forward must be a float32"),
        ({"backward": None}, TypeError, "backward must be a float32"),
        ({"terminal": np.zeros(12)}, ValueError, "terminal must be 2D or 3D"),
        ({"terminal": np.zeros((1, 2, 3, 4))}, ValueError, "terminal must be 2D or 3D"),
        ({"offsets": 3}, TypeError, "offsets must be a sequence"),
        ({"offsets": "01"}, TypeError, "offsets must be a sequence"),
        ({"offsets": np.array([[0.0, 1.0], [1.0, 0.0]])}, TypeError, "integer array"),
        ({"offsets": np.array([0, 1])}, ValueError, r"an offsets array must be \(K, 2\)"),
        ({"offsets": [(0, 1), 1]}, TypeError, r"offsets\[1\] must be a sequence"),
        ({"offsets": [(0, 1), (1.0, 0)]}, TypeError, r"offsets\[1\] must hold ints"),
        ({"offsets": [(0, 1), (True, 0)]}, TypeError, r"offsets\[1\] must hold ints"),
        ({"offsets": [(0, 1), (1, 0, 0)]}, ValueError, r"offsets\[1\] must have 2 entries"),
        ({"offsets": [(0, 1), (2, 0)]}, ValueError, r"offsets\[1\] steps must each be -1, 0"),
        ({"offsets": [(0, -2), (1, 0)]}, ValueError, r"offsets\[0\] steps"),
        ({"offsets": [(0, 0), (1, 0)]}, ValueError, r"offsets\[0\] must not be all zero"),
        ({"offsets": [(0, 1)]}, ValueError, r"forward must have shape \(len\(offsets\)"),
        ({"offsets": [(0, 1)] * 127}, ValueError, "at most 126 offsets, got 127"),
        ({"forward": np.ones((2, 4, 3))}, ValueError, "forward must have shape"),
        ({"backward": np.ones((2, 3, 4, 1))}, ValueError, "backward must have shape"),
        ({"terminal": np.full((3, 4), np.nan)}, ValueError, "terminal must be finite"),
        ({"terminal": np.full((3, 4), -np.inf)}, ValueError, "terminal must be finite"),
        ({"forward": -np.ones((2, 3, 4))}, ValueError, "forward capacities must be finite and"),
        ({"forward": np.full((2, 3, 4), np.inf)}, ValueError, "forward capacities"),
        ({"backward": np.full((2, 3, 4), np.nan)}, ValueError, "backward capacities"),
    ],
)
def test_bad_arguments_are_named(change: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        grid_min_cut(**{**_good(), **change})


def test_a_negative_capacity_on_an_ignored_entry_is_still_refused() -> None:
    args = _good()
    args["forward"][0, :, -1] = -1.0  # (0, 1) from the last column leaves the grid
    with pytest.raises(ValueError, match="forward capacities"):
        grid_min_cut(**args)


def test_non_contiguous_and_byte_swapped_inputs() -> None:
    rng = np.random.default_rng(0)
    terminal = rng.normal(size=(6, 8))
    forward = rng.random((2, 6, 8))
    backward = rng.random((2, 6, 8))
    expected = grid_min_cut(terminal, [(0, 1), (1, 0)], forward, backward)
    got = grid_min_cut(
        np.asfortranarray(terminal).astype(">f8"),
        [(0, 1), (1, 0)],
        forward[:, ::-1][:, ::-1],
        np.asfortranarray(backward),
    )
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1]
