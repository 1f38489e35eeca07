"""Make torchvision's pure-Python model code importable beside a CPU-only PyTorch.

Why this exists: the torchvision wheel on PyPI that matches torch 2.13.0 is built against the
CUDA build of PyTorch. Its compiled extension (``torchvision/_C.so``) links ``libtorch_cuda.so``,
which the CPU build of PyTorch does not ship, so the extension does not load, and the first
``import torchvision`` then fails with ``RuntimeError: operator torchvision::nms does not exist``:
torchvision registers fake (shape-only) kernels and autograd formulas for its detection operators
at import time, and that needs the operators to be declared.

The conformance suite only builds segmentation networks (DeepLabV3, FCN; segmentation-models-
pytorch's encoders through timm), whose forward passes are plain convolutions, norms and
interpolation and never call those operators. Declaring the operators' schemas (no kernel) is
enough for the import to succeed; calling one of them would still fail loudly ("no kernel").

:func:`ensure_importable` does this only when the real extension is absent (a torchvision whose
extension loads, e.g. the CPU wheel from the PyTorch index, is left untouched), and only once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

# torchvision's operator schemas (torchvision/csrc/ops/*.cpp), declared without kernels.
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
    "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
    "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

_LIBRARY: list[torch.library.Library] = []  # kept alive: dropping it removes the definitions


def _extension_loads() -> bool:
    """Whether torchvision's compiled extension loads (without importing torchvision)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    lib = next(Path(spec.origin).parent.glob("_C*.so"), None)
    if lib is None:
        return False
    try:
        torch.ops.load_library(str(lib))  # type: ignore[no-untyped-call]
    except OSError:
        return False
    return True


def ensure_importable() -> bool:
    """Declare torchvision's operators when its extension cannot load; True if torchvision is
    installed (and then importable), False if it is not installed at all."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    if _LIBRARY or hasattr(torch.ops.torchvision, "nms") or _extension_loads():
        return True
    lib = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    for schema in SCHEMAS:
        lib.define(schema)  # type: ignore[no-untyped-call]
    _LIBRARY.append(lib)
    return True
