"""The frozen graph of a model split from ONNX, written as its backbone export.

A :meth:`~medrefine.SplitModel.from_onnx` model runs its frozen graph (``image -> features``)
in ONNX Runtime already; ``medrefine export onnx`` writes that graph instead of tracing the
backbone (which would record ONNX Runtime's outputs as constants). Its input is renamed
``"image"`` and its outputs get the names of a PyTorch backbone's export (``"features"`` or
``"features_0"``, ...), through ``Identity`` nodes, so the graph itself is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from torch import nn

from medrefine.backends.onnxruntime_backend import OnnxBackbone
from medrefine.errors import UnsupportedModelError

__all__ = ["frozen_graph", "input_layout", "write_frozen"]


def frozen_graph(backbone: nn.Module) -> onnx.ModelProto | None:
    """The ONNX graph ``backbone`` runs in ONNX Runtime, or None for a PyTorch backbone."""
    if not isinstance(backbone, OnnxBackbone):
        return None
    return onnx.load_from_string(backbone.backend.model_bytes)


def input_layout(model: onnx.ModelProto) -> tuple[int | None, tuple[int, ...] | None]:
    """The input's channels (None: dynamic) and its spatial sizes when the graph fixes them all
    (None: some axis is dynamic)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    channels = sizes[1] if len(sizes) > 1 and sizes[1] > 0 else None
    spatial = tuple(sizes[2:])
    return channels, spatial if spatial and all(spatial) else None


def write_frozen(model: onnx.ModelProto, path: Path, names: Sequence[str]) -> None:
    """Write ``model`` to ``path`` with its input named ``"image"`` and its outputs ``names``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    taken = {t for n in graph.node for t in (*n.input, *n.output)}

    def free(name: str) -> None:
        if name in taken:
            raise UnsupportedModelError(
                f"cannot name the frozen graph's tensors as an export's: {name!r} is taken"
            )

    if graph.input[0].name != "image":
        free("image")
        graph.node.insert(0, onnx.helper.make_node("Identity", ["image"], [graph.input[0].name]))
        graph.input[0].name = "image"
    for output, name in zip(graph.output, names, strict=True):
        if output.name != name:
            free(name)
            graph.node.append(onnx.helper.make_node("Identity", [output.name], [name]))
            output.name = name
    onnx.checker.check_model(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(path))
