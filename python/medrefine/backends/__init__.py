"""Feature extractors: where the frozen backbone runs.

Every backend maps a preprocessed input ``(1, C, *spatial)`` float32 tensor to the tuple of
feature tensors the head takes. :func:`medrefine.backends.select.select_backend` picks the
fastest one available and says which.
"""

from medrefine.backends.base import FeatureExtractor
from medrefine.backends.onnxruntime_backend import OnnxBackbone, OnnxRuntimeBackend
from medrefine.backends.select import select_backend
from medrefine.backends.torch_backend import TorchBackend

__all__ = [
    "FeatureExtractor",
    "OnnxBackbone",
    "OnnxRuntimeBackend",
    "TorchBackend",
    "select_backend",
]
