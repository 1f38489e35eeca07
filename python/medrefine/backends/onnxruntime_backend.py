"""Backbone in ONNX Runtime: TensorRT, CUDA or CPU execution provider, loaded once.

``onnxruntime-gpu`` lists the TensorRT and CUDA providers even on a machine without a GPU and
falls back to the CPU silently, so the backend's name comes from
``InferenceSession.get_providers()`` (what actually runs), never from what was asked for.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medrefine.backends.onnx_file import OnnxSource, load
from medrefine.errors import InputError, UnsupportedModelError

logger = logging.getLogger(__name__)

#: Execution providers in order of preference (fastest first).
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

#: Graph optimisation levels by name, and ONNX Runtime's ``GraphOptimizationLevel`` member of each.
OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def available_providers() -> list[str]:
    """The providers of :data:`PROVIDERS` this ONNX Runtime build lists, in preference order
    (empty when ``onnxruntime`` is not installed). Listed is not working: see the module doc."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    listed = set(ort.get_available_providers())
    return [p for p in PROVIDERS if p in listed]


def model_bytes(source: OnnxSource) -> bytes:
    """Serialized ONNX model from a ModelProto, bytes or a file path (read by
    :func:`~medrefine.backends.onnx_file.load`).

    Raises:
        NotFoundError: no file at the path.
        InputError: the file is empty or not a complete ONNX model; the message names it.
    """
    if isinstance(source, bytes):
        return source
    return load(source).SerializeToString(deterministic=True)


class OnnxRuntimeBackend:
    """Runs an ONNX backbone ``image -> features`` in one ``onnxruntime.InferenceSession``.

    Args:
        source: the ONNX model (``ModelProto``, serialized bytes or a path). Its one input is the
            preprocessed image ``(1, C, *spatial)`` float32; its outputs are the features.
        providers: execution providers to try, in order; by default every available one of
            TensorRT, CUDA and CPU. ``name`` reports the one that actually runs.
        threads: intra-op threads (0: ONNX Runtime's default, one per physical core).
        optimization: graph optimisation level, one of :data:`OPTIMIZATION` (default ``"all"``).

    Attributes:
        name: ``"onnxruntime-<provider>"``, e.g. ``"onnxruntime-CPUExecutionProvider"``.
        provider: the execution provider that runs the graph.
        digest: SHA-256 (first 16 hex digits) of the serialized graph.
    """

    def __init__(
        self,
        source: OnnxSource,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        optimization: str = "all",
    ) -> None:
        if optimization not in OPTIMIZATION:
            raise InputError(f"optimization must be one of {OPTIMIZATION}, got {optimization!r}")
        if threads < 0:
            raise InputError(f"threads must be 0 (default) or positive, got {threads}")
        self._bytes = model_bytes(source)
        self._requested = list(providers) if providers is not None else available_providers()
        self.threads, self.optimization = threads, optimization
        self.digest = hashlib.sha256(self._bytes).hexdigest()[:16]
        self._open()

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise UnsupportedModelError(
                "ONNX models need onnxruntime: pip install 'medrefine[cpu]' (or [gpu])"
            ) from exc
        options = ort.SessionOptions()
        # Idle ORT worker threads otherwise spin for a while after each run, taking the cores
        # from the PyTorch head that runs next (2 cores: a 10 ms PyTorch pass after a run took
        # up to 4x longer, and an export's parity check 10x longer).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, OPTIMIZATION[self.optimization]
        )
        self._session = ort.InferenceSession(self._bytes, options, providers=self._requested)
        self.provider: str = self._session.get_providers()[0]
        self.name = f"onnxruntime-{self.provider}"
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        logger.info("ONNX Runtime runs the backbone on %s", self.provider)

    @property
    def model_bytes(self) -> bytes:
        """The serialized ONNX graph this backend runs."""
        return self._bytes

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Feature tuple for input ``(1, C, *spatial)`` float32, as CPU torch tensors."""
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self._session.run(self._outputs, {self._input: array})
        return tuple(torch.from_numpy(np.asarray(a)) for a in out)

    # An InferenceSession cannot be pickled or deep-copied: keep the graph, reopen the session.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "bytes": self._bytes,
            "providers": self._requested,
            "digest": self.digest,
            "threads": self.threads,
            "optimization": self.optimization,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._bytes, self._requested = state["bytes"], state["providers"]
        self.threads, self.optimization = state["threads"], state["optimization"]
        self.digest = state["digest"]
        self._open()


class OnnxBackbone(nn.Module):
    """``nn.Module`` face of an :class:`OnnxRuntimeBackend`: ``backbone(x)`` -> feature tuple.

    It has no parameters (the graph is frozen and runs outside PyTorch) and no autograd.
    """

    def __init__(self, backend: OnnxRuntimeBackend) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features of an input ``(1, C, *spatial)`` float32, as CPU tensors."""
        return self.backend.features(x)
