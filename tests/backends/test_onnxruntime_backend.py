"""OnnxRuntimeBackend runs an exported backbone like PyTorch, and select_backend picks it."""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.backends import OnnxBackbone, OnnxRuntimeBackend, TorchBackend, select_backend
from medrefine.engine.budget.cache import FeatureCache
from medrefine.errors import InputError, NotFoundError
from medrefine.models.train import RECIPES
from medrefine.models.zoo import load_network
from medrefine.onnx import scope_nodes
from medrefine.onnx.export import ExportResult, export_zoo

CPU = "onnxruntime-CPUExecutionProvider"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportResult]:
    folder = tmp_path_factory.mktemp("backends")
    return {
        part: export_zoo("nuclei-unet2d", folder, part, size=16) for part in ("network", "backbone")
    }


@pytest.fixture(scope="module")
def onnx_model(exported: dict[str, ExportResult]) -> mr.SplitModel:
    path = exported["network"].path
    prep = RECIPES["nuclei-unet2d"].preprocessing
    return mr.SplitModel.from_onnx(path, scope_nodes(path, "head"), 2, 2, prep, name="nuclei-onnx")


def test_backend_matches_torch_and_returns_cpu_tensors(
    exported: dict[str, ExportResult],
) -> None:
    backend = OnnxRuntimeBackend(exported["backbone"].path)
    assert backend.name == CPU and backend.provider == "CPUExecutionProvider"
    x = torch.randn(1, 3, 24, 40)
    (features,) = backend.features(x)
    assert features.device.type == "cpu" and features.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(
            features, load_network("nuclei-unet2d").features(x), rtol=1e-4, atol=1e-4
        )


def test_backend_survives_pickle_and_deepcopy(exported: dict[str, ExportResult]) -> None:
    backend = OnnxRuntimeBackend(exported["backbone"].path)
    x = torch.randn(1, 3, 16, 16)
    for clone in (pickle.loads(pickle.dumps(backend)), copy.deepcopy(backend)):
        assert clone.name == backend.name and clone.digest == backend.digest
        torch.testing.assert_close(clone.features(x), backend.features(x))
    module = OnnxBackbone(backend)
    assert list(module.parameters()) == [] and len(module(x)) == 1


def test_onnx_model_runs_on_its_own_extractor(onnx_model: mr.SplitModel) -> None:
    session = mr.Session(onnx_model)
    assert session.backend is onnx_model.extractor and session.backend.name == CPU
    mask = session.set_image(np.random.default_rng(0).random((20, 28)).astype(np.float32))
    assert mask.shape == (20, 28)


def test_select_backend_picks_onnxruntime_cpu_here(
    onnx_model: mr.SplitModel,
    exported: dict[str, ExportResult],
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch_model = mr.load_model("nuclei-unet2d")
    with caplog.at_level(logging.INFO, logger="medrefine.backends.select"):
        assert select_backend(onnx_model).name == CPU
        assert isinstance(select_backend(torch_model), TorchBackend)
        with_onnx = select_backend(torch_model, onnx_backbone=exported["backbone"].path)
    assert with_onnx.name == CPU
    assert select_backend(onnx_model, prefer="torch").name == CPU  # no PyTorch backbone there
    preferred = select_backend(torch_model, "torch", exported["backbone"].path)
    assert preferred.name == "torch-cpu"
    assert f"'nuclei-onnx': backbone runs on {CPU}" in caplog.text
    assert "'nuclei-unet2d': backbone runs on torch-cpu" in caplog.text


def test_select_backend_rejects_unknown_kinds(onnx_model: mr.SplitModel) -> None:
    with pytest.raises(InputError, match="prefer must be one of"):
        select_backend(onnx_model, prefer="gpu")


def test_onnx_backbone_gives_the_torch_model_the_same_mask(
    exported: dict[str, ExportResult],
) -> None:
    model = mr.load_model("nuclei-unet2d")
    image = mr.load_sample("nuclei-fluorescence").image[:48, :40]
    masks = []
    for backend in (
        TorchBackend(model.backbone),
        select_backend(model, None, exported["backbone"].path),
    ):
        masks.append(mr.Session(model, cache=FeatureCache(), backend=backend).set_image(image))
    assert (masks[0] != masks[1]).mean() < 1e-3


@pytest.mark.parametrize(
    "content",
    [b"", b"not an onnx model at all\n", bytes(range(256)) * 8],
    ids=["empty", "text", "bytes"],
)
def test_a_damaged_file_is_an_input_error_naming_it(
    tmp_path: Path, exported: dict[str, ExportResult], content: bytes
) -> None:
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(content)
    with pytest.raises(InputError, match=r"damaged\.onnx"):
        OnnxRuntimeBackend(damaged)
    good = Path(next(iter(exported.values())).path)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated\.onnx"):
        OnnxRuntimeBackend(truncated)
    with pytest.raises(NotFoundError, match=r"nowhere\.onnx"):
        OnnxRuntimeBackend(tmp_path / "nowhere.onnx")
    assert OnnxRuntimeBackend(good).name.startswith("onnxruntime-")  # a good one still loads
