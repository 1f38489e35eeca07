"""Alpha-expansion (Boykov, Veksler, Zabih 2001) for a contrast-sensitive Potts energy on a grid.

Energy of a labelling ``f`` (label indices ``0..L-1`` over a ``(*spatial)`` grid)::

    E(f) = sum_p unary[f_p, p] + sum_(p, q) w_pq * [f_p != f_q]

with one non-negative weight per grid edge. ``maxflow.fastmin.aexpansion_grid`` only takes a
label-by-label pairwise table shared by every edge, so each expansion move is built here as a
binary graph cut (PyMaxflow): variable ``x_p = 1`` (sink side) means "p switches to alpha".
For an edge with current labels ``(a, b)`` the move energy has ``E00 = w[a != b]``,
``E01 = w[a != alpha]``, ``E10 = w[alpha != b]``, ``E11 = 0``, which is submodular because the
Potts model is a metric; it is written as ``E00 + (E10 - E00) x_p - E10 x_q +
(E01 + E10 - E00) (1 - x_p) x_q``, the last term being the capacity of the edge ``p -> q``.
"""

from __future__ import annotations

from dataclasses import dataclass

import maxflow
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@dataclass(frozen=True)
class GridEdges:
    """The grid edges ``p -> p + offset`` of one neighbour offset.

    Attributes:
        offset: neighbour offset in array order (2D ``(dy, dx)``, 3D ``(dz, dy, dx)``), each -1..1.
        weight: float64 ``(*spatial)``; ``weight[p]`` belongs to the edge ``(p, p + offset)``
            and is 0 where ``p + offset`` falls outside the grid.
    """

    offset: tuple[int, ...]
    weight: FloatArray

    def slices(self) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """See :func:`edge_slices`."""
        return edge_slices(self.offset, self.weight.shape)


def edge_slices(
    offset: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index of the edge sources ``p`` and of their targets ``p + offset`` inside a grid."""
    pairs = list(zip(offset, shape, strict=True))
    source = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in pairs)
    target = tuple(slice(max(o, 0), n - max(-o, 0)) for o, n in pairs)
    return source, target


def potts_energy(labels: IndexArray, unary: FloatArray, edges: list[GridEdges]) -> float:
    """``E(labels)``; ``unary`` is ``(L, *spatial)``, ``labels`` integer ``(*spatial)``."""
    data = np.take_along_axis(unary, labels[np.newaxis], axis=0).sum()
    smooth = 0.0
    for edge in edges:
        source, target = edge.slices()
        smooth += float((edge.weight[source] * (labels[source] != labels[target])).sum())
    return float(data) + smooth


def alpha_expansion(
    unary: FloatArray, edges: list[GridEdges], initial: IndexArray, max_cycles: int
) -> IndexArray:
    """Minimise :func:`potts_energy` by expansion moves, starting from ``initial``.

    Labels are visited in the order ``1, ..., L-1, 0`` (the initial labelling is meant to be
    mostly label 0, whose expansion then changes nothing). It stops after ``max_cycles`` passes
    or at a local minimum (no expansion of any label lowers the energy). With two labels and an
    ``initial`` labelling of label 0 (except where hard constraints say otherwise) the first move
    already reaches the exact minimum.

    Returns:
        intp ``(*spatial)`` labelling (a new array).
    """
    labels = initial.astype(np.intp, copy=True)
    energy = potts_energy(labels, unary, edges)
    num_labels = unary.shape[0]
    untried = num_labels  # moves still to try before the current labelling is a local minimum
    for _ in range(max_cycles):
        for alpha in (*range(1, num_labels), 0):
            proposal = expansion_move(labels, alpha, unary, edges)
            new_energy = potts_energy(proposal, unary, edges)
            if new_energy < energy - 1e-9 * max(1.0, abs(energy)):
                # Expanding alpha again right away cannot help: the others remain.
                labels, energy, untried = proposal, new_energy, num_labels - 1
            else:
                untried -= 1
            if untried == 0:
                return labels
    return labels


def expansion_move(
    labels: IndexArray, alpha: int, unary: FloatArray, edges: list[GridEdges]
) -> IndexArray:
    """The optimal alpha-expansion of ``labels``, by one min cut."""
    current = np.take_along_axis(unary, labels[np.newaxis], axis=0)[0]
    linear = unary[alpha] - current  # cost of x_p = 1 relative to x_p = 0
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(labels.shape)
    for edge in edges:
        source, target = edge.slices()
        weight = edge.weight[source]
        a, b = labels[source], labels[target]
        e00 = weight * (a != b)
        e01 = weight * (a != alpha)
        e10 = weight * (b != alpha)
        linear[source] += e10 - e00
        linear[target] -= e10
        capacity = np.zeros(labels.shape, dtype=np.float64)
        capacity[source] = e01 + e10 - e00
        graph.add_grid_edges(
            nodes, weights=capacity, structure=_structure(edge.offset), symmetric=False
        )
    graph.add_grid_tedges(nodes, np.maximum(linear, 0.0), np.maximum(-linear, 0.0))
    graph.maxflow()
    switch = graph.get_grid_segments(nodes)
    return np.where(switch, alpha, labels)


def _structure(offset: tuple[int, ...]) -> NDArray[np.float64]:
    """A 3^n PyMaxflow structure with one edge, from the centre to ``centre + offset``."""
    structure = np.zeros((3,) * len(offset), dtype=np.float64)
    structure[tuple(1 + o for o in offset)] = 1.0
    return structure
