"""Zoo models export to ONNX with named, dynamic axes and match PyTorch in ONNX Runtime."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import onnx
import pytest
import torch
from torch import nn

from medrefine.backends import OnnxRuntimeBackend
from medrefine.errors import InputError, UnsupportedModelError
from medrefine.models.zoo import load_network
from medrefine.onnx.export import PARITY_TOLERANCE, ExportResult, export_module, export_zoo

ZOO_NAMES = ("nuclei-unet2d", "fetalhead-unet2d", "hippocampus-unet3d")
SCRIPT = Path(__file__).parents[2] / "export" / "export_onnx.py"


def _axes(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_network_exports_with_parity(name: str, zoo_onnx: Callable[..., ExportResult]) -> None:
    result = zoo_onnx(name)
    model = onnx.load(str(result.path))
    dims = load_network(name).config.spatial_dims
    assert 0 <= result.max_abs_diff < PARITY_TOLERANCE
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    image_axes = _axes(model.graph.input[0])
    assert image_axes[0] == 1 and all(isinstance(a, str) for a in image_axes[2:])
    assert len(image_axes) == dims + 2
    assert model.opset_import[0].version >= 17


def test_backbone_export_returns_the_head_input(tmp_path: Path) -> None:
    result = export_zoo("nuclei-unet2d", tmp_path, "backbone", size=16)
    assert result.path.name == "nuclei-unet2d.backbone.onnx" and result.output == "features"
    assert result.max_abs_diff < PARITY_TOLERANCE
    net = load_network("nuclei-unet2d")
    x = torch.randn(1, 3, 24, 40)  # another size than the trace: the axes are dynamic
    (got,) = OnnxRuntimeBackend(result.path, ["CPUExecutionProvider"]).features(x)
    with torch.no_grad():
        torch.testing.assert_close(got, net.features(x), rtol=1e-4, atol=1e-4)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_onnx", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_script_writes_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", "nuclei-unet2d", "--out", str(tmp_path), "--size", "16"]
    assert _script().main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("max abs diff vs PyTorch") == 2
    assert {p.name for p in tmp_path.iterdir()} == {
        "nuclei-unet2d.onnx",
        "nuclei-unet2d.backbone.onnx",
    }


def test_export_script_fails_cleanly_on_a_bad_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", "nuclei-unet2d", "--out", str(tmp_path), "--size", "60"]
    assert _script().main(argv) == 1
    assert "multiple of the model's stride 8" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_parity_failure_removes_the_file(tmp_path: Path) -> None:
    net = nn.Conv2d(1, 2, 3, padding=1).eval()
    path = tmp_path / "net.onnx"
    with pytest.raises(UnsupportedModelError, match="differs from PyTorch"):
        export_module(net, torch.randn(1, 1, 8, 8), path, reference=lambda x: net(x) + 0.01)
    assert not path.exists()


def test_opset_below_17_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="opset"):
        export_module(nn.Conv2d(1, 2, 1), torch.randn(1, 1, 8, 8), tmp_path / "n.onnx", opset=13)


class _Spectral(nn.Module):
    """Uses an FFT, which the ONNX exporter cannot express at opset 17."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x).real


def test_unexportable_network_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"cannot export _Spectral: .*fft"):
        export_module(_Spectral(), torch.randn(1, 1, 8, 8), tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()
