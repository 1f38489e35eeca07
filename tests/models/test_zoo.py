"""Every zoo model loads, has a card, and segments its shipped samples as its card says."""

from __future__ import annotations

import numpy as np
import pytest

import medrefine as mr
from medrefine.errors import NotFoundError
from medrefine.models import model_card
from medrefine.samples import SAMPLES
from medrefine_lab.eval.metrics import mean_dice


def test_list_models_and_cards() -> None:
    names = mr.list_models()
    assert names == sorted(
        ["nuclei-unet2d", "nuclei-fluo-unet2d", "fetalhead-unet2d", "hippocampus-unet3d"]
    )
    for name in names:
        card = model_card(name)
        assert card["name"] == name and 0.8 <= card["test_dice_mean"] <= 1.0
        assert card["train_cases"] > 0 and card["recipe"]["steps"] > 0


@pytest.mark.parametrize("sample", sorted(n for n, s in SAMPLES.items() if not s.shifted))
def test_model_segments_its_sample_like_its_card(sample: str) -> None:
    case = mr.load_sample(sample)
    name = SAMPLES[sample].model
    model = mr.load_model(name)
    mask = mr.Session(model).set_image(case.image)
    # The card's per-case Dice of this test case, computed the same way.
    card = model_card(name)["test_dice"]
    assert mask.shape == case.label.shape
    dice = mean_dice(case.label, mask, model.num_classes)
    assert dice > 0.75
    assert any(abs(dice - v) < 2e-3 for v in card.values())


@pytest.mark.parametrize("sample", sorted(n for n, s in SAMPLES.items() if s.shifted))
def test_shifted_sample_is_outside_its_models_domain(sample: str) -> None:
    """The demo's site part starts from a network that finds almost nothing on these."""
    case = mr.load_sample(sample)
    model = mr.load_model(SAMPLES[sample].model)
    mask = mr.Session(model).set_image(case.image)
    assert mask.shape == case.label.shape
    assert case.label.any()
    assert mean_dice(case.label, mask, model.num_classes) < 0.1


def test_2d_model_takes_grey_and_rgb_of_any_size() -> None:
    model = mr.load_model("nuclei-unet2d")
    grey = mr.load_sample("nuclei-fluorescence").image[:101, :77]
    session = mr.Session(model)
    a = session.set_image(grey)
    b = session.set_image(np.stack([grey] * 3))
    assert a.shape == (101, 77) and np.array_equal(a, b)
    assert session.set_image(grey.astype(np.uint16) * 50).shape == (101, 77)


def test_unknown_model_and_sample() -> None:
    with pytest.raises(NotFoundError, match="nuclei-unet2d"):
        mr.load_model("nope")
    with pytest.raises(NotFoundError, match="fetalhead"):
        mr.load_sample("nope")
