"""Nearest-seed geodesic distance (GeoS-style), 2D and 3D.

Every pixel takes the class of the geodesically nearest seed. The geodesic length of a path is
``integral of (1 + lambda * |grad I_s|) ds``, where ``I_s`` is the image normalised to ``[0, 1]``
and smoothed with a Gaussian of ``sigma`` pixels: crossing an edge of contrast ``dI`` costs about
``lambda * dI`` pixels of extra length. Distances are minimum-cost paths on the 8-neighbour (2D) /
26-neighbour (3D) grid with true step lengths (1, sqrt 2, sqrt 3), computed by scikit-image's
``MCP_Geometric`` (Dijkstra), one run per seeded class.

FastGeodis, the usual library for this, ships only a source distribution whose build imports
torch and ``pkg_resources`` (gone from setuptools >= 81): a plain ``pip install FastGeodis`` fails
in a clean environment, so it cannot be a dependency. scikit-image ships wheels and is already a
dependency of medrefine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from skimage.graph import MCP_Geometric

from medrefine_lab.eval.baselines.base import (
    FloatArray,
    SeedBaseline,
    SeedProblem,
    gradient_magnitude,
    seed_mask,
)


@dataclass(frozen=True)
class GeodesicNearestSeed(SeedBaseline):
    """Each pixel gets the class of its geodesically nearest seed.

    Attributes:
        sigma: Gaussian smoothing (pixels) before the gradient; 2 per the protocol notes.
        edge_weight: lambda, extra path length (pixels) per unit of normalised intensity change.
            On 8 DSB training images (two seed sets each) mean Dice rose from 0.27 (10) through
            0.59 (100) to 0.74 (1000) and stayed there up to 10000.
    """

    name: ClassVar[str] = "geodesic"
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)

    sigma: float = 2.0
    edge_weight: float = 1000.0

    def _segment(self, problem: SeedProblem) -> NDArray[np.integer]:
        cost = 1.0 + self.edge_weight * gradient_magnitude(problem.image, self.sigma)
        distances = np.stack(
            [geodesic_distance(cost, seed_mask(problem, c)) for c in problem.classes]
        )
        # argmin keeps the first minimum: ties go to the lowest seeded class.
        return np.asarray(problem.classes, dtype=np.int32)[np.argmin(distances, axis=0)]


def geodesic_distance(cost: FloatArray, sources: NDArray[np.bool_]) -> FloatArray:
    """Minimum path cost from any ``sources`` pixel to every pixel.

    Args:
        cost: float ``(*spatial)``, positive cost per unit length at each pixel.
        sources: bool ``(*spatial)``, at least one True.

    Returns:
        float64 ``(*spatial)``; 0 on the sources.
    """
    starts = np.argwhere(sources)
    mcp = MCP_Geometric(cost, fully_connected=True)
    distance, _ = mcp.find_costs(starts=[tuple(p) for p in starts])
    return np.asarray(distance, dtype=np.float64)
