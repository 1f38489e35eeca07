"""Turn the head nodes of a :class:`~medrefine.onnx.cut.Cut` into a trainable ``torch.fx`` module.

Each ONNX node becomes one ``torch.nn`` module (``nn.Conv2d``, ``nn.ReLU``, ...) or one function
call (``operator.add``, ``torch.cat``, ``F.interpolate``) of a ``torch.fx.GraphModule``. Weights
(Conv, ConvTranspose, BatchNormalization, InstanceNormalization, PRelu) become ``nn.Parameter``s
and are trained by the session; batch-norm running statistics and other constant operands become
buffers. A head of 1x1 convolutions and per-pixel operations therefore comes out in a form
:func:`medrefine.engine.head.pointwise.as_row_head` accepts, the fast path of refinement.

The module takes the cut's features positionally, each ``(1, C_i, *spatial_i)`` float32
(channel-first, spatial axes in array order), and returns the logits ``(1, K, *spatial)``. It is
returned in eval mode.
"""

from __future__ import annotations

from torch import fx

from medrefine.errors import UnsupportedModelError
from medrefine.onnx.builder import HeadBuilder, unsupported_nodes
from medrefine.onnx.cut import Cut
from medrefine.onnx.ops import CONVERTERS


def convert_head(cut: Cut, spatial_dims: int) -> fx.GraphModule:
    """The head of ``cut`` as a trainable ``torch.fx.GraphModule`` in eval mode.

    Raises:
        UnsupportedModelError: naming every node whose operator has no converter, or the first
            node that uses a supported operator in an unsupported way (e.g. asymmetric padding).
    """
    missing = unsupported_nodes(cut, CONVERTERS)
    if missing:
        raise UnsupportedModelError(
            f"the head contains operators the ONNX converter does not support: {missing}; "
            f"supported: {sorted(CONVERTERS)}. Cut the network later, after these nodes"
        )
    builder = HeadBuilder(cut, spatial_dims)
    for node in cut.head:
        builder.env[node.output[0]] = CONVERTERS[node.op_type](builder, node)
    return builder.finish(cut.output)
