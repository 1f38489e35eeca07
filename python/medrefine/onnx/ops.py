"""One converter per ONNX operator a segmentation head uses (see :mod:`medrefine.onnx.convert`).

Tensors are channel-first ``(N, C, *spatial)``. Operator semantics follow the ONNX operator
specification; each converter refuses (``UnsupportedModelError`` naming the node) the attribute
values that have no exact PyTorch equivalent instead of approximating them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn

from medrefine.onnx.builder import Converter, HeadBuilder, attributes, refuse
from medrefine.onnx.shape_ops import (
    computed_resize,
    gather_node,
    shape,
    slice_node,
    squeeze_node,
    unsqueeze_node,
)

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d,
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
_BATCH_NORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM: dict[int, type[nn.Module]] = {
    1: nn.InstanceNorm1d,
    2: nn.InstanceNorm2d,
    3: nn.InstanceNorm3d,
}
_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _param(value: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(value, dtype=np.float32)))


def _pick(table: dict[int, type[nn.Module]], dims: int, node: onnx.NodeProto) -> type[nn.Module]:
    if dims not in table:
        raise refuse(node, f"{dims} spatial dimensions (1, 2 or 3 are supported)")
    return table[dims]


def _symmetric_pads(node: onnx.NodeProto, a: dict[str, Any], kernel: Sequence[int]) -> list[int]:
    """Per-axis padding from ``pads``/``auto_pad``; begin and end must match."""
    dims, auto = len(kernel), a.get("auto_pad", "NOTSET")
    strides, dilations = a.get("strides", [1] * dims), a.get("dilations", [1] * dims)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
        if any(s != 1 for s in strides) or any(t % 2 for t in total):
            raise refuse(node, f"auto_pad {auto} with strides {strides} pads unevenly")
        return [t // 2 for t in total]
    pads = [0] * (2 * dims) if auto == "VALID" else a.get("pads", [0] * (2 * dims))
    if pads[:dims] != pads[dims:]:
        raise refuse(node, f"asymmetric padding {pads}")
    return list(pads[:dims])


def conv(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Conv -> ``nn.Conv{1,2,3}d``; W ``(C_out, C_in / group, *kernel)``."""
    w, bias, a = b.weight(node, 1), b.weight(node, 2), attributes(node)
    assert w is not None
    kernel, groups = list(w.shape[2:]), int(a.get("group", 1))
    module = _pick(_CONV, len(kernel), node)(
        w.shape[1] * groups,
        w.shape[0],
        kernel,
        stride=a.get("strides", 1),
        padding=_symmetric_pads(node, a, kernel),
        dilation=a.get("dilations", 1),
        groups=groups,
        bias=bias is not None,
    )
    module.weight = _param(w)
    if bias is not None:
        module.bias = _param(bias)
    return b.call_module(node, module, b.tensor(node.input[0]))


def conv_transpose(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """ConvTranspose -> ``nn.ConvTranspose{1,2,3}d``; W ``(C_in, C_out / group, *kernel)``."""
    w, bias, a = b.weight(node, 1), b.weight(node, 2), attributes(node)
    assert w is not None
    if "output_shape" in a or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise refuse(node, "output_shape and auto_pad SAME_* are not supported")
    kernel, groups = list(w.shape[2:]), int(a.get("group", 1))
    module = _pick(_CONV_T, len(kernel), node)(
        w.shape[0],
        w.shape[1] * groups,
        kernel,
        stride=a.get("strides", 1),
        padding=_symmetric_pads(node, a, kernel),
        output_padding=a.get("output_padding", 0),
        groups=groups,
        bias=bias is not None,
        dilation=a.get("dilations", 1),
    )
    module.weight = _param(w)
    if bias is not None:
        module.bias = _param(bias)
    return b.call_module(node, module, b.tensor(node.input[0]))


def batch_norm(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """BatchNormalization (inference form, running statistics) -> ``nn.BatchNorm{1,2,3}d``."""
    a = attributes(node)
    if a.get("training_mode", 0) or not a.get("spatial", 1):
        raise refuse(node, "training_mode=1 or spatial=0")
    scale, shift, mean, var = (b.weight(node, i) for i in range(1, 5))
    assert scale is not None and shift is not None and mean is not None and var is not None
    dims = b.rank(node.input[0]) - 2
    module = _pick(_BATCH_NORM, dims, node)(len(scale), eps=float(a.get("epsilon", 1e-5)))
    module.weight, module.bias = _param(scale), _param(shift)
    with torch.no_grad():
        module.running_mean.copy_(torch.from_numpy(np.asarray(mean, np.float32)))  # type: ignore[operator]
        module.running_var.copy_(torch.from_numpy(np.asarray(var, np.float32)))  # type: ignore[operator]
    return b.call_module(node, module.eval(), b.tensor(node.input[0]))


def instance_norm(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """InstanceNormalization -> ``nn.InstanceNorm{1,2,3}d(affine=True)`` (statistics per image)."""
    scale, shift = b.weight(node, 1), b.weight(node, 2)
    assert scale is not None and shift is not None
    dims = b.rank(node.input[0]) - 2
    eps = float(attributes(node).get("epsilon", 1e-5))
    module = _pick(_INSTANCE_NORM, dims, node)(len(scale), eps=eps, affine=True)
    module.weight, module.bias = _param(scale), _param(shift)
    return b.call_module(node, module, b.tensor(node.input[0]))


def prelu(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """PRelu -> ``nn.PReLU``; the slope must be one value or one per channel (axis 1)."""
    slope = b.weight(node, 1)
    assert slope is not None
    rank, shape = b.rank(node.input[0]), slope.shape
    trailing_ones = len(shape) == rank - 1 and all(s == 1 for s in shape[1:])
    leading_one = len(shape) == rank and shape[0] == 1 and all(s == 1 for s in shape[2:])
    if slope.size != 1 and not (trailing_ones or leading_one):
        raise refuse(node, f"slope of shape {shape} is not one value nor one per channel")
    module = nn.PReLU(slope.size)
    module.weight = _param(slope.reshape(-1))
    return b.call_module(node, module, b.tensor(node.input[0]))


def _module(factory: Callable[[dict[str, Any]], nn.Module]) -> Converter:
    def convert(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
        return b.call_module(node, factory(attributes(node)), b.tensor(node.input[0]))

    return convert


def _softmax(cls: type[nn.Softmax] | type[nn.LogSoftmax]) -> Converter:
    def convert(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
        rank = b.rank(node.input[0])
        axis = int(attributes(node).get("axis", -1 if b.cut.opset >= 13 else 1)) % rank
        if b.cut.opset < 13 and axis != rank - 1:  # before opset 13: softmax over axes >= axis
            raise refuse(node, f"opset {b.cut.opset} softmax over axes {axis}.. (not one axis)")
        return b.call_module(node, cls(dim=axis), b.tensor(node.input[0]))

    return convert


def _operand(b: HeadBuilder, name: str) -> fx.Node | float | int:
    """A computed tensor, or a one-element constant as a Python number (keeps heads pointwise):
    an ``int`` for an integer constant (shape arithmetic stays integer), else a ``float``."""
    value = b.constant(name)
    if value is not None and value.size == 1 and name not in b.env:
        scalar = value.reshape(())
        return int(scalar) if np.issubdtype(value.dtype, np.integer) else float(scalar)
    return b.tensor(name)


def _integral(x: Any) -> bool:
    return isinstance(x, int) or (isinstance(x, torch.Tensor) and not x.is_floating_point())


def divide(a: Any, b: Any) -> Any:
    """ONNX ``Div``: ``a / b`` for floats; for two integer operands (int64 shape arithmetic such
    as ``Shape -> Gather -> Div``) the quotient truncated toward zero, as ONNX Runtime computes
    it (``torch``'s ``/`` would return a float)."""
    if _integral(a) and _integral(b):
        return torch.div(torch.as_tensor(a), b, rounding_mode="trunc")
    return a / b


def mod(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Mod -> ``torch.remainder`` (the divisor's sign, ONNX's integer ``fmod=0``) or
    ``torch.fmod`` (the dividend's sign, ``fmod=1``, required for floats)."""
    fn = torch.fmod if int(attributes(node).get("fmod", 0)) else torch.remainder
    a, c = b.tensor(node.input[0]), _operand(b, node.input[1])
    return b.call_function(fn, (a, c))


def _function(fn: Callable[[Any], Any]) -> Converter:
    def convert(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
        return b.call_function(fn, (b.tensor(node.input[0]),))

    return convert


def _binary(fn: Callable[[Any, Any], Any]) -> Converter:
    def convert(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
        return b.call_function(fn, (_operand(b, node.input[0]), _operand(b, node.input[1])))

    return convert


def _reduce(fn: Callable[..., Any], axes_input_since: int) -> Converter:
    """ReduceSum / ReduceMax -> ``torch.sum`` / ``torch.amax`` over the node's axes (an
    attribute before opset ``axes_input_since``, a constant input from it; none: every axis,
    or the input itself with ``noop_with_empty_axes``), ``keepdim`` as ``keepdims``."""

    def convert(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
        a, x = attributes(node), b.tensor(node.input[0])
        if b.cut.opset >= axes_input_since:
            given = b.weight(node, 1)
            axes = [] if given is None else [int(v) for v in given.reshape(-1)]
        else:
            axes = [int(v) for v in a.get("axes", [])]
        rank = b.rank(node.input[0])
        if not axes and int(a.get("noop_with_empty_axes", 0)):
            return x
        dims = tuple(sorted({v % rank for v in axes} or set(range(rank))))
        return b.call_function(fn, (x,), {"dim": dims, "keepdim": bool(a.get("keepdims", 1))})

    return convert


def concat(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Concat -> ``torch.cat(..., dim=axis)`` (a negative axis counted from the rank)."""
    axis = int(attributes(node)["axis"]) % b.rank(node.output[0])
    return b.call_function(torch.cat, ([b.tensor(t) for t in node.input],), {"dim": axis})


def _resize_mode(node: onnx.NodeProto, a: dict[str, Any], dims: int) -> dict[str, Any]:
    """``F.interpolate`` mode/align_corners equal to the node's mode and coordinate mapping."""
    mode, coords = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    rounding = a.get("nearest_mode", "round_prefer_floor")
    if mode == "nearest" and coords == "asymmetric" and rounding == "floor":
        return {"mode": "nearest"}
    if mode == "nearest" and coords == "half_pixel" and rounding == "round_prefer_ceil":
        return {"mode": "nearest-exact"}
    if mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return {"mode": _LINEAR_MODES[dims], "align_corners": coords == "align_corners"}
    raise refuse(node, f"mode {mode!r}, coordinates {coords!r}, nearest_mode {rounding!r}")


def _computed(b: HeadBuilder, node: onnx.NodeProto, index: int) -> str | None:
    """Name of input ``index`` of ``node`` when it is given and not a constant."""
    name = node.input[index] if index < len(node.input) else ""
    return name if name and b.constant(name) is None else None


def resize(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Resize (batch and channel axes kept) -> ``F.interpolate``; scales or sizes constant, or
    computed in the head from shapes (:func:`medrefine.onnx.shape_ops.computed_resize`)."""
    a = attributes(node)
    scales_at, sizes_at = (1, None) if b.cut.opset < 11 else (2, 3)  # input indices
    if b.cut.opset < 11:  # opset 10: inputs (X, scales), asymmetric coordinates
        a = {**a, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    policy = a.get("keep_aspect_ratio_policy", "stretch")
    if a.get("antialias", 0) or "axes" in a or policy != "stretch":
        raise refuse(node, "antialias, axes and keep_aspect_ratio_policy are not supported")
    for index in (sizes_at, scales_at):
        name = None if index is None else _computed(b, node, index)
        if name is not None:
            mode = _resize_mode(node, a, b.rank(node.input[0]) - 2)
            return computed_resize(b, node, name, index == sizes_at, mode)
    scales = b.weight(node, scales_at)
    sizes = None if sizes_at is None else b.weight(node, sizes_at)
    if sizes is not None and sizes.size > 2:
        kwargs = {**_resize_mode(node, a, sizes.size - 2), "size": tuple(int(v) for v in sizes[2:])}
    elif scales is not None and scales.size > 2 and np.all(scales[:2] == 1):
        factors = tuple(float(v) for v in scales[2:])
        kwargs = {**_resize_mode(node, a, scales.size - 2), "scale_factor": factors}
    else:
        raise refuse(node, "scales or sizes must be constants that keep the batch and channel axes")
    return b.call_function(F.interpolate, (b.tensor(node.input[0]),), kwargs)


def _alias(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Identity, and Dropout at inference: the input itself."""
    return b.tensor(node.input[0])


def cast(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Cast -> ``.float()`` for float32, ``.to(dtype)`` otherwise."""
    to = onnx.helper.tensor_dtype_to_np_dtype(int(attributes(node)["to"]))
    x = b.tensor(node.input[0])
    if to == np.float32:
        return b.call_method("float", x)
    return b.call_method("to", x, torch.from_numpy(np.zeros(0, to)).dtype)


CONVERTERS: dict[str, Converter] = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "BatchNormalization": batch_norm,
    "InstanceNormalization": instance_norm,
    "Relu": _module(lambda a: nn.ReLU()),
    "LeakyRelu": _module(lambda a: nn.LeakyReLU(float(a.get("alpha", 0.01)))),
    "PRelu": prelu,
    "Sigmoid": _module(lambda a: nn.Sigmoid()),
    "Tanh": _module(lambda a: nn.Tanh()),
    "Softmax": _softmax(nn.Softmax),
    "LogSoftmax": _softmax(nn.LogSoftmax),
    "Add": _binary(operator.add),
    "Sub": _binary(operator.sub),
    "Mul": _binary(operator.mul),
    "Div": _binary(divide),
    "Mod": mod,
    "Exp": _function(torch.exp),
    "ReduceSum": _reduce(torch.sum, 13),
    "ReduceMax": _reduce(torch.amax, 18),
    "Floor": _function(torch.floor),
    "Ceil": _function(torch.ceil),
    "Concat": concat,
    "Resize": resize,
    "Identity": _alias,
    "Dropout": _alias,
    "Cast": cast,
    "Shape": shape,
    "Gather": gather_node,
    "Slice": slice_node,
    "Unsqueeze": unsqueeze_node,
    "Squeeze": squeeze_node,
}
