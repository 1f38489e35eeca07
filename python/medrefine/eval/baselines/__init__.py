"""Classical seed-based interactive segmentation baselines, behind one interface.

Every method implements :class:`SeedMethod`: ``segment(image, seeds, num_classes)`` takes a 2D
``(H, W)`` grey, ``(3, H, W)`` RGB or 3D ``(D, H, W)`` image and int seeds of the spatial shape
(0 = none, ``c + 1`` = class ``c``) and returns an int32 label mask; see
:mod:`medrefine.eval.baselines.base` for the full contract. Methods are named in
:data:`BASELINES`; build one with :func:`get_baseline`::

    method = get_baseline("graphcut")
    mask = method.segment(image, seeds, num_classes=2)

| name          | library                      | spatial dims |
|---------------|------------------------------|--------------|
| grabcut       | OpenCV                       | 2            |
| geodesic      | scikit-image (MCP_Geometric) | 2, 3         |
| graphcut      | PyMaxflow                    | 2, 3         |
| random_walker | scikit-image                 | 2, 3 (small) |
| watershed     | SimpleITK                    | 2, 3         |
"""

from __future__ import annotations

from collections.abc import Callable

from medrefine.errors import NotFoundError
from medrefine.eval.baselines.base import SeedBaseline, SeedMethod, SeedProblem
from medrefine.eval.baselines.geodesic import GeodesicNearestSeed
from medrefine.eval.baselines.grabcut import GrabCut
from medrefine.eval.baselines.graphcut import BoykovJollyGraphCut
from medrefine.eval.baselines.random_walker import RandomWalker
from medrefine.eval.baselines.watershed import MarkerWatershed

__all__ = [
    "BASELINES",
    "BoykovJollyGraphCut",
    "GeodesicNearestSeed",
    "GrabCut",
    "MarkerWatershed",
    "RandomWalker",
    "SeedBaseline",
    "SeedMethod",
    "SeedProblem",
    "get_baseline",
]

#: Registry: name -> factory of the method with its default settings.
BASELINES: dict[str, Callable[[], SeedMethod]] = {
    GrabCut.name: GrabCut,
    GeodesicNearestSeed.name: GeodesicNearestSeed,
    BoykovJollyGraphCut.name: BoykovJollyGraphCut,
    RandomWalker.name: RandomWalker,
    MarkerWatershed.name: MarkerWatershed,
}


def get_baseline(name: str) -> SeedMethod:
    """Build the baseline registered as ``name`` with its default settings.

    Raises:
        NotFoundError (a KeyError): ``name`` is not registered; the message lists the choices.
    """
    try:
        factory = BASELINES[name]
    except KeyError:
        choices = ", ".join(sorted(BASELINES))
        raise NotFoundError(f"unknown baseline {name!r}; choose one of: {choices}") from None
    return factory()
