"""Checked Python facades over the C++ kernels of the private ``_native`` extension.

``region_grow`` (scribble growth) and ``geodesic_distance`` (edge-following distance) validate
dtype, shape and contiguity before calling C++; ``_native`` is never called with unchecked input.
"""

from medrefine.kernels import _native  # noqa: F401  (fails loudly if the extension did not build)
from medrefine.kernels.geodesic import geodesic_distance
from medrefine.kernels.grow import region_grow

__all__ = ["geodesic_distance", "region_grow"]
