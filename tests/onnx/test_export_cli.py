"""``medrefine export onnx``: backbone plus metadata, parity-checked; tensorrt fails clearly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import medrefine as mr
from medrefine.cli import main


@pytest.mark.parametrize("name", ["nuclei-unet2d", "hippocampus-unet3d"])
def test_export_onnx_writes_checked_backbone_and_metadata(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "onnx", "--model", name, "--out", str(tmp_path)]) == 0
    assert "max abs diff ONNX Runtime vs PyTorch" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / f"{name}.backbone.onnx"))
    meta = json.loads((tmp_path / f"{name}.backbone.json").read_text())
    model = mr.load_model(name)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == [f["name"] for f in meta["features"]]
    spatial = graph.graph.input[0].type.tensor_type.shape.dim[2:]
    assert all(d.dim_param and not d.dim_value for d in spatial)  # dynamic spatial axes
    assert meta["backbone_digest"] == model.digest()
    assert meta["pad_multiple"] == model.preprocessing.multiple
    assert 0 <= meta["parity"]["max_abs_diff"] <= 1e-3
    # Independently: an odd-sized image, padded by the model's preprocessing, runs in ONNX
    # Runtime and matches the PyTorch backbone.
    size = (29, 37, 23) if model.spatial_dims == 3 else (51, 77)
    image = np.random.default_rng(1).random(size).astype(np.float32)
    x = model.preprocessing(image)
    assert all(s % meta["pad_multiple"] == 0 for s in x.shape[2:])
    got = ort.InferenceSession(graph.SerializeToString()).run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = model.backbone(x)
    assert len(got) == len(want) == len(meta["features"])
    for g, w, f in zip(got, want, meta["features"], strict=True):
        assert list(g.shape[:2]) == f["shape"][:2] and str(g.dtype) == f["dtype"]
        assert float(np.abs(g - w.numpy()).max()) < 1e-3


def test_export_onnx_fails_above_tolerance_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "onnx", "--model", "nuclei-unet2d", "--out", str(tmp_path)]
    assert main([*argv, "--tolerance", "1e-12"]) == 2
    assert "differs from PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_from_module_file(tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        "import medrefine as mr\n"
        "from torch import nn\n"
        "def build_model():\n"
        "    back = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())\n"
        "    return mr.SplitModel.from_modules(back, nn.Conv2d(4, 2, 1), 2, 2, name='tiny')\n"
    )
    out = tmp_path / "out"
    assert main(["export", "onnx", "--module", str(source), "--out", str(out)]) == 0
    meta = json.loads((out / "tiny.backbone.json").read_text())
    assert meta["features"][0]["shape"][:2] == [1, 4] and meta["pad_multiple"] == 1


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_export_tensorrt_without_tensorrt_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "tensorrt", "--onnx", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "TensorRT" in err and "not found" in err


@pytest.mark.parametrize("name", mr.list_models())
def test_every_zoo_backbone_exports_within_tolerance(name: str, tmp_path: Path) -> None:
    from medrefine.onnx.export import export_backbone

    result, meta = export_backbone(mr.load_model(name), tmp_path)
    assert result.path.is_file() and 0 <= result.max_abs_diff <= 1e-3
    multiple = meta["pad_multiple"]
    assert all(s % multiple for size in meta["parity"]["checked_sizes"] for s in size)
