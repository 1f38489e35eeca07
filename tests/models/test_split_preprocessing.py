"""A user's network gets exactly the user's image unless a Preprocessing is passed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.errors import InputError
from medrefine.models.preprocess import zscore
from medrefine.models.unet import UNet, UNetConfig
from medrefine.models.zoo import RECIPES, load_model
from medrefine.samples import load_sample


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


@pytest.mark.parametrize(
    ("name", "shape"),
    [("fetalhead-unet2d", (40, 50)), ("nuclei-unet2d", (8, 8)), ("hippocampus-unet3d", (5, 6, 7))],
)
def test_an_image_within_one_multiple_along_every_axis_is_segmented(
    name: str, shape: tuple[int, ...]
) -> None:
    # Padded to exactly one multiple, every zoo network reached a single pixel at its deepest
    # level and set_image failed in instance normalisation.
    session = mr.Session(load_model(name))
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    assert session.set_image(image).shape == shape
    session.add(mr.Click(1, tuple(n // 2 for n in shape), radius=1))
    assert session.refine().mask.shape == shape


def test_a_uint64_image_is_normalised_like_its_scaled_copy() -> None:
    # float32 statistics of values near 2**63 overflow: the std was inf and the image zeros.
    session = mr.Session(load_model("nuclei-unet2d"))
    sample = load_sample("nuclei-fluorescence").image.astype(np.float64)
    image = np.rint(sample / sample.max() * 2.0**62).astype(np.uint64)
    want = session.set_image(image.astype(np.float64) / 2.0**62)  # z-scoring ignores the scale
    assert len(np.unique(want)) > 1
    np.testing.assert_array_equal(session.set_image(image), want)


def test_values_beyond_float32_are_refused_by_name() -> None:
    session = mr.Session(load_model("nuclei-unet2d"))
    with pytest.raises(InputError, match="beyond float32's range"):
        session.set_image(np.full((3, 16, 16), 1e300))
    assert session.set_image(np.ones((3, 16, 16))).shape == (16, 16)  # still usable


SAMPLE_MODELS = [
    ("nuclei-unet2d", "nuclei-stained"),
    ("nuclei-unet2d", "nuclei-fluorescence"),
    ("fetalhead-unet2d", "fetalhead"),
    ("hippocampus-unet3d", "hippocampus-007"),
]


@pytest.mark.parametrize(("name", "sample"), SAMPLE_MODELS)
@pytest.mark.parametrize("scale", [1e-8, 1e-30])
def test_the_mask_does_not_depend_on_the_images_scale(name: str, sample: str, scale: float) -> None:
    # An absolute floor of 1e-6 on the std changed the mask of a float32 image scaled by 1e-8
    # (the fluorescence sample's std is then about 1e-7).
    image = np.asarray(load_sample(sample).image, dtype=np.float32)
    session = mr.Session(load_model(name), cache=FeatureCache(max_bytes=0))
    want = session.set_image(image)
    scaled = (image * np.float32(scale)).astype(np.float32)
    np.testing.assert_array_equal(session.set_image(scaled), want)


def test_a_float64_image_below_float32s_range_is_normalised_like_its_own_scale() -> None:
    image = load_sample("nuclei-fluorescence").image.astype(np.float64)
    session = mr.Session(load_model("nuclei-unet2d"), cache=FeatureCache(max_bytes=0))
    want = session.set_image(image)
    np.testing.assert_array_equal(session.set_image(image * 1e-300), want)


def test_zscore_matches_the_direct_formula_and_ignores_the_scale() -> None:
    rng = np.random.default_rng(1)
    image = (rng.random((3, 20, 30)) * 255).astype(np.float32)
    flat = image.reshape(3, -1)
    direct = (image - flat.mean(1)[:, None, None]) / flat.std(1)[:, None, None]
    np.testing.assert_array_equal(zscore(image), direct)  # bit for bit where no floor applies
    np.testing.assert_array_equal(zscore(image * np.float32(2.0**-100)), direct)
    np.testing.assert_allclose(zscore(image * np.float32(1e-8)), direct, atol=2e-6)
    flat_channel = np.full((1, 4, 4), 1e-9, dtype=np.float32)
    assert not zscore(flat_channel).any() and not zscore(np.zeros((2, 3, 3), np.float32)).any()
