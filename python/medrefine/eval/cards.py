"""The zoo's cards re-measured: each model's test Dice recomputed from the dataset folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrefine.data import open_dataset
from medrefine.eval.metrics import mean_dice
from medrefine.models.train import RECIPES, predict
from medrefine.models.zoo import _entry, load_network


def evaluate_model(name: str, data_root: str | Path) -> float:
    """Mean test-split Dice of the network alone, recomputed the way its card was made."""
    entry, recipe = _entry(name), RECIPES[name]
    ds = open_dataset(Path(data_root) / entry.dataset)
    net = load_network(name)
    scores = []
    for case_id in ds.ids("test", recipe.groups):
        case = ds.load(case_id)
        pred = predict(net, recipe.preprocessing, case.image, torch.device("cpu"))
        scores.append(mean_dice(case.label, pred, recipe.unet.num_classes))
    return float(np.mean(scores))
