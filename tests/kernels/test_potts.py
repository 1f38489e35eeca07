"""The Potts alpha-expansion (medrefine.kernels.potts): against brute force on tiny grids, and the
graph cut baseline built on it against the same expansion moves cut by PyMaxflow."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from medrefine.kernels import potts
from medrefine.kernels.potts import (
    GridEdges,
    alpha_expansion,
    contrast_edges,
    edge_slices,
    potts_energy,
)
from medrefine_lab.eval.baselines import get_baseline

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


def test_contrast_edges_weigh_each_neighbour_pair_once() -> None:
    image = np.zeros((1, 3, 3))
    image[0, :, 2] = 1.0  # a vertical step edge between columns 1 and 2
    edges = contrast_edges(image, smoothness=2.0)
    assert [e.offset for e in edges] == [(0, 1), (1, -1), (1, 0), (1, 1)]
    by_offset = {e.offset: e.weight for e in edges}
    # 20 edges (6 + 4 + 6 + 4), 7 of them across the step (3 + 2 + 0 + 2): <|dI|^2> = 7 / 20,
    # beta = 10 / 7; an edge across weighs 2 exp(-beta) / length, the others 2 / length.
    across = 2.0 * np.exp(-10.0 / 7.0)
    np.testing.assert_allclose(by_offset[(1, 0)][:2], 2.0)
    np.testing.assert_allclose(by_offset[(1, 0)][2], 0.0)  # the next row is outside
    np.testing.assert_allclose(by_offset[(0, 1)][:, 1], across)
    np.testing.assert_allclose(by_offset[(0, 1)][:, 0], 2.0)
    np.testing.assert_allclose(by_offset[(1, 1)][:2, 1], across / np.sqrt(2.0))
    np.testing.assert_allclose(by_offset[(1, -1)][:2, 2], across / np.sqrt(2.0))
    assert [e.offset for e in contrast_edges(np.zeros((1, 2, 2, 2)), 1.0)] == [
        (0, 0, 1),
        (0, 1, 0),
        (1, 0, 0),
    ]


# The graph cut baseline against the same expansion moves cut by PyMaxflow (the implementation it
# had before the C++ min cut): the masks agree up to round-off ties.


def pymaxflow_expansion_move(
    labels: np.ndarray, alpha: int, unary: np.ndarray, edges: list[GridEdges]
) -> np.ndarray:
    maxflow = pytest.importorskip("maxflow")
    current = np.take_along_axis(unary, labels[np.newaxis], axis=0)[0]
    linear = unary[alpha] - current
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(labels.shape)
    for edge in edges:
        source, target = edge.slices()
        weight = edge.weight[source]
        a, b = labels[source], labels[target]
        e00, e01, e10 = weight * (a != b), weight * (a != alpha), weight * (b != alpha)
        linear[source] += e10 - e00
        linear[target] -= e10
        capacity = np.zeros(labels.shape)
        capacity[source] = e01 + e10 - e00
        structure = np.zeros((3,) * labels.ndim)
        structure[tuple(1 + o for o in edge.offset)] = 1.0
        graph.add_grid_edges(nodes, weights=capacity, structure=structure, symmetric=False)
    graph.add_grid_tedges(nodes, np.maximum(linear, 0.0), np.maximum(-linear, 0.0))
    graph.maxflow()
    return np.where(graph.get_grid_segments(nodes), alpha, labels)


def blobs(rng: np.random.Generator, shape: tuple[int, ...], levels: int) -> np.ndarray:
    """A piecewise-constant image of random blobs (``levels`` grey values) plus noise."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=min(shape) / 8)
    ranks = np.argsort(np.argsort(field.ravel())).reshape(shape) * levels // field.size
    return (ranks + 0.5) / levels + rng.normal(0.0, 0.12, shape)


def random_seeds(
    rng: np.random.Generator, image: np.ndarray, num_classes: int, strokes: int
) -> np.ndarray:
    """Short straight strokes of each class, placed where the image level of that class is."""
    levels = np.minimum((image * num_classes).astype(int), num_classes - 1).clip(0)
    seeds = np.zeros(image.shape, dtype=np.int32)
    for cls in range(num_classes):
        where = np.argwhere(levels == cls)
        for start in where[rng.choice(len(where), size=strokes)]:
            axis = int(rng.integers(image.ndim))
            stroke = [slice(int(s), int(s) + 1) for s in start]
            stroke[axis] = slice(int(start[axis]), int(start[axis]) + 3)
            seeds[tuple(stroke)] = cls + 1
    return seeds


@pytest.mark.parametrize(
    ("shape", "num_classes", "seed"),
    [
        ((96, 128), 2, 0),
        ((96, 128), 2, 1),
        ((80, 80), 3, 2),
        ((20, 24, 28), 2, 3),
        ((16, 20, 24), 3, 4),
    ],
)
def test_graphcut_baseline_matches_the_pymaxflow_cut(
    shape: tuple[int, ...], num_classes: int, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("maxflow")
    rng = np.random.default_rng(seed)
    image = blobs(rng, shape, num_classes)
    seeds = random_seeds(rng, image, num_classes, strokes=8)
    method = get_baseline("graphcut")
    ours = method.segment(image, seeds, num_classes=num_classes)
    monkeypatch.setattr(potts, "expansion_move", pymaxflow_expansion_move)
    reference = method.segment(image, seeds, num_classes=num_classes)
    assert len(np.unique(reference)) == num_classes  # a real segmentation, not one class
    assert (ours != reference).sum() <= 3  # round-off ties only
