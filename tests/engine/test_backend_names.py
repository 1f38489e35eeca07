"""Session(model, backend=NAME): ONNX Runtime gives the torch masks; unavailable names fail."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.backends import TorchBackend
from medrefine.backends.onnxruntime_backend import available_providers
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.session.backend import named_backend
from medrefine.errors import InputError, ResourceError

CPU = "onnxruntime-CPUExecutionProvider"
CASES = [("nuclei-unet2d", "nuclei-stained"), ("hippocampus-unet3d", "hippocampus-007")]


def _first_mismatch(mask: np.ndarray, label: np.ndarray) -> tuple[int, tuple[int, ...]]:
    """A pixel where the network's mask misses the reference label (label, point)."""
    wrong = np.argwhere((label > 0) & (mask != label))
    assert len(wrong), "the network is already perfect on this sample: pick another"
    point = tuple(int(v) for v in wrong[len(wrong) // 2])
    return int(label[point]), point


@pytest.mark.parametrize(("model_name", "sample_name"), CASES)
def test_onnxruntime_session_gives_torch_masks(model_name: str, sample_name: str) -> None:
    model, sample = mr.load_model(model_name), mr.load_sample(sample_name)
    reference = mr.Session(model, cache=FeatureCache(), backend="torch")
    runtime = mr.Session(model, cache=FeatureCache(), backend="onnxruntime")
    assert isinstance(reference.backend, TorchBackend) and runtime.backend.name == CPU
    want, got = reference.set_image(sample.image), runtime.set_image(sample.image)
    agreement = float((want == got).mean())
    print(f"{model_name}: set_image agreement {agreement:.5%}")
    assert agreement >= 0.999
    label, point = _first_mismatch(want, np.asarray(sample.label))
    for session in (reference, runtime):
        session.add(mr.Click(label=label, point=point, radius=2))
    want, got = reference.refine().mask, runtime.refine().mask
    agreement = float((want == got).mean())
    print(f"{model_name}: refine agreement {agreement:.5%}")
    assert agreement >= 0.999


@pytest.mark.skipif(
    "CUDAExecutionProvider" in available_providers(), reason="onnxruntime-gpu is installed here"
)
@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_gpu_names_without_gpu_provider_raise_resource_error(name: str) -> None:
    with pytest.raises(ResourceError, match="onnxruntime-gpu") as info:
        mr.Session(mr.load_model("nuclei-unet2d"), backend=name)
    assert "not installed" in str(info.value)


def test_auto_reports_its_choice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="medrefine.engine.session.backend"):
        session = mr.Session(mr.load_model("nuclei-unet2d"), backend="auto")
    # Without onnxruntime-gpu: PyTorch on a GPU if there is one, else ONNX Runtime on the CPU
    # (2-2.7x faster than torch-cpu, README's Speed section).
    expected = "torch-cuda" if torch.cuda.is_available() else CPU
    assert session.backend.name == expected
    assert any("'auto'" in r.getMessage() and expected in r.getMessage() for r in caplog.records)


def test_unknown_name_and_torch_for_onnx_only_model_raise_input_error() -> None:
    model = mr.load_model("nuclei-unet2d")
    with pytest.raises(InputError, match="backend must be one of"):
        mr.Session(model, backend="onnx")
    assert named_backend(model, "torch").name == "torch-cpu"
