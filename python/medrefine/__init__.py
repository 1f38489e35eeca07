"""medrefine: turn a pre-trained segmentation network into an interactive one.

Packages: ``engine`` (Session, the refine loop and what keeps it safe), ``kernels`` (the C++
kernels behind checked facades), ``models`` (splitting networks, the zoo), ``onnx`` (ONNX graphs
in and out), ``backends`` (who runs the frozen backbone), ``io`` (files), ``eval`` (the simulated
user, metrics, baselines, the accuracy bench; never imported by the core), ``benchmarks``
(``medrefine bench``), ``cli``.
"""

from medrefine import errors
from medrefine.engine.cache import FeatureCache
from medrefine.engine.history import Interaction
from medrefine.engine.limits import SessionLimits
from medrefine.engine.refine import RefineConfig
from medrefine.engine.session import Session
from medrefine.kernels import geodesic_distance, region_grow
from medrefine.models import Preprocessing, SplitModel, list_models, load_model, model_card
from medrefine.samples import list_samples, load_sample
from medrefine.site import Site, SiteConfig
from medrefine.types import Box, ClassChange, Click, Mark, Paint, RefineResult, Scribble, Volume

__version__ = "0.1.0"

__all__ = [
    "Box",
    "ClassChange",
    "Click",
    "FeatureCache",
    "Interaction",
    "Mark",
    "Paint",
    "Preprocessing",
    "RefineConfig",
    "RefineResult",
    "Scribble",
    "Session",
    "SessionLimits",
    "Site",
    "SiteConfig",
    "SplitModel",
    "Volume",
    "errors",
    "geodesic_distance",
    "list_models",
    "list_samples",
    "load_model",
    "load_sample",
    "model_card",
    "region_grow",
]
