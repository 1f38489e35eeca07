"""Real third-party architectures (MONAI, nnU-Net's dynamic_network_architectures, torchvision,
segmentation-models-pytorch), random weights briefly fitted on a real image, each split three
ways (torch.fx; ONNX export of the network plus a softmax; TorchScript -> ONNX) and checked on
a real image of a size the network must pad: the session's mask equals the network's own, a
refine moves the network's prediction at the marks, add_class extends the head or says why, the
feature gate runs over features coarser than the image.

The networks are small (2D 67x81 px, 3D 34x47x40 voxels); the ResNet-50 ones are slow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError
from medrefine_lab.benchmarks.architectures import ARCHITECTURES, Architecture
from medrefine_lab.benchmarks.conformance import network_mask, scene, split, wrong_marks

pytestmark = [
    # third-party forward passes branch on sizes, which the tracer notes; every export is
    # checked numerically against PyTorch (export_module) and every split against the network
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]+` is deprecated:DeprecationWarning"),
]

HEAVY = {"torchvision-deeplabv3-resnet50", "torchvision-fcn-resnet50", "monai-unetr-3d"}
# Heads add_class cannot extend, and why (the rest must extend).
NOT_EXTENDABLE = {
    "monai-unet-2d": "fixes the class count",  # a residual unit sums over the class channels
    "monai-unet-3d": "fixes the class count",
}
ROUTES = ("module", "onnx", "torchscript")
# torchvision upsamples its logits to x.shape[-2:]: exported, that Resize takes its sizes from
# the image's shape (Shape -> Gather -> Concat); the ONNX routes move that arithmetic into the
# converted head over an empty feature of the image's size (medrefine.onnx.shapes), as torch.fx
# carries the size, so all three routes run here.
# In the quick subset: every network through torch.fx, these through all three routes.
EVERY_ROUTE = {"monai-unet-2d", "dna-plainconvunet-3d", "monai-unetr-2d"}


def _cases() -> list[object]:
    cases = []
    for arch in ARCHITECTURES:
        for route in ROUTES:
            quick = arch.name not in HEAVY and (route == "module" or arch.name in EVERY_ROUTE)
            marks = [] if quick else [pytest.mark.slow]
            if route == "module" and not arch.traceable:
                continue  # test_untraceable_networks_are_refused_by_name
            cases.append(pytest.param(arch, route, marks=marks, id=f"{arch.name}-{route}"))
    return cases


@pytest.mark.parametrize(("arch", "route"), _cases())
def test_split_network_agrees_refines_and_extends(
    arch: Architecture,
    route: str,
    network: Callable[[Architecture], nn.Module],
    onnx_dir: Path,
) -> None:
    net = network(arch)
    model = split(arch, net, route, onnx_dir)
    # the ONNX route exports the network followed by a softmax: cut off the converted head
    assert model.output_kind == ("softmax cut" if route == "onnx" else "logits")
    sc = scene(arch)
    session = mr.Session(model)
    mask = session.set_image(sc.image)
    assert mask.shape == sc.image.shape[1:]  # padded for the network, cut back to the image
    want = network_mask(arch, net, sc.image)
    assert (mask == want).mean() >= 0.9999
    assert len(np.unique(want)) > 1  # the fitted network is not one class everywhere

    marks = wrong_marks(mask, sc.label)
    assert marks, "the network is right everywhere: nothing to correct"
    for mark in marks:
        session.add(mark)
    result = session.refine()
    assert result.mask.shape == mask.shape
    # the network itself (not the marks written into the mask) now predicts more marked
    # pixels as their class than before; the honoured fraction is reported
    assert result.honoured_fraction > result.honoured_before, result.note
    assert result.note == ""

    if arch.name in NOT_EXTENDABLE:
        with pytest.raises(UnsupportedModelError, match=NOT_EXTENDABLE[arch.name]):
            session.add_class("lesion")
        return
    new = session.add_class("lesion")
    assert np.array_equal(session.mask, result.mask)  # a new class changes no pixel
    point = tuple(int(s) // 2 for s in mask.shape)
    session.add(mr.Click(new, point, radius=1))
    after = session.refine()
    assert after.mask[point] == new and after.honoured_fraction > 0


@pytest.mark.parametrize(
    "arch", [a for a in ARCHITECTURES if not a.traceable], ids=lambda a: a.name
)
def test_untraceable_networks_are_refused_by_name(arch: Architecture) -> None:
    with pytest.raises(UnsupportedModelError, match=r"torch.fx cannot trace"):
        mr.SplitModel.from_module(arch.build(), arch.head, arch.classes, arch.spatial_dims)


COARSE = ["monai-unet-2d", "monai-unet-3d", "smp-fpn-resnet18"]  # heads from coarser features


@pytest.mark.parametrize("name", COARSE)
def test_feature_gate_on_features_coarser_than_the_image(
    name: str, network: Callable[[Architecture], nn.Module], onnx_dir: Path
) -> None:
    arch = next(a for a in ARCHITECTURES if a.name == name)
    model = split(arch, network(arch), "module" if arch.traceable else "onnx", onnx_dir)
    sc = scene(arch)
    features = model.backbone(
        mr.Preprocessing(arch.spatial_dims, multiple=arch.multiple, normalize=False)(sc.image)
    )
    assert any(f.shape[2] < sc.image.shape[1] for f in features)  # coarser than the image
    config = mr.RefineConfig().with_overrides("gate.kind=feature")
    session = mr.Session(model, config)
    mask = session.set_image(sc.image)
    for mark in wrong_marks(mask, sc.label):
        session.add(mark)
    result = session.refine()
    assert result.mask.shape == mask.shape and result.honoured_fraction > result.honoured_before


def test_torchvision_is_importable_and_its_segmentation_models_run() -> None:
    from torchvision.models.segmentation import deeplabv3_resnet50

    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=2).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 33, 47))["out"].shape == (1, 2, 33, 47)
