"""Values of an ONNX graph known without running it: weights, and shapes fixed at export.

Folded: initializers, ``Constant``; ``Identity``, ``Cast``, ``Reshape``, ``Unsqueeze`` and
``Squeeze`` of constants; and the shape arithmetic PyTorch exports for an interpolation to a fixed
size (``Shape``, ``Slice``, ``Concat``, ``Cast`` of 1-D int vectors), as far as shape inference
knows the sizes involved. A tensor whose value depends on a dynamic (e.g. spatial) size is not
folded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

Constants = dict[str, np.ndarray]
#: Per tensor, its inferred shape; None for an axis of unknown or dynamic size.
Shapes = dict[str, list[int | None]]
_Vector = list[int | None]  # a 1-D int tensor, None where the value is not known


def infer_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Shapes]:
    """``model`` with ONNX shape inference applied, and the shapes it found."""
    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes: Shapes = {}
    for v in [*graph.value_info, *graph.input, *graph.output]:
        t = v.type.tensor_type
        if v.type.HasField("tensor_type") and t.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return inferred, shapes


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    found = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name]
    return found[0] if found else default


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
    return None


def _fold_value(node: onnx.NodeProto, values: Constants) -> np.ndarray | None:
    """The output of a node whose inputs are all constant, or None."""
    if node.op_type == "Constant":
        return _constant_node_value(node)
    args = [values.get(name) for name in node.input if name]
    if not args or any(a is None for a in args):
        return None
    x, rest = args[0], [a for a in args[1:] if a is not None]
    assert x is not None
    if node.op_type == "Identity":
        return x
    if node.op_type == "Cast":
        to = _attr(node, "to")
        assert isinstance(to, int)
        return x.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    if node.op_type == "Reshape" and len(rest) == 1:
        shape = [d if d != 0 else x.shape[i] for i, d in enumerate(rest[0].tolist())]
        return x.reshape(shape)
    if node.op_type in ("Unsqueeze", "Squeeze") and len(rest) == 1:
        axes = tuple(int(a) for a in rest[0].tolist())
        return np.expand_dims(x, axes) if node.op_type == "Unsqueeze" else np.squeeze(x, axes)
    return None


def _vector(name: str, values: Constants, partial: dict[str, _Vector]) -> _Vector | None:
    if name in partial:
        return partial[name]
    value = values.get(name)
    if value is None or value.ndim != 1 or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.tolist()]


def _first(values: Constants, name: str) -> int | None:
    value = values.get(name) if name else None
    return int(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _fold_shape(
    node: onnx.NodeProto, values: Constants, partial: dict[str, _Vector], shapes: Shapes
) -> _Vector | None:
    """The output of a shape computation, known where the sizes it reads are known."""
    op, inputs = node.op_type, list(node.input)
    if op == "Shape" and inputs[0] in shapes:
        start, end = _attr(node, "start", 0), _attr(node, "end", None)
        assert isinstance(start, int) and (end is None or isinstance(end, int))
        return shapes[inputs[0]][start:end]
    if op == "Identity" or (op == "Cast" and _attr(node, "to") == onnx.TensorProto.INT64):
        return _vector(inputs[0], values, partial)
    if op == "Concat":
        parts = [_vector(name, values, partial) for name in inputs]
        return None if any(p is None for p in parts) else [v for p in parts for v in p or []]
    if op == "Slice":  # opset >= 10: data, starts, ends[, axes[, steps]]
        data = _vector(inputs[0], values, partial)
        start, end, axis, step = (_first(values, n) for n in (inputs + ["", "", "", ""])[1:5])
        if data is None or start is None or end is None or axis not in (None, 0, -1):
            return None
        return data[start:end:step]
    return None


def constant_values(model: onnx.ModelProto, shapes: Shapes) -> Constants:
    """Every tensor of ``model`` whose value is known without running it, by name."""
    values: Constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    partial: dict[str, _Vector] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        value = _fold_value(node, values)
        vector = None if value is not None else _fold_shape(node, values, partial, shapes)
        if vector is not None and None not in vector:
            value = np.asarray(vector, np.int64)
        if value is not None:
            values[node.output[0]] = value
        elif vector is not None:
            partial[node.output[0]] = vector
    return values
