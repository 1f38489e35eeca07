"""Boykov-Jolly interactive graph cut (ICCV 2001), 2D and 3D, any number of classes.

Energy over the seeded classes::

    E(f) = sum_p -log P(I_p | f_p) + smoothness * sum_(p, q) exp(-beta * |I_p - I_q|^2) / dist(p, q)

- Data term: each seeded class's intensity (grey) or colour (RGB) model is a joint histogram of
  its seed pixels (``bins`` per channel on the normalised ``[0, 1]`` image), blurred by one bin
  and mixed with 0.1 % of a uniform distribution so that no probability is zero.
- Smoothness: contrast-sensitive Potts; ``beta = 1 / (2 <|I_p - I_q|^2>)`` over all edges (as in
  GrabCut), ``dist`` the Euclidean step length; 8 neighbours in 2D, 6 in 3D (26 would cost about
  four times the memory and time on large volumes).
- Seeds are hard constraints (any other class costs :data:`HARD`).
- Two classes: one exact min cut. More: alpha-expansion. Both run on the C++ min cut
  (:mod:`medrefine.kernels.potts`, :func:`medrefine.kernels.grid_min_cut`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from medrefine.engine.gate.appearance import log_density
from medrefine.kernels.potts import alpha_expansion, contrast_edges
from medrefine_lab.eval.baselines.base import FloatArray, SeedBaseline, SeedProblem, seed_mask

#: Unary cost of violating a seed; far above any sum of smoothness terms around one pixel.
HARD = 1e9


@dataclass(frozen=True)
class BoykovJollyGraphCut(SeedBaseline):
    """Seeded graph cut with histogram likelihoods and a contrast-sensitive Potts prior.

    Attributes:
        smoothness: weight of the pairwise term relative to the negative log-likelihoods.
        bins: histogram bins per channel (grey: ``bins``, RGB: ``bins ** 3`` joint bins).
        max_cycles: alpha-expansion passes over the labels (more than two classes only).
    """

    name: ClassVar[str] = "graphcut"
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)

    smoothness: float = 10.0
    bins: int = 32
    max_cycles: int = 5

    def _segment(self, problem: SeedProblem) -> NDArray[np.integer]:
        unary = self._unaries(problem)
        edges = contrast_edges(problem.image, self.smoothness)
        initial = np.zeros(problem.spatial_shape, dtype=np.intp)
        for index, cls in enumerate(problem.classes):
            initial[seed_mask(problem, cls)] = index
        labels = alpha_expansion(unary, edges, initial, self.max_cycles)
        return np.asarray(problem.classes, dtype=np.int32)[labels]

    def _unaries(self, problem: SeedProblem) -> FloatArray:
        """``(L, *spatial)`` costs, one row per seeded class, seeds as hard constraints."""
        bin_index = joint_bin_index(problem.image, self.bins)
        seeded = problem.seeds > 0
        unary = np.empty((len(problem.classes), *problem.spatial_shape), dtype=np.float64)
        for row, cls in enumerate(problem.classes):
            own = seed_mask(problem, cls)
            nll = histogram_nll(bin_index, own, self.bins, problem.image.shape[0])
            unary[row] = np.where(seeded & ~own, HARD, np.where(own, 0.0, nll))
        return unary


def joint_bin_index(image: FloatArray, bins: int) -> NDArray[np.intp]:
    """Joint histogram bin of each pixel: ``(C, *spatial)`` in ``[0, 1]`` -> intp ``(*spatial)``."""
    per_channel = np.minimum((image * bins).astype(np.intp), bins - 1)
    return np.ravel_multi_index(tuple(per_channel), (bins,) * image.shape[0])


def histogram_nll(
    bin_index: NDArray[np.intp], sample: NDArray[np.bool_], bins: int, channels: int
) -> FloatArray:
    """``-log p(bin)`` for every pixel; ``p`` is the histogram of ``sample``'s bins
    (:func:`medrefine.engine.gate.appearance.log_density`, the model the engine's colour term
    uses)."""
    return -log_density(bin_index[sample], bins, channels)[bin_index]
