"""The alpha-expansion solver behind the graph-cut baseline, against brute force on tiny grids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medrefine.eval.baselines._expansion import (
    GridEdges,
    alpha_expansion,
    edge_slices,
    potts_energy,
)

SHAPE = (2, 4)
OFFSETS = [(0, 1), (1, -1), (1, 0), (1, 1)]


def random_energy(seed: int, num_labels: int) -> tuple[np.ndarray, list[GridEdges]]:
    rng = np.random.default_rng(seed)
    unary = rng.random((num_labels, *SHAPE)) * 2.0
    edges = []
    for offset in OFFSETS:
        weight = np.zeros(SHAPE)
        weight[edge_slices(offset, SHAPE)[0]] = rng.random(SHAPE)[edge_slices(offset, SHAPE)[0]]
        edges.append(GridEdges(offset, weight))
    return unary, edges


def brute_force_minimum(unary: np.ndarray, edges: list[GridEdges]) -> float:
    labellings = itertools.product(range(unary.shape[0]), repeat=int(np.prod(SHAPE)))
    return min(
        potts_energy(np.array(f, dtype=np.intp).reshape(SHAPE), unary, edges) for f in labellings
    )


def test_edge_slices_pair_each_pixel_with_its_neighbour() -> None:
    source, target = edge_slices((1, -1), (3, 4))
    grid = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(grid[source], [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_array_equal(grid[target], [[4, 5, 6], [8, 9, 10]])


def test_potts_energy_counts_cut_edges() -> None:
    unary = np.zeros((2, 1, 3))
    unary[1] = 0.5
    weight = np.array([[1.0, 2.0, 0.0]])
    labels = np.array([[0, 1, 1]], dtype=np.intp)
    assert potts_energy(labels, unary, [GridEdges((0, 1), weight)]) == pytest.approx(2 * 0.5 + 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_two_labels_reach_the_exact_minimum(seed: int) -> None:
    unary, edges = random_energy(seed, num_labels=2)
    labels = alpha_expansion(unary, edges, np.zeros(SHAPE, dtype=np.intp), max_cycles=5)
    assert potts_energy(labels, unary, edges) == pytest.approx(brute_force_minimum(unary, edges))


@pytest.mark.parametrize("seed", range(3))
def test_three_labels_within_the_expansion_bound(seed: int) -> None:
    unary, edges = random_energy(seed, num_labels=3)
    initial = np.zeros(SHAPE, dtype=np.intp)
    labels = alpha_expansion(unary, edges, initial, max_cycles=5)
    energy = potts_energy(labels, unary, edges)
    optimum = brute_force_minimum(unary, edges)
    assert energy <= potts_energy(initial, unary, edges)
    assert optimum - 1e-9 <= energy <= 2 * optimum  # Potts: local minimum within 2x optimum
