"""Rewrite a pointwise head to act on ``(N, C)`` rows of feature vectors.

A head made of 1x1 convolutions, eval-mode batch norms and per-pixel operations (channel
slices, concatenations and softmaxes included) computes each output pixel from the features of
that pixel alone. On rows, the channel axis stays axis 1, so almost every such operation applies
unchanged; only convolutions become ``F.linear`` and batch norms ``F.batch_norm``.
:func:`as_row_head` returns None for anything it cannot prove to be per-pixel; the caller also
checks the result numerically. The rewritten head shares its parameters with the original, so
training one trains the other.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn

from medrefine.models.tracing import symbolic_trace

_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)
_ELEMENTWISE_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.exp,
    F.relu,
    F.leaky_relu,
    F.gelu,
    F.silu,
    F.elu,
    F.sigmoid,
    F.tanh,
    F.hardswish,
    F.mish,
}
_ELEMENTWISE_METHODS = {
    "relu",
    "sigmoid",
    "tanh",
    "exp",
    "contiguous",
    "float",
    "add",
    "mul",
    "sub",
    "div",
    "__add__",
    "__mul__",
}
_CHANNEL_OPS = {torch.cat, torch.concat, F.softmax, F.log_softmax, torch.softmax}


def _dim_is_channel(node: fx.Node) -> bool:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return bool(dim == 1)


def _module_ok(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return (
            all(k == 1 for k in module.kernel_size)
            and all(s == 1 for s in module.stride)
            and all(p == 0 for p in module.padding)
            and module.groups == 1
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return bool(module.track_running_stats and module.running_mean is not None)
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return module.dim == 1
    return isinstance(module, _ELEMENTWISE_MODULES)


def _channel_slice(node: fx.Node) -> bool:
    """``x[:, a:b]``: a slice of the channel axis, the same on ``(1, C, ...)`` and ``(N, C)``."""
    index = node.args[1] if len(node.args) > 1 else None
    return (
        isinstance(index, tuple)
        and len(index) == 2
        and index[0] == slice(None)
        and isinstance(index[1], slice)
        and index[1].step in (None, 1)
    )


def _node_ok(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op in ("placeholder", "output"):
        return True
    if node.op == "call_module":
        return _module_ok(gm.get_submodule(str(node.target)))
    if node.op == "call_function":
        if node.target in _CHANNEL_OPS:
            return _dim_is_channel(node)
        if node.target is operator.getitem:
            return _channel_slice(node)
        return node.target in _ELEMENTWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in _ELEMENTWISE_METHODS or (
            node.target in ("softmax", "log_softmax") and _dim_is_channel(node)
        )
    return False


class _RowConv(nn.Module):
    """A 1x1 convolution applied to rows: ``F.linear`` with the convolution's own parameters."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.conv.weight.flatten(1), self.conv.bias)


class _RowBatchNorm(nn.Module):
    """An eval-mode batch norm applied to rows (channel axis 1 of ``(N, C)``)."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        return F.batch_norm(x, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)


class RowHead(nn.Module):
    """A traced pointwise head rebuilt for rows: ``row_head(*rows) -> (N, K)`` logits.

    The graph is the head's own, with every convolution and batch norm swapped for its row form;
    the modules (and so the parameters) are the head's.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__()
        modules: dict[str, nn.Module] = {}
        for node in gm.graph.nodes:
            if node.op != "call_module":
                continue
            module = gm.get_submodule(str(node.target))
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module = _RowConv(module)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module = _RowBatchNorm(module)
            modules[str(node.target)] = module
        self.graph_module = fx.GraphModule(modules, gm.graph)

    def forward(self, *rows: torch.Tensor) -> torch.Tensor:
        return self.graph_module(*rows)


def as_row_head(head: nn.Module) -> RowHead | None:
    """A row version of ``head`` sharing its parameters, or None if it is not provably pointwise."""
    try:
        gm = head if isinstance(head, fx.GraphModule) else symbolic_trace(head)
    except Exception:  # untraceable heads simply take the slower paths
        return None
    if head.training or not all(_node_ok(n, gm) for n in gm.graph.nodes):
        return None
    return RowHead(gm)
