"""An ONNX network on an image whose sizes are not a multiple of its downsampling: a typed error
naming the remedy without padding; with padding, masks of the image's shape and a refine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

import medrefine as mr
from medrefine.errors import InputError
from medrefine.onnx import module_nodes
from medrefine.onnx.export import export_module


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """MONAI's UNet (two downsamplings, a transposed convolution last) exported to ONNX."""
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=0).eval()
    path = tmp_path_factory.mktemp("odd") / "unet.onnx"
    return net, export_module(net, torch.randn(1, 1, 32, 32), path).path


IMAGE = np.random.default_rng(0).normal(size=(33, 47)).astype(np.float32)


def test_an_odd_size_without_padding_is_an_input_error_naming_the_remedy(
    unet_onnx: tuple[torch.nn.Module, Path],
) -> None:
    _, path = unet_onnx
    session = mr.Session(mr.SplitModel.from_onnx(path, module_nodes(path, "model.2"), 2, 2))
    with pytest.raises(InputError, match=r"\(1, 1, 33, 47\).*Concat.*multiple=M"):
        session.set_image(IMAGE)


def test_with_padding_masks_have_the_images_shape_and_refine_works(
    unet_onnx: tuple[torch.nn.Module, Path],
) -> None:
    net, path = unet_onnx
    prep = mr.Preprocessing(2, multiple=4, normalize=False)
    model = mr.SplitModel.from_onnx(path, module_nodes(path, "model.2"), 2, 2, preprocessing=prep)
    session = mr.Session(model)
    mask = session.set_image(IMAGE)
    assert mask.shape == IMAGE.shape
    with torch.no_grad():
        want = net(prep(IMAGE))[0, :, :33, :47].argmax(0).numpy()
    assert np.array_equal(mask, want)
    y, x = np.argwhere(mask == 0)[len(np.argwhere(mask == 0)) // 2]
    session.add(mr.Click(1, (int(y), int(x)), radius=1))
    result = session.refine()
    assert result.mask.shape == IMAGE.shape and result.honoured_fraction > result.honoured_before
