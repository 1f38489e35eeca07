"""SplitModel: backbone + head reproduce the unsplit network, for ours and for MONAI's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet, SegResNet, UNet
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError
from medrefine.models.unet import UNet as OurUNet
from medrefine.models.unet import UNetConfig


def _check(net: nn.Module, head: list[str], shape: tuple[int, ...], k: int) -> mr.SplitModel:
    net = net.eval()
    model = mr.SplitModel.from_module(net, head=head, num_classes=k, spatial_dims=len(shape) - 2)
    x = torch.randn(shape)
    with torch.no_grad():
        want = net(x)
        features = model.backbone(x)
        got = model.head(*features)
    assert isinstance(features, tuple) and len(features) >= 1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    return model


@pytest.mark.parametrize("dims", [2, 3])
def test_own_unet_split_at_head_and_deeper(dims: int) -> None:
    cfg = UNetConfig(dims, 1, 3, base_channels=4, depth=3)
    shape = (1, 1) + (16,) * dims
    model = _check(OurUNet(cfg), ["head"], shape, 3)
    (feature,) = model.backbone(torch.zeros(shape))
    assert feature.shape[1] == cfg.head_in_channels
    # Cutting earlier: the skip connection of level 0 and the upsampled level 1 become features.
    model = _check(OurUNet(cfg), ["decoders.0", "head"], shape, 3)
    assert len(model.backbone(torch.zeros(shape))) == 2


def test_monai_unet() -> None:
    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16, 32), strides=(2, 2))
    _check(net, ["model.2"], (1, 1, 32, 32), 3)


def test_monai_basic_unet_is_refused_because_fx_traces_its_branches_wrongly() -> None:
    # BasicUNet's UpCat branches on isinstance(x, Tensor), which is False for an fx placeholder:
    # the traced graph drops the skip concatenation. The check catches it.
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 4, 8, 16, 32, 4))
    with pytest.raises(UnsupportedModelError, match="split network fails"):
        mr.SplitModel.from_module(net.eval(), ["final_conv"], 2, 3)


def test_monai_segresnet() -> None:
    net = SegResNet(
        spatial_dims=2,
        init_filters=8,
        in_channels=1,
        out_channels=2,
        blocks_down=(1, 1),
        blocks_up=(1,),
    )
    _check(net, ["conv_final"], (1, 1, 32, 32), 2)


def test_from_modules_wraps_single_tensor_backbone() -> None:
    backbone = nn.Conv2d(1, 4, 3, padding=1)
    head = nn.Conv2d(4, 2, 1)
    model = mr.SplitModel.from_modules(backbone, head, num_classes=2, spatial_dims=2)
    x = torch.randn(1, 1, 8, 8)
    (f,) = model.backbone(x)
    torch.testing.assert_close(model(x), head(backbone(x)))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert f.shape == (1, 4, 8, 8)


def test_unknown_head_name_lists_submodules() -> None:
    with pytest.raises(UnsupportedModelError, match="encoders"):
        mr.SplitModel.from_module(OurUNet(UNetConfig(2, 1, 2, 4, 2)), ["nope"], 2, 2)


class _WithSideBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(1, 2, 1)
        self.aux = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.aux(x)  # computed, never used in the output
        return self.main(x)


def test_head_that_the_output_does_not_depend_on_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="output does not come from the head"):
        mr.SplitModel.from_module(_WithSideBranch(), ["aux"], 2, 2)


def test_digest_changes_with_weights() -> None:
    a = mr.SplitModel.from_module(OurUNet(UNetConfig(2, 1, 2, 4, 2)), ["head"], 2, 2)
    torch.manual_seed(1)
    b = mr.SplitModel.from_module(OurUNet(UNetConfig(2, 1, 2, 4, 2)), ["head"], 2, 2)
    assert a.digest() != b.digest() and a.digest() == a.digest()


def test_refine_works_on_a_monai_network() -> None:
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,))
    model = mr.SplitModel.from_module(net.eval(), ["model.2"], 2, 2)
    session = mr.Session(
        model, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=300")
    )
    image = np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32)
    session.set_image(image)
    session.add(mr.Scribble(1, [(4, 4), (4, 10)], radius=0))
    session.add(mr.Scribble(0, [(18, 4), (18, 10)], radius=0))
    result = session.refine()
    # a transposed convolution from half-resolution features: not pointwise
    assert result.mode in ("crop", "full") and result.satisfied


def test_num_classes_must_match_the_networks_output_channels(net2d) -> None:
    with pytest.raises(UnsupportedModelError, match=r"outputs 3 channels.*pass num_classes=3"):
        mr.SplitModel.from_module(net2d, head=["head"], num_classes=4, spatial_dims=2)
    one = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 1, 1))
    with pytest.raises(UnsupportedModelError, match="single sigmoid channel"):
        mr.SplitModel.from_module(one, head=["1"], num_classes=2, spatial_dims=2)
    assert mr.SplitModel.from_module(net2d, head=["head"], num_classes=3, spatial_dims=2)
