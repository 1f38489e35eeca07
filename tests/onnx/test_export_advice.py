"""export_module's refusals state the figures and the remedy, and every export of a network can
still be cut: scope names for nn.Modules, parameter names for any TorchScript module."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError
from medrefine.onnx import module_nodes, scope_nodes
from medrefine.onnx.export import export_module, traceable


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(8, 16), strides=(2,), num_res_units=0).eval()


def test_refusal_states_the_difference_the_agreement_and_a_tolerance(tmp_path: Path) -> None:
    net = nn.Conv2d(1, 2, 3, padding=1).eval()
    path = tmp_path / "net.onnx"
    with pytest.raises(UnsupportedModelError) as info:
        export_module(net, torch.randn(1, 1, 8, 8), path, reference=lambda x: net(x) + 0.01)
    message = str(info.value)
    assert "differs from PyTorch by 0.01 (> tolerance 0.001" in message
    assert "argmax agree on 100.0000 % of pixels" in message
    assert "pass tolerance=0.015" in message
    assert not path.exists()
    # the suggested tolerance is accepted
    assert export_module(net, torch.randn(1, 1, 8, 8), path, tolerance=0.015).path == path


def test_an_nn_module_exported_twice_keeps_its_scope_names(tmp_path: Path) -> None:
    net, x = _unet(), torch.randn(1, 1, 16, 16)
    for i in range(2):
        path = export_module(net, x, tmp_path / f"net{i}.onnx").path
        assert scope_nodes(path, "model/model.2")[0] == "/model/model.2/conv/ConvTranspose"


# TorchScript is deprecated in PyTorch, and still how many networks are shipped.
@pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]+` is deprecated:DeprecationWarning")
def test_torchscript_exports_are_cut_by_parameter_names(tmp_path: Path) -> None:
    net, x = _unet(), torch.randn(1, 1, 16, 16)
    traced = torch.jit.trace(traceable(net), x)  # instance norms that trace without warnings
    torch.jit.save(traced, str(tmp_path / "net.pt"))
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    paths = [
        export_module(m, x, tmp_path / f"{name}.onnx").path
        for name, m in (("first", traced), ("second", traced), ("loaded", loaded))
    ]
    for path in paths:  # the same object exported twice keeps its scopes (exported from a copy)
        assert scope_nodes(path, "model/2") == ["/model/2/conv/ConvTranspose"]
        cut = module_nodes(path, "model.2")  # the weights' state_dict keys: any export
        assert cut == ["/model/2/conv/ConvTranspose"]
        model = mr.SplitModel.from_onnx(path, cut, 2, 2)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x), rtol=1e-4, atol=1e-4)


def test_an_export_without_scopes_is_refused_with_the_remedy(tmp_path: Path) -> None:
    model = onnx.load(export_module(_unet(), torch.randn(1, 1, 16, 16), tmp_path / "n.onnx").path)
    for i, node in enumerate(model.graph.node):  # as a graph whose exporter wrote no scopes
        node.name = f"/{node.op_type}_{i}"
    with pytest.raises(UnsupportedModelError, match=r"carry no module scopes.*module_nodes"):
        scope_nodes(model, "model/model.2")
    assert module_nodes(model, "model.2") == ["/ConvTranspose_12"]


def test_module_nodes_names_the_modules_when_none_matches(tmp_path: Path) -> None:
    path = export_module(_unet(), torch.randn(1, 1, 16, 16), tmp_path / "net.onnx").path
    with pytest.raises(UnsupportedModelError, match=r"'decoder'.*'model.2.conv'"):
        module_nodes(path, "decoder")
