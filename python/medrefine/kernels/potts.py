"""Alpha-expansion (Boykov, Veksler, Zabih 2001) for a contrast-sensitive Potts energy on a grid.

Energy of a labelling ``f`` (label indices ``0..L-1`` over a 2D ``(H, W)`` or 3D ``(D, H, W)``
grid)::

    E(f) = sum_p unary[f_p, p] + sum_(p, q) w_pq * [f_p != f_q]

with one non-negative weight per grid edge. Each expansion move is one binary min cut
(:func:`medrefine.kernels.grid_min_cut`): variable ``x_p = 1`` (sink side) means "p switches to
alpha". For an edge with current labels ``(a, b)`` the move energy has ``E00 = w[a != b]``,
``E01 = w[a != alpha]``, ``E10 = w[alpha != b]``, ``E11 = 0``, which is submodular because the
Potts model is a metric; it is written as ``E00 + (E10 - E00) x_p - E10 x_q +
(E01 + E10 - E00) (1 - x_p) x_q``, the last term being the capacity of the arc ``p -> q``.

:func:`contrast_edges` gives the usual contrast-sensitive weights of an image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medrefine.kernels.mincut import grid_min_cut

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
    """Index of the edge sources ``p`` and of their targets ``p + offset`` inside a grid of
    ``shape`` (both index arrays of the same shape, in the axis order of ``shape``)."""
    pairs = list(zip(offset, shape, strict=True))
    source = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in pairs)
    target = tuple(slice(max(o, 0), n - max(-o, 0)) for o, n in pairs)
    return source, target


def potts_energy(labels: IndexArray, unary: FloatArray, edges: list[GridEdges]) -> float:
    """``E(labels)``; ``unary`` is float64 ``(L, *spatial)``, ``labels`` integer ``(*spatial)``."""
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

    Args:
        unary: float64 ``(L, *spatial)``, the cost of each label at each pixel.
        edges: the pairwise weights, one :class:`GridEdges` per neighbour offset.
        initial: integer ``(*spatial)`` labels in ``0..L-1``.
        max_cycles: passes over the labels.

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
    """The optimal alpha-expansion of ``labels`` (intp ``(*spatial)``), by one min cut.

    Returns:
        intp ``(*spatial)``: ``alpha`` where switching lowers the energy, ``labels`` elsewhere.
    """
    current = np.take_along_axis(unary, labels[np.newaxis], axis=0)[0]
    linear = unary[alpha] - current  # cost of x_p = 1 relative to x_p = 0
    forward = np.zeros((len(edges), *labels.shape), dtype=np.float64)
    for k, edge in enumerate(edges):
        source, target = edge.slices()
        weight = edge.weight[source]
        a, b = labels[source], labels[target]
        e00 = weight * (a != b)
        e01 = weight * (a != alpha)
        e10 = weight * (b != alpha)
        linear[source] += e10 - e00
        linear[target] -= e10
        forward[k][source] = e01 + e10 - e00
    # x_p = 1 costs max(linear, 0) (arc source -> p cut), x_p = 0 costs max(-linear, 0).
    switch, _ = grid_min_cut(
        linear, [edge.offset for edge in edges], forward, np.zeros_like(forward)
    )
    return np.where(switch, alpha, labels)


def contrast_edges(image: FloatArray, smoothness: float) -> list[GridEdges]:
    """Contrast-sensitive Potts weights for the 8- (2D) or 6-neighbourhood (3D) of a grid.

    ``w_pq = smoothness * exp(-beta * |I_p - I_q|^2) / dist(p, q)`` with
    ``beta = 1 / (2 <|I_p - I_q|^2>)`` over all edges and ``dist`` the Euclidean step length.

    Args:
        image: float ``(C, *spatial)``, channels first, then ``(H, W)`` or ``(D, H, W)``.
        smoothness: overall weight.

    Returns:
        One :class:`GridEdges` per neighbour offset (each undirected edge once): in 2D the
        offsets ``(0, 1), (1, -1), (1, 0), (1, 1)``, in 3D ``(0, 0, 1), (0, 1, 0), (1, 0, 0)``.
    """
    ndim = image.ndim - 1
    max_step = 2 if ndim == 2 else 1
    offsets = [
        o
        for o in itertools.product((-1, 0, 1), repeat=ndim)
        if o > (0,) * ndim and sum(map(abs, o)) <= max_step
    ]
    shape = image.shape[1:]
    squared = []  # |I_p - I_q|^2 over the edges of each offset, summed over channels
    for offset in offsets:
        source, target = edge_slices(offset, shape)
        step = image[(slice(None), *target)] - image[(slice(None), *source)]
        squared.append((step**2).sum(axis=0))
    mean = np.concatenate([s.ravel() for s in squared]).mean()
    beta = 0.5 / mean if mean > 0 else 0.0
    edges = []
    for offset, diff in zip(offsets, squared, strict=True):
        weight = np.zeros(shape, dtype=np.float64)
        weight[edge_slices(offset, shape)[0]] = (
            smoothness * np.exp(-beta * diff) / math.hypot(*offset)
        )
        edges.append(GridEdges(offset, weight))
    return edges
