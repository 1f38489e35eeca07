"""Checked Python facades over the C++ kernels of the private ``_native`` extension.

``region_grow`` (scribble growth), ``geodesic_distance`` (edge-following distance) and
``grid_min_cut`` (exact s-t min cut of a grid graph) validate dtype, shape and contiguity before
calling C++; ``_native`` is never called with unchecked input. :mod:`medrefine.kernels.potts`
builds the Potts energy's alpha-expansion on ``grid_min_cut``.
"""

from medrefine.kernels import _native  # noqa: F401  (fails loudly if the extension did not build)
from medrefine.kernels.geodesic import geodesic_distance
from medrefine.kernels.grow import region_grow
from medrefine.kernels.mincut import grid_min_cut

__all__ = ["geodesic_distance", "grid_min_cut", "region_grow"]
