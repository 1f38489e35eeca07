"""Classical seed-based interactive segmentation baselines, behind one interface.

Every method implements :class:`SeedMethod`: ``segment(image, seeds, num_classes)`` takes a 2D
``(H, W)`` grey, ``(3, H, W)`` RGB or 3D ``(D, H, W)`` image and int seeds of the spatial shape
(0 = none, ``c + 1`` = class ``c``) and returns an int32 label mask; see
:mod:`medrefine_lab.eval.baselines.base` for the full contract. Methods are named in
:data:`BASELINES`; build one with :func:`get_baseline`::

    method = get_baseline("graphcut")
    mask = method.segment(image, seeds, num_classes=2)

| name          | library                      | spatial dims |
|---------------|------------------------------|--------------|
| grabcut       | OpenCV                       | 2            |
| geodesic      | scikit-image (MCP_Geometric) | 2, 3         |
| graphcut      | medrefine.kernels (C++)      | 2, 3         |
| random_walker | scikit-image                 | 2, 3 (small) |
| watershed     | SimpleITK                    | 2, 3         |
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medrefine.errors import NotFoundError
from medrefine_lab.eval.baselines.base import SeedBaseline, SeedMethod, SeedProblem

if TYPE_CHECKING:
    from medrefine_lab.eval.baselines.geodesic import GeodesicNearestSeed
    from medrefine_lab.eval.baselines.grabcut import GrabCut
    from medrefine_lab.eval.baselines.graphcut import BoykovJollyGraphCut
    from medrefine_lab.eval.baselines.random_walker import RandomWalker
    from medrefine_lab.eval.baselines.watershed import MarkerWatershed

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

#: Where each method lives: name -> (module, class). A module is imported on first use only, so
#: OpenCV and SimpleITK (dependencies of the lab) are needed only by the
#: methods that use them.
_WHERE: dict[str, tuple[str, str]] = {
    "grabcut": ("medrefine_lab.eval.baselines.grabcut", "GrabCut"),
    "geodesic": ("medrefine_lab.eval.baselines.geodesic", "GeodesicNearestSeed"),
    "graphcut": ("medrefine_lab.eval.baselines.graphcut", "BoykovJollyGraphCut"),
    "random_walker": ("medrefine_lab.eval.baselines.random_walker", "RandomWalker"),
    "watershed": ("medrefine_lab.eval.baselines.watershed", "MarkerWatershed"),
}


def _load(module: str, cls: str) -> Any:
    return getattr(importlib.import_module(module), cls)


def _factory(module: str, cls: str) -> Callable[[], SeedMethod]:
    """A factory that imports ``module`` when first called."""

    def build() -> SeedMethod:
        method: SeedMethod = _load(module, cls)()
        return method

    build.__name__ = cls
    return build


#: Registry: name -> factory of the method with its default settings (imports on first call).
BASELINES: dict[str, Callable[[], SeedMethod]] = {
    name: _factory(*where) for name, where in _WHERE.items()
}


def __getattr__(name: str) -> Any:
    """The method classes, imported on first access (``baselines.GrabCut`` needs OpenCV)."""
    for module, cls in _WHERE.values():
        if cls == name:
            return _load(module, cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
