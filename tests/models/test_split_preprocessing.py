"""A user's network gets exactly the user's image unless a Preprocessing is passed."""

from __future__ import annotations

import numpy as np
import torch

import medrefine as mr
from medrefine.models.unet import UNet, UNetConfig
from medrefine.models.zoo import RECIPES


def test_a_users_network_sees_its_input_unchanged(net2d: UNet) -> None:
    rng = np.random.default_rng(3)
    image = (40.0 + 25.0 * rng.normal(size=(40, 48))).astype(np.float32)  # far from z-scored
    model = mr.SplitModel.from_module(net2d, head=["head"], num_classes=3, spatial_dims=2)
    assert not model.preprocessing.normalize and model.preprocessing.multiple == 1
    mask = mr.Session(model).set_image(image)
    with torch.no_grad():
        want = net2d(torch.from_numpy(image)[None, None]).argmax(1)[0].numpy()
    assert np.mean(mask == want) == 1.0
    assert len(np.unique(want)) > 1  # a mask with some structure, not a constant


def test_explicit_preprocessing_is_used() -> None:
    net = UNet(UNetConfig(2, 1, 2, 4, 2)).eval()
    prep = mr.Preprocessing(2, multiple=2, normalize=True)
    model = mr.SplitModel.from_module(net, ["head"], 2, 2, preprocessing=prep)
    assert model.preprocessing is prep


def test_zoo_models_carry_their_own_preprocessing() -> None:
    for name in mr.list_models():
        assert mr.load_model(name).preprocessing == RECIPES[name].preprocessing
        assert RECIPES[name].preprocessing.normalize
