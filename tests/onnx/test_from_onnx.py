"""SplitModel.from_onnx: zoo and MONAI networks through ONNX reproduce PyTorch and refine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from monai.networks.nets import UNet as MonaiUNet
from scipy import ndimage
from torch import fx, nn

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.head.pointwise import as_row_head
from medrefine.errors import NotFoundError, UnsupportedModelError
from medrefine.models.train import RECIPES
from medrefine.models.zoo import load_network
from medrefine.onnx import scope_nodes
from medrefine.onnx.export import ExportResult, export_module

# (zoo model, sample, crop in array order: y, x or z, y, x)
CASES = {
    "nuclei-unet2d": ("nuclei-fluorescence", np.s_[64:128, 96:160]),
    "fetalhead-unet2d": ("fetalhead", np.s_[180:308, 280:408]),
    "hippocampus-unet3d": ("hippocampus-007", np.s_[5:29, 8:40, 8:32]),
}


def clicks_on_errors(mask: np.ndarray, label: np.ndarray, classes: int) -> list[mr.Click]:
    """Three one-pixel clicks per class where the network is wrong (else anywhere in the
    class), two pixels away from any other class."""
    rng, marks = np.random.default_rng(0), []
    for c in range(classes):
        inner = ndimage.binary_erosion(label == c, iterations=2)
        wrong = np.argwhere(inner & (mask != c))
        where = wrong if len(wrong) else np.argwhere(inner)
        marks += [
            mr.Click(c, tuple(int(v) for v in where[i]), 0) for i in rng.permutation(len(where))[:3]
        ]
    return marks


def _from_zoo_onnx(name: str, path: Path) -> mr.SplitModel:
    recipe = RECIPES[name]
    return mr.SplitModel.from_onnx(
        path,
        cut=scope_nodes(path, "head"),
        num_classes=recipe.unet.num_classes,
        spatial_dims=recipe.unet.spatial_dims,
        preprocessing=recipe.preprocessing,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_zoo_model_round_trip_and_refine(name: str, zoo_onnx: Callable[..., ExportResult]) -> None:
    model = _from_zoo_onnx(name, zoo_onnx(name).path)
    net = load_network(name)
    x = model.preprocessing(mr.load_sample(CASES[name][0]).image[CASES[name][1]])
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=1e-4, atol=1e-4)
    assert isinstance(model.head, fx.GraphModule) and not model.head.training
    params = list(model.head.parameters())
    assert params and all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert as_row_head(model.head) is not None
    assert model.extractor is not None and model.name == name

    case = mr.load_sample(CASES[name][0])
    image, label = case.image[(..., *CASES[name][1])], case.label[CASES[name][1]]
    session = mr.Session(
        model, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=200")
    )
    mask = session.set_image(image)
    assert session.backend is model.extractor
    for mark in clicks_on_errors(mask, label, model.num_classes):
        session.add(mark)
    result = session.refine()
    assert result.satisfied and result.mode == "pointwise"


def test_cut_by_tensor_equals_cut_by_node(zoo_onnx: Callable[..., ExportResult]) -> None:
    path = zoo_onnx("nuclei-unet2d").path
    graph = onnx.load(str(path)).graph
    first = next(n for n in graph.node if n.name == "/head/head.0/Conv")
    by_node = mr.SplitModel.from_onnx(path, [first.name], 2, 2)
    by_tensor = mr.SplitModel.from_onnx(path, [first.input[0]], 2, 2)
    x = torch.randn(1, 3, 32, 48)
    assert len(by_node.backbone(x)) == len(by_tensor.backbone(x)) == 1
    torch.testing.assert_close(by_node(x), by_tensor(x))
    assert by_node.digest() == by_tensor.digest()


def _monai(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,))
    return net.eval()


def _refine_monai(model: mr.SplitModel) -> mr.RefineResult:
    session = mr.Session(
        model, mr.RefineConfig().with_overrides("marks.write=off,loop.max_iterations=300")
    )
    session.set_image(np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32))
    session.add(mr.Scribble(1, [(4, 4), (4, 10)], radius=0))
    session.add(mr.Scribble(0, [(18, 4), (18, 10)], radius=0))
    return session.refine()


def test_monai_unet_as_module_and_as_onnx(tmp_path: Path) -> None:
    net = _monai(0)
    path = export_module(net, torch.randn(1, 1, 32, 32), tmp_path / "monai.onnx").path
    from_torch = mr.SplitModel.from_module(net, ["model.2"], 2, 2)
    from_onnx = mr.SplitModel.from_onnx(path, scope_nodes(path, "model/model.2"), 2, 2)
    assert isinstance(
        from_onnx.head.get_submodule("model_model_2_conv_ConvTranspose"), nn.ConvTranspose2d
    )
    x = torch.randn(1, 1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(from_onnx(x), net(x), rtol=1e-4, atol=1e-4)
    for model in (from_torch, from_onnx):
        result = _refine_monai(model)
        assert result.mode in ("crop", "full") and result.satisfied  # not pointwise


def test_a_head_cut_earlier_takes_several_features(tmp_path: Path) -> None:
    net = _monai(0)
    path = export_module(net, torch.randn(1, 1, 32, 32), tmp_path / "monai.onnx").path
    model = mr.SplitModel.from_onnx(path, ["/model/model.1/Concat"], 2, 2)
    x = torch.randn(1, 1, 16, 16)
    assert len(model.backbone(x)) == 2
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=1e-4, atol=1e-4)


class _PoolingHead(nn.Module):
    """A classification-style head: max pooling, flatten, linear (MaxPool, Flatten, Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Sequential(nn.MaxPool2d(8), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_unsupported_operators_are_all_named(tmp_path: Path) -> None:
    path = export_module(_PoolingHead().eval(), torch.randn(1, 1, 8, 8), tmp_path / "p.onnx").path
    with pytest.raises(UnsupportedModelError) as info:
        mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2)
    message = str(info.value)
    for op, node in (("MaxPool", "/head/head.0/MaxPool"), ("Gemm", "/head/head.2/Gemm")):
        assert f"{op} (node {node!r})" in message
    assert "Flatten" in message


def test_bad_cut_names_are_clear(zoo_onnx: Callable[..., ExportResult]) -> None:
    path = zoo_onnx("nuclei-unet2d").path
    with pytest.raises(
        UnsupportedModelError,
        match=r"no node or tensor named '/head/head\.0/Con'.*'/head/head\.0/Conv'",
    ):
        mr.SplitModel.from_onnx(path, ["/head/head.0/Con"], 2, 2)
    with pytest.raises(UnsupportedModelError, match="does not come from the head"):
        mr.SplitModel.from_onnx(path, ["logits"], 2, 2)
    with pytest.raises(UnsupportedModelError, match="cut is empty"):
        mr.SplitModel.from_onnx(path, [], 2, 2)
    with pytest.raises(UnsupportedModelError, match="no node of the ONNX graph is under scope"):
        scope_nodes(path, "decoder")
    with pytest.raises(NotFoundError, match="no ONNX file"):
        mr.SplitModel.from_onnx(path.with_name("missing.onnx"), ["x"], 2, 2)


def test_cache_key_differs_between_onnx_files(tmp_path: Path) -> None:
    x = torch.randn(1, 1, 16, 16)
    paths = [export_module(_monai(s), x, tmp_path / f"m{s}.onnx").path for s in (0, 1)]
    a, b = (mr.SplitModel.from_onnx(p, ["/model/model.2/conv/ConvTranspose"], 2, 2) for p in paths)
    again = mr.SplitModel.from_onnx(paths[0], ["/model/model.2/conv/ConvTranspose"], 2, 2)
    assert a.digest() != b.digest() and a.digest() == again.digest()
    cache, image = FeatureCache(), np.zeros((16, 16), np.float32)
    for model in (a, b, again):
        mr.Session(model, cache=cache).set_image(image)
    stats = cache.stats
    assert (stats.misses, stats.hits) == (2, 1)


# torch.jit is deprecated in recent PyTorch; a TorchScript file is what this test is about.
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_torchscript_network_goes_through_onnx(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(1, 1, 16, 16)
    torch.jit.trace(net, x).save(str(tmp_path / "net.pt"))
    export_module(torch.jit.load(str(tmp_path / "net.pt")), x, tmp_path / "net.onnx")
    model = mr.SplitModel.from_onnx(tmp_path / "net.onnx", ["/2/Conv"], 2, 2)
    y = torch.randn(1, 1, 12, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(y), net(y), rtol=1e-5, atol=1e-5)
    assert as_row_head(model.head) is not None


def test_an_example_the_network_cannot_take_is_one_clear_error(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 1)).eval()
    path = export_module(net, torch.randn(1, 1, 8, 8), tmp_path / "n.onnx").path
    with pytest.raises(UnsupportedModelError, match=r"cannot run the network on an input \(1, 3"):
        mr.SplitModel.from_onnx(path, ["/1/Conv"], 2, 2, example=torch.randn(1, 3, 8, 8))


def test_from_onnx_refuses_a_num_classes_the_output_does_not_have(
    zoo_onnx: Callable[..., ExportResult],
) -> None:
    path = zoo_onnx("nuclei-unet2d").path
    with pytest.raises(UnsupportedModelError, match=r"outputs 2 channels.*pass num_classes=2"):
        mr.SplitModel.from_onnx(path, cut=scope_nodes(path, "head"), num_classes=3, spatial_dims=2)
