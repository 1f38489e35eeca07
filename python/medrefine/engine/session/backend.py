"""A backend by name: ``Session(model, backend="auto" | "torch" | "onnxruntime" | ...)``.

- ``"torch"``: the PyTorch backbone (on the GPU when PyTorch sees one, else the CPU).
- ``"onnxruntime"``: ONNX Runtime on its CPU execution provider.
- ``"cuda"`` / ``"tensorrt"``: ONNX Runtime on the CUDA / TensorRT execution provider (these need
  ``onnxruntime-gpu`` and a GPU).
- ``"auto"``: the fastest that works here: ONNX Runtime on TensorRT, on CUDA, PyTorch on a GPU,
  ONNX Runtime on the CPU, PyTorch on the CPU; the
  choice is logged (logger ``medrefine.engine.session.backend``, INFO) and is the returned backend's
  ``name``.

A PyTorch model without an ONNX graph of its backbone gets one exported on first use
(:func:`medrefine.onnx.export.export_backbone`, parity-checked), kept for the life of the process.

An explicit choice that cannot run here raises :class:`~medrefine.errors.ResourceError` naming
what is missing (the package, the provider, the GPU). Whether a provider works is decided by the
providers a created ``InferenceSession`` actually uses (``get_providers()``): ``onnxruntime-gpu``
lists CUDA and TensorRT without a GPU and falls back to the CPU silently.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from medrefine.backends.base import FeatureExtractor
from medrefine.backends.onnxruntime_backend import (
    OnnxBackbone,
    OnnxRuntimeBackend,
    available_providers,
)
from medrefine.backends.select import select_backend
from medrefine.errors import InputError, MedrefineError, ResourceError

if TYPE_CHECKING:  # models.split imports this package
    from medrefine.models.split import SplitModel

logger = logging.getLogger(__name__)

#: Names a Session accepts for ``backend``.
NAMES = ("auto", "torch", "onnxruntime", "cuda", "tensorrt")
_PROVIDER = {
    "onnxruntime": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_GRAPHS: dict[tuple[str, str], bytes] = {}
_GRAPHS_LOCK = threading.Lock()


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_graph(model: SplitModel) -> bytes:
    """Serialized ONNX graph of ``model``'s backbone (image -> the head's input features).

    Raises:
        UnsupportedModelError: PyTorch cannot export the backbone, or the export fails its
            parity check.
    """
    if isinstance(model.extractor, OnnxRuntimeBackend):
        return model.extractor.model_bytes
    from medrefine.onnx.export import export_backbone

    key = (model.name, model.digest())
    with _GRAPHS_LOCK:
        if key not in _GRAPHS:
            with tempfile.TemporaryDirectory() as folder:
                result, _ = export_backbone(model, folder)
                _GRAPHS[key] = Path(result.path).read_bytes()
                logger.info(
                    "model %r: backbone exported to ONNX (max abs diff %.2e)",
                    model.name,
                    result.max_abs_diff,
                )
        return _GRAPHS[key]


def check_available(name: str) -> None:
    """Raise ResourceError when the backend called ``name`` needs a package or provider this
    machine lacks (checked without a model, e.g. before a server loads its models)."""
    if name not in _PROVIDER:
        return
    provider = _PROVIDER[name]
    if not _has_onnxruntime():
        raise ResourceError(f"backend {name!r} needs onnxruntime, which is not installed")
    if provider not in available_providers():
        package = "onnxruntime" if name == "onnxruntime" else "onnxruntime-gpu"
        raise ResourceError(
            f"backend {name!r}: {package} with the {provider} is not installed "
            f"(this onnxruntime lists {', '.join(available_providers()) or 'no provider'})"
        )


def _explicit_onnxruntime(model: SplitModel, name: str) -> OnnxRuntimeBackend:
    provider = _PROVIDER[name]
    check_available(name)
    backend = OnnxRuntimeBackend(onnx_graph(model), [provider])
    if backend.provider != provider:
        raise ResourceError(
            f"backend {name!r}: ONNX Runtime lists {provider} but the session runs on "
            f"{backend.provider}: no usable GPU (or its CUDA/TensorRT libraries are missing)"
        )
    return backend


def named_backend(model: SplitModel, name: str) -> FeatureExtractor:
    """The feature extractor called ``name`` (one of :data:`NAMES`) for ``model``.

    Raises:
        InputError: ``name`` is not one of :data:`NAMES`, or ``"torch"`` for a model whose
            backbone exists only as ONNX.
        ResourceError: the choice needs a package, provider or GPU this machine lacks.
    """
    if name not in NAMES:
        raise InputError(f"backend must be one of {NAMES} or a FeatureExtractor, got {name!r}")
    if name == "torch":
        if isinstance(model.backbone, OnnxBackbone):
            raise InputError(f"model {model.name!r} has no PyTorch backbone (it is an ONNX graph)")
        backend = select_backend(model, prefer="torch")
    elif name == "auto":
        graph = None
        if _has_onnxruntime():
            try:
                graph = onnx_graph(model)
            except MedrefineError as exc:
                logger.info("model %r: no ONNX backbone (%s); PyTorch runs it", model.name, exc)
        backend = select_backend(model, onnx_backbone=graph)
        # ONNX Runtime on the CPU is not faster than PyTorch on a GPU.
        gpu_torch = torch.cuda.is_available() and not isinstance(model.backbone, OnnxBackbone)
        if backend.name == "onnxruntime-CPUExecutionProvider" and gpu_torch:
            backend = select_backend(model, prefer="torch")
    else:
        backend = _explicit_onnxruntime(model, name)
    logger.info("model %r: backend %r runs the backbone on %s", model.name, name, backend.name)
    return backend


def resolve_backend(model: SplitModel, backend: FeatureExtractor | str | None) -> FeatureExtractor:
    """What a Session runs: ``backend`` itself (an object), :func:`named_backend` (a name), or,
    for None, the model's own extractor or PyTorch on the CPU."""
    if isinstance(backend, str):
        return named_backend(model, backend)
    if backend is not None:
        return backend
    if model.extractor is not None:
        return model.extractor
    from medrefine.backends.torch_backend import TorchBackend

    return TorchBackend(model.backbone)
