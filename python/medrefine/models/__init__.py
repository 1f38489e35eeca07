"""Networks: cutting any network into backbone + head (``split``), input preparation
(``preprocess``), the reference U-Net (``unet``), the shipped zoo (``zoo``) and its training
recipes (``train``)."""

from medrefine.models.preprocess import Preprocessing
from medrefine.models.split import SplitModel
from medrefine.models.zoo import list_models, load_model, model_card

__all__ = ["Preprocessing", "SplitModel", "list_models", "load_model", "model_card"]
