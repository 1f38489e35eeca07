"""medrefine: turn a pre-trained segmentation network into an interactive one."""

from medrefine import _native  # noqa: F401  (fails loudly if the extension did not build)
from medrefine.cache import FeatureCache
from medrefine.geodesic import geodesic_distance
from medrefine.grow import region_grow
from medrefine.history import Interaction
from medrefine.models.split import SplitModel
from medrefine.models.zoo import list_models, load_model, model_card
from medrefine.refine import RefineConfig
from medrefine.samples import list_samples, load_sample
from medrefine.session import Session
from medrefine.types import Box, Click, Mark, Paint, RefineResult, Scribble, Volume

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Click",
    "FeatureCache",
    "Interaction",
    "Mark",
    "Paint",
    "RefineConfig",
    "RefineResult",
    "Scribble",
    "Session",
    "SplitModel",
    "Volume",
    "geodesic_distance",
    "list_models",
    "list_samples",
    "load_model",
    "load_sample",
    "model_card",
    "region_grow",
]
