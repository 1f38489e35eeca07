"""Model conformance, ONNX route: damaged files, outputs of the wrong size, hand-written softmax,
export of a network as its owner runs it (and never changed), dict outputs, the backbone export
of a model split from ONNX. Each case is a small network built here, exported to a real file."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import medrefine as mr
from medrefine.cli import main
from medrefine.errors import InputError, UnsupportedModelError
from medrefine.onnx import module_nodes, scope_nodes
from medrefine.onnx.export import export_module


class _Small(nn.Module):
    """conv 3x3 (``stride``, ``padding``) -> ReLU -> ``head`` 1x1 conv; ``softmax``: the
    output written out as ``exp(z) / exp(z).sum(1)``."""

    def __init__(self, stride: int = 1, padding: int = 1, softmax: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, stride=stride, padding=padding)
        self.head = nn.Conv2d(4, 3, 1)
        self.softmax = softmax

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        return z.exp() / z.exp().sum(1, keepdim=True) if self.softmax else z


def _export(net: nn.Module, path: Path) -> Path:
    export_module(net, torch.randn(1, 1, 32, 32), path)
    return path


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda good: good[: len(good) // 2],
    "random-bytes": lambda good: np.random.default_rng(0).bytes(len(good)),
    "text": lambda good: b"name,weight\nconv,0.5\nhead,1.25\n" * 20,
    "zeroed-bytes": lambda good: bytes(len(good)),
    "empty": lambda good: b"",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_onnx_file_is_an_input_error_naming_it(damage: str, tmp_path: Path) -> None:
    good = _export(_Small().eval(), tmp_path / "good.onnx").read_bytes()
    bad = tmp_path / f"{damage}.onnx"
    bad.write_bytes(DAMAGE[damage](good))
    named = rf"ONNX file '{bad}'.*(empty|truncated)"
    with pytest.raises(InputError, match=named):
        mr.SplitModel.from_onnx(bad, ["/head/Conv"], 3, 2)
    with pytest.raises(InputError, match=named):
        module_nodes(bad, "head")
    with pytest.raises(InputError, match=named):
        scope_nodes(bad, "head")


@pytest.mark.parametrize(
    ("stride", "padding", "why"),
    [(2, 1, r"\(1, 3, 32, 32\)(.*)2 times smaller"), (1, 0, r"\(1, 3, 62, 62\)(.*)lost \[1, 1\]")],
    ids=["stride-2", "unpadded"],
)
def test_an_onnx_output_smaller_than_the_input_is_refused_at_load(
    stride: int, padding: int, why: str, tmp_path: Path
) -> None:
    path = _export(_Small(stride, padding).eval(), tmp_path / "small.onnx")
    rule = "does not have the spatial shape of its input.*one logit per input pixel"
    with pytest.raises(UnsupportedModelError, match=why.replace("(.*)", f" {rule}.*")):
        mr.SplitModel.from_onnx(path, module_nodes(path, "head"), 3, 2)


def test_an_onnx_hand_written_softmax_is_converted_and_cut_off(tmp_path: Path) -> None:
    net = _Small(softmax=True).eval()
    path = _export(net, tmp_path / "softmax.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Exp" in ops and "ReduceSum" in ops and "Softmax" not in ops
    model = mr.SplitModel.from_onnx(path, module_nodes(path, "head"), 3, 2)
    assert model.output_kind == "softmax cut"
    x = torch.randn(1, 1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(model.head(*model.backbone(x)), net.logits(x))


def test_spatial_dims_that_disagree_with_the_onnx_input_are_named(tmp_path: Path) -> None:
    path = _export(_Small().eval(), tmp_path / "net.onnx")
    with pytest.raises(UnsupportedModelError, match=r"spatial_dims=3.*pass spatial_dims=2"):
        mr.SplitModel.from_onnx(path, module_nodes(path, "head"), 3, 3)


class _BatchNormed(nn.Module):
    """conv -> BatchNorm (running statistics far from any image's) -> ReLU -> 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)
        assert self.norm.running_mean is not None and self.norm.running_var is not None
        self.norm.running_mean.fill_(3.0)
        self.norm.running_var.fill_(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.norm(self.conv(x))))


def test_export_module_exports_train_mode_norms_as_run_and_changes_nothing(
    tmp_path: Path,
) -> None:
    net = _BatchNormed().eval()
    net.norm.train()  # shipped so: per-image statistics
    modes = {n: m.training for n, m in net.named_modules()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 1, 40, 48)
    with torch.no_grad():
        want = copy.deepcopy(net)(x)  # the owner's run (on a copy: statistics would move)
    path = _export(net, tmp_path / "bn.onnx")
    assert {n: m.training for n, m in net.named_modules()} == modes
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    (got,) = ort.InferenceSession(str(path)).run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        self.aux = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.relu(self.conv(x))
        return {"out": self.head(f), "aux": self.aux(f)}


def test_export_module_refuses_a_dict_output_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "dict.onnx"
    with pytest.raises(UnsupportedModelError, match=r"dict with keys \['out', 'aux'\].*\['out'\]"):
        export_module(_DictOut().eval(), torch.randn(1, 1, 32, 32), path)
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_of_a_model_split_from_onnx_writes_its_frozen_graph(tmp_path: Path) -> None:
    path = _export(_Small().eval(), tmp_path / "net.onnx")
    source = tmp_path / "model.py"
    source.write_text(
        "import medrefine as mr\n"
        "from medrefine.onnx import module_nodes\n"
        "def build_model():\n"
        f"    path = {str(path)!r}\n"
        "    return mr.SplitModel.from_onnx(path, module_nodes(path, 'head'), 3, 2, name='n')\n"
    )
    out = tmp_path / "out"
    assert main(["export", "onnx", "--module", str(source), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["n.backbone.json", "n.backbone.onnx"]
    meta = json.loads((out / "n.backbone.json").read_text())
    graph = onnx.load(str(out / "n.backbone.onnx")).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == [f["name"] for f in meta["features"]]
    assert meta["parity"]["max_abs_diff"] <= 1e-3
    model = mr.SplitModel.from_onnx(path, module_nodes(path, "head"), 3, 2)
    x = torch.randn(1, 1, 33, 45)
    got = ort.InferenceSession(str(out / "n.backbone.onnx")).run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = model.backbone(x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)
