"""The zoo's cards re-measured: each model's test Dice recomputed from the dataset folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrefine.data import open_dataset
from medrefine.models.train import RECIPES, predict
from medrefine.models.zoo import _entry, load_network
from medrefine_lab.eval.metrics import mean_dice


def dataset_folder(data_root: str | Path, dataset: str) -> Path:
    """``data_root/dataset``, or ``data_root`` itself when it is one dataset folder (a staged
    ``cases.csv`` or an nnU-Net ``dataset.json``)."""
    root = Path(data_root)
    if (root / "dataset.json").is_file() or (root / "cases.csv").is_file():
        return root
    return root / dataset


def evaluate_model(name: str, data_root: str | Path) -> float:
    """Mean test-split Dice of the network alone, recomputed the way its card was made; NaN when
    ``data_root`` is one dataset folder whose classes or dimensions the model does not fit."""
    entry, recipe = _entry(name), RECIPES[name]
    ds = open_dataset(dataset_folder(data_root, entry.dataset))
    if (ds.num_classes, ds.spatial_dims) != (recipe.unet.num_classes, recipe.unet.spatial_dims):
        return float("nan")
    net = load_network(name)
    scores = []
    for case_id in ds.ids("test", recipe.groups):
        case = ds.load(case_id)
        pred = predict(net, recipe.preprocessing, case.image, torch.device("cpu"))
        scores.append(mean_dice(case.label, pred, recipe.unet.num_classes))
    return float(np.mean(scores))
