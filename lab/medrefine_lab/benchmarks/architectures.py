"""Third-party segmentation networks, built as their users build them, for the conformance suite
(``tests/conformance``) and ``medrefine bench conformance``.

Each :class:`Architecture` builds a network with random weights (seeded) from its registry
package (MONAI, dynamic_network_architectures, torchvision, segmentation-models-pytorch),
imported only when built; :func:`missing` says when the package is absent. ``head`` names the
submodules ``SplitModel.from_module`` cuts at (dotted PyTorch module names, which are also the
prefixes of the ONNX export's initializer names: :func:`medrefine.onnx.module_nodes`), and
``multiple`` the size every spatial axis must be a multiple of (the network's total
downsampling), which ``Preprocessing(multiple=...)`` pads to.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """One third-party network as the suite uses it.

    Attributes:
        name: short identifier, e.g. ``"monai-unet-2d"``.
        package: the import name of the package that provides it.
        spatial_dims: 2 or 3.
        in_channels: input channels the network takes (1 grey, 3 RGB).
        classes: output channels (one logit per class, background included).
        head: submodule names the head starts at (``from_module``'s ``head``), as named in
            the network :meth:`build` returns.
        multiple: every spatial size the network takes is a multiple of this (pixels).
        make: returns the registry's network (random weights).
        traceable: ``torch.fx`` can trace it (else it is split through ONNX only).
        output: key of the logits in the dict the registry's network returns (torchvision's
            ``"out"``); :meth:`build` then wraps it in :class:`Logits`.
        fixed_size: the one spatial input size (pixels, (y, x) or (z, y, x)) a network of fixed
            input size takes (UNETR's ``img_size``); None: any multiple of ``multiple``.
        make_sized: builds the network for a given ``fixed_size`` (:meth:`at_size`).
    """

    name: str
    package: str
    spatial_dims: int
    in_channels: int
    classes: int
    head: tuple[str, ...]
    multiple: int
    make: Callable[[], nn.Module]
    traceable: bool = True
    output: str | None = None
    fixed_size: tuple[int, ...] | None = None
    make_sized: Callable[[tuple[int, ...]], nn.Module] | None = None

    def at_size(self, size: tuple[int, ...]) -> Architecture:
        """This architecture for inputs of spatial ``size``: a network of fixed input size
        rebuilt for it (same seed, new position embeddings), any other unchanged."""
        if self.make_sized is None or self.fixed_size == size:
            return self
        return dataclasses.replace(
            self, make=functools.partial(self.make_sized, size), fixed_size=size
        )

    def build(self) -> nn.Module:
        """The network in eval mode, weights from seed 0, returning one logits tensor."""
        torch.manual_seed(0)
        net = self.make()
        if self.output is not None:
            net = Logits(net, self.output)
        return net.eval()


class Logits(nn.Module):
    """The logits tensor of a network that returns a dict (torchvision: ``net(x)["out"]``)."""

    def __init__(self, net: nn.Module, key: str) -> None:
        super().__init__()
        self.net, self.key = net, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(1, K, *spatial)`` for an input ``(1, C, *spatial)``."""
        out: torch.Tensor = self.net(x)[self.key]
        return out


def _make(module: str, name: str, *args: Any, **kwargs: Any) -> nn.Module:
    """``module.name(*args, **kwargs)``, importing ``module`` now."""
    net: nn.Module = getattr(importlib.import_module(module), name)(*args, **kwargs)
    return net


def _plain_conv_unet(dims: int) -> nn.Module:
    """nnU-Net's PlainConvUNet as its plans build it: instance norm, leaky ReLU, 3 stages."""
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
    return _make(
        "dynamic_network_architectures.architectures.unet",
        "PlainConvUNet",
        input_channels=1,
        n_stages=3,
        features_per_stage=(8, 16, 32),
        conv_op=conv,
        kernel_sizes=3,
        strides=(1, 2, 2),
        n_conv_per_stage=(2, 2, 2),
        num_classes=3,
        n_conv_per_stage_decoder=(1, 1),
        conv_bias=True,
        norm_op=norm,
        norm_op_kwargs={"affine": True, "eps": 1e-5},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )


def _unetr(size: tuple[int, ...]) -> nn.Module:
    """MONAI's UNETR (a small ViT, 16-pixel patches) for inputs of spatial ``size``."""
    return _make(
        "monai.networks.nets",
        "UNETR",
        1,
        2,
        size,
        feature_size=8,
        hidden_size=48,
        mlp_dim=96,
        num_heads=4,
        spatial_dims=len(size),
    )


def _monai(dims: int) -> tuple[Architecture, ...]:
    nets, d = "monai.networks.nets", dims
    size = (64, 64) if dims == 2 else (32, 32, 32)
    p = functools.partial
    return (
        Architecture(
            f"monai-unet-{d}d",
            "monai",
            d,
            1,
            2,
            ("model.2",),
            4,
            p(_make, nets, "UNet", d, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1),
        ),
        Architecture(
            f"monai-segresnet-{d}d",
            "monai",
            d,
            1,
            2,
            ("conv_final.2",),
            4,
            p(
                _make,
                nets,
                "SegResNet",
                d,
                init_filters=8,
                in_channels=1,
                out_channels=2,
                blocks_down=(1, 1, 1),
                blocks_up=(1, 1),
            ),
        ),
        Architecture(
            f"monai-dynunet-{d}d",
            "monai",
            d,
            1,
            2,
            ("output_block",),
            4,
            p(
                _make,
                nets,
                "DynUNet",
                d,
                1,
                2,
                [3, 3, 3],
                [1, 2, 2],
                [2, 2],
                filters=[8, 16, 32],
                deep_supervision=False,
            ),
        ),
        Architecture(
            f"monai-unetr-{d}d",
            "monai",
            d,
            1,
            2,
            ("out",),
            16,
            p(_unetr, size),
            traceable=False,
            fixed_size=size,
            make_sized=_unetr,
        ),
        Architecture(
            f"dna-plainconvunet-{d}d",
            "dynamic_network_architectures",
            d,
            1,
            3,
            ("decoder.seg_layers.1",),
            4,
            p(_plain_conv_unet, d),
        ),
    )


def _two_d() -> tuple[Architecture, ...]:
    seg, smp = "torchvision.models.segmentation", "segmentation_models_pytorch"
    tv = {"weights": None, "weights_backbone": None, "num_classes": 2, "aux_loss": False}
    enc = {"encoder_weights": None, "in_channels": 3, "classes": 2}
    p = functools.partial
    torchvision = tuple(
        Architecture(
            f"torchvision-{name.replace('_', '-')}",
            "torchvision",
            2,
            3,
            2,
            ("net.classifier.4",),
            8,
            p(_make, seg, name, **tv),
            output="out",
        )
        for name in ("deeplabv3_resnet50", "fcn_resnet50")
    )
    return torchvision + (
        Architecture(
            "smp-unet-resnet18",
            smp,
            2,
            3,
            2,
            ("segmentation_head",),
            32,
            p(_make, smp, "Unet", "resnet18", **enc),
        ),
        Architecture(
            "smp-fpn-resnet18",
            smp,
            2,
            3,
            2,
            ("segmentation_head",),
            32,
            p(_make, smp, "FPN", "resnet18", **enc),
            traceable=False,
        ),
    )


ARCHITECTURES: tuple[Architecture, ...] = _monai(2) + _monai(3) + _two_d()


def missing(arch: Architecture) -> str | None:
    """Why ``arch`` cannot be built here (its package is not installed), or None."""
    if importlib.util.find_spec(arch.package) is None:
        return f"{arch.package} is not installed"
    return None


def by_name(name: str) -> Architecture:
    """The architecture called ``name``."""
    for arch in ARCHITECTURES:
        if arch.name == name:
            return arch
    raise KeyError(f"no architecture {name!r}; known: {[a.name for a in ARCHITECTURES]}")
