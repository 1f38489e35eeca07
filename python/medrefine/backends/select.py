"""Pick the fastest available feature extractor for a model, and say which.

Order: ONNX Runtime with the TensorRT provider, with CUDA, on the CPU, then PyTorch (on the GPU
when there is one). The ONNX Runtime kinds need an ONNX graph of the backbone: the model's own
(a :meth:`~medrefine.SplitModel.from_onnx` model) or ``onnx_backbone``, an export of a PyTorch
model's backbone with the same outputs (``export/export_onnx.py --part backbone``). ONNX Runtime
may fall back from a listed GPU provider to the CPU; the returned backend's ``name`` says what
actually runs, and the choice is logged (logger ``medrefine.backends.select``, level INFO).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import TYPE_CHECKING

import torch

from medrefine.backends.base import FeatureExtractor
from medrefine.backends.onnxruntime_backend import (
    PROVIDERS,
    OnnxBackbone,
    OnnxRuntimeBackend,
    available_providers,
)
from medrefine.backends.torch_backend import TorchBackend
from medrefine.errors import InputError

if TYPE_CHECKING:  # models.split imports this package
    from medrefine.models.split import SplitModel

logger = logging.getLogger(__name__)

#: Backend kinds in order of preference, and the ONNX Runtime provider of each.
KINDS = ("tensorrt", "cuda", "cpu", "torch")
_PROVIDER = dict(zip(KINDS[:3], PROVIDERS, strict=True))


def _onnx_graph(
    model: SplitModel, onnx_backbone: bytes | str | os.PathLike[str] | None
) -> bytes | str | os.PathLike[str] | None:
    if onnx_backbone is not None:
        return onnx_backbone
    if isinstance(model.extractor, OnnxRuntimeBackend):
        return model.extractor.model_bytes
    return None


def _order(prefer: str | None) -> list[str]:
    if prefer is None:
        return list(KINDS)
    if prefer not in KINDS:
        raise InputError(f"prefer must be one of {KINDS}, got {prefer!r}")
    return [prefer] + [k for k in KINDS if k != prefer]


def _onnxruntime(
    graph: bytes | str | os.PathLike[str], kinds: list[str]
) -> OnnxRuntimeBackend | None:
    """A session on the first listed provider of ``kinds`` (falling back down the list)."""
    listed = available_providers()
    providers = [_PROVIDER[k] for k in kinds if k in _PROVIDER and _PROVIDER[k] in listed]
    return OnnxRuntimeBackend(graph, providers) if providers else None


def _torch(model: SplitModel) -> TorchBackend:
    """PyTorch on the GPU if there is one (on a copy: ``model.backbone`` stays on the CPU)."""
    if torch.cuda.is_available():
        return TorchBackend(copy.deepcopy(model.backbone), "cuda")
    return TorchBackend(model.backbone)


def select_backend(
    model: SplitModel,
    prefer: str | None = None,
    onnx_backbone: bytes | str | os.PathLike[str] | None = None,
) -> FeatureExtractor:
    """The fastest feature extractor for ``model`` available here.

    Args:
        model: the split network.
        prefer: a kind of :data:`KINDS` to try first (``"tensorrt"``, ``"cuda"``, ``"cpu"`` for
            ONNX Runtime, ``"torch"``); the others follow in the default order.
        onnx_backbone: an ONNX export of a PyTorch model's backbone (image -> its features).

    Returns:
        A backend whose ``name`` says what runs it, e.g. ``"onnxruntime-CPUExecutionProvider"``
        or ``"torch-cpu"``.
    """
    graph, order = _onnx_graph(model, onnx_backbone), _order(prefer)
    onnx_only = isinstance(model.backbone, OnnxBackbone)
    for i, kind in enumerate(order):
        if kind == "torch" and not onnx_only:
            backend: FeatureExtractor = _torch(model)
            break
        if kind != "torch" and graph is not None:
            found = _onnxruntime(graph, [k for k in order[i:] if k != "torch"])
            if found is not None:
                backend = found
                break
    else:
        raise InputError(f"no backend can run model {model.name!r}: install onnxruntime")
    logger.info("model %r: backbone runs on %s", model.name, backend.name)
    return backend
