"""The suite's fixture U-Nets as sessions take them: split at their ``head`` module, grey
input, padded to the network's stride, no normalisation (imported as ``from splits import
split`` from any test folder; ``conftest`` is ambiguous there, every folder has one)."""

from __future__ import annotations

from medrefine.models.preprocess import Preprocessing
from medrefine.models.split import SplitModel
from medrefine.models.unet import UNet


def split(net: UNet) -> SplitModel:
    """``net`` split into backbone and its ``head`` module."""
    cfg = net.config
    prep = Preprocessing(cfg.spatial_dims, channels=1, multiple=cfg.stride, normalize=False)
    return SplitModel.from_module(
        net,
        head=["head"],
        num_classes=cfg.num_classes,
        spatial_dims=cfg.spatial_dims,
        preprocessing=prep,
    )
