"""ONNX networks in medrefine: cut a graph, convert its head to PyTorch, export zoo models.

- :mod:`~medrefine.onnx.cut`: frozen graph + head nodes (:func:`cut_graph`, :func:`scope_nodes`,
  :func:`module_nodes`).
- :mod:`~medrefine.onnx.builder`, :mod:`~medrefine.onnx.ops` (one converter per operator) and
  :mod:`~medrefine.onnx.convert`: head nodes -> trainable ``torch.fx`` module.
- :mod:`~medrefine.onnx.shapes`, :mod:`~medrefine.onnx.shape_ops`: shape arithmetic the head
  reads (sizes to resize to, from the image's shape) moved into it, over empty size carriers.
- :mod:`~medrefine.onnx.split`: both, checked numerically (behind ``SplitModel.from_onnx``).
- :mod:`~medrefine.onnx.export`: PyTorch -> ONNX with a parity check against ONNX Runtime
  (:mod:`~medrefine.onnx.parity`), of a copy run as its owner runs it
  (:mod:`~medrefine.onnx.traceable`); a model split from ONNX has its frozen graph written
  (:mod:`~medrefine.onnx.frozen`).
"""

from medrefine.onnx.convert import convert_head
from medrefine.onnx.cut import Cut, cut_graph, module_nodes, scope_nodes
from medrefine.onnx.ops import CONVERTERS
from medrefine.onnx.split import OnnxSplit, split_onnx

SUPPORTED_OPS = tuple(sorted(CONVERTERS))

__all__ = [
    "SUPPORTED_OPS",
    "Cut",
    "OnnxSplit",
    "convert_head",
    "cut_graph",
    "module_nodes",
    "scope_nodes",
    "split_onnx",
]
