"""Named reference models shipped with medrefine (weights in ``models/weights``).

Each is a :class:`medrefine.models.unet.UNet` trained by the recipe of the same name in
:mod:`medrefine.models.train`, split at its pointwise ``head``: the cached feature is the
multi-scale decoder output at full resolution, and only the 1x1-conv head is fine-tuned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from medrefine.errors import NotFoundError
from medrefine.models.split import SplitModel
from medrefine.models.train import RECIPES
from medrefine.models.unet import UNet

WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ZooEntry:
    """A shipped model: its classes, data it was trained on, and what it is for."""

    name: str
    class_names: tuple[str, ...]
    dataset: str
    description: str


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "nuclei-unet2d",
            ("background", "nucleus"),
            "dsb2018_nuclei",
            "2D nuclei in fluorescence, brightfield and stained microscopy (DSB 2018)",
        ),
        ZooEntry(
            "nuclei-fluo-unet2d",
            ("background", "nucleus"),
            "dsb2018_nuclei",
            "2D nuclei, trained on the fluorescence groups of DSB 2018 only "
            "(for distribution-shift experiments)",
        ),
        ZooEntry(
            "fetalhead-unet2d",
            ("background", "fetal head"),
            "hc18_fetal_head",
            "2D fetal head in obstetric ultrasound (HC18)",
        ),
        ZooEntry(
            "hippocampus-unet3d",
            ("background", "anterior", "posterior"),
            "msd_hippocampus",
            "3D anterior and posterior hippocampus in T1 MRI (MSD Task04)",
        ),
    )
}


def list_models() -> list[str]:
    """Names accepted by :func:`load_model`.

    >>> "nuclei-unet2d" in list_models()
    True
    """
    return sorted(ZOO)


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise NotFoundError(f"no model named {name!r}; models: {list_models()}")
    return ZOO[name]


def model_card(name: str) -> dict[str, Any]:
    """The model's card: recipe, training time and machine, test-split Dice of the network.

    >>> round(model_card("nuclei-unet2d")["test_dice_mean"], 3)
    0.879
    """
    _entry(name)
    card: dict[str, Any] = json.loads((WEIGHTS / f"{name}.json").read_text())
    return card


@cache
def _network(name: str) -> UNet:
    net = UNet(RECIPES[name].unet)
    state = torch.load(WEIGHTS / f"{name}.pt", map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def load_network(name: str) -> UNet:
    """The whole (unsplit) reference network, float32, eval mode."""
    _entry(name)
    return _network(name)


def load_model(name: str) -> SplitModel:
    """A ready :class:`SplitModel` (backbone / pointwise head) with its preprocessing.

    >>> model = load_model("hippocampus-unet3d")
    >>> model.spatial_dims, model.class_names
    (3, ('background', 'anterior', 'posterior'))
    """
    entry = _entry(name)
    recipe = RECIPES[name]
    return SplitModel.from_module(
        load_network(name),
        head=["head"],
        num_classes=recipe.unet.num_classes,
        spatial_dims=recipe.unet.spatial_dims,
        preprocessing=recipe.preprocessing,
        class_names=entry.class_names,
        name=name,
    )
