"""medrefine: turn a pre-trained segmentation network into an interactive one.

Packages: ``engine`` (Session, the refine loop and what keeps it safe), ``kernels`` (the C++
kernels behind checked facades), ``models`` (splitting networks, the zoo), ``onnx`` (ONNX graphs
in and out), ``backends`` (who runs the frozen backbone), ``io`` (files), ``site`` (learning
across images), ``client`` (:class:`RemoteSession`, over gRPC), ``serve`` (``medrefine serve``),
``eval`` (the simulated user, metrics, baselines, the accuracy bench; never imported by the core),
``benchmarks`` (``medrefine bench``), ``cli``.

Names are imported on first use (PEP 562): ``import medrefine`` loads nothing heavy, and
``import medrefine.client`` needs no PyTorch. Optional parts and their extras:
:mod:`medrefine.extras`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place; pyproject.toml and cpp/client/CMakeLists.txt read it

if TYPE_CHECKING:
    from medrefine import errors
    from medrefine.client import RemoteSession
    from medrefine.engine.budget.limits import SessionLimits
    from medrefine.engine.config import (
        GateConfig,
        LoopConfig,
        MarksConfig,
        ObjectiveConfig,
        PropagateConfig,
        RefineConfig,
    )
    from medrefine.engine.session.session import Session
    from medrefine.errors import (
        CancelledError,
        InputError,
        MedrefineError,
        MissingExtraError,
        NotFoundError,
        NumericalError,
        ResourceError,
        StateError,
        UnsupportedModelError,
    )
    from medrefine.models import Preprocessing, SplitModel, list_models, load_model
    from medrefine.records import SiteVersion
    from medrefine.samples import list_samples, load_sample
    from medrefine.session_like import SessionLike
    from medrefine.site import Site, SiteConfig
    from medrefine.types import (
        Box,
        ClassChange,
        Click,
        Mark,
        Paint,
        RefineProgress,
        RefineResult,
        Scribble,
        Volume,
    )

#: Each public name and the module it is imported from on first use.
_EXPORTS: dict[str, str] = {
    # marks, images, results (numpy only)
    "Box": "medrefine.types",
    "Click": "medrefine.types",
    "Mark": "medrefine.types",
    "Paint": "medrefine.types",
    "Scribble": "medrefine.types",
    "Volume": "medrefine.types",
    "RefineResult": "medrefine.types",
    "RefineProgress": "medrefine.types",
    "ClassChange": "medrefine.types",
    "SiteVersion": "medrefine.records",
    "SessionLike": "medrefine.session_like",
    # sessions
    "Session": "medrefine.engine.session.session",
    "RemoteSession": "medrefine.client",
    "SessionLimits": "medrefine.engine.budget.limits",
    # settings: RefineConfig and its sections
    "RefineConfig": "medrefine.engine.config",
    "LoopConfig": "medrefine.engine.config",
    "ObjectiveConfig": "medrefine.engine.config",
    "MarksConfig": "medrefine.engine.config",
    "GateConfig": "medrefine.engine.config",
    "PropagateConfig": "medrefine.engine.config",
    # models, samples, sites
    "Preprocessing": "medrefine.models",
    "SplitModel": "medrefine.models",
    "list_models": "medrefine.models",
    "load_model": "medrefine.models",
    "list_samples": "medrefine.samples",
    "load_sample": "medrefine.samples",
    "Site": "medrefine.site",
    "SiteConfig": "medrefine.site",
    # errors
    "MedrefineError": "medrefine.errors",
    "InputError": "medrefine.errors",
    "StateError": "medrefine.errors",
    "NotFoundError": "medrefine.errors",
    "ResourceError": "medrefine.errors",
    "UnsupportedModelError": "medrefine.errors",
    "CancelledError": "medrefine.errors",
    "NumericalError": "medrefine.errors",
    "MissingExtraError": "medrefine.errors",
}

#: Submodules reachable as attributes (``medrefine.kernels``) without importing them first.
_SUBMODULES = frozenset(
    {
        "backends",
        "client",
        "data",
        "engine",
        "errors",
        "extras",
        "io",
        "kernels",
        "models",
        "onnx",
        "records",
        "samples",
        "session_like",
        "site",
        "types",
    }
)

#: Names exported here before, and where they live now.
_MOVED: dict[str, str] = {
    "FeatureCache": "medrefine.engine.budget.cache",
    "Interaction": "medrefine.records",
    "region_grow": "medrefine.kernels",
    "geodesic_distance": "medrefine.kernels",
    "model_card": "medrefine.models",
}

__all__ = [
    "Box",
    "CancelledError",
    "ClassChange",
    "Click",
    "GateConfig",
    "InputError",
    "LoopConfig",
    "Mark",
    "MarksConfig",
    "MedrefineError",
    "MissingExtraError",
    "NotFoundError",
    "NumericalError",
    "ObjectiveConfig",
    "Paint",
    "Preprocessing",
    "PropagateConfig",
    "RefineConfig",
    "RefineProgress",
    "RefineResult",
    "RemoteSession",
    "ResourceError",
    "Scribble",
    "Session",
    "SessionLike",
    "SessionLimits",
    "Site",
    "SiteConfig",
    "SiteVersion",
    "SplitModel",
    "StateError",
    "UnsupportedModelError",
    "Volume",
    "errors",
    "list_models",
    "list_samples",
    "load_model",
    "load_sample",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first use, then keep it here."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _MOVED:
        raise AttributeError(
            f"medrefine.{name} is no longer exported at the top level: "
            f"from {_MOVED[name]} import {name}"
        )
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
