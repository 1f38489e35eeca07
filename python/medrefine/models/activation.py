"""Heads whose network ends in a softmax or sigmoid: refine on logits, not probabilities.

The engine's objective (cross-entropy over the head's output, softmax over the class axis) takes
logits. A network whose last operation turns logits into probabilities would be refined on
``softmax(softmax(z))``, which barely moves (the probabilities lie in [0, 1]), so the head never
learns the marks. :func:`strip_activation` cuts a final softmax or sigmoid off the head's graph
(argmax, hence the network's mask, is unchanged), a softmax written out by hand too
(``z.exp() / z.exp().sum(1, keepdim=True)``, also after subtracting ``z.amax(1)``: the head then
returns ``z``); :func:`looks_like_probabilities` recognises
probabilities a graph does not show (e.g. a softmax hidden inside a traced leaf module), which
:class:`LogProbabilities` then turns into log-probabilities, logits up to a per-pixel constant.
"""

from __future__ import annotations

import torch
from torch import fx, nn

#: What a split model's head returns: ``"logits"`` (as the network), ``"softmax cut"`` /
#: ``"sigmoid cut"`` (the network's final activation was removed from the head),
#: ``"log-probabilities"`` (probabilities detected numerically; the head returns their log).
OutputKinds = ("logits", "softmax cut", "sigmoid cut", "log-probabilities")

_LOG_FLOOR = 1e-12  # probabilities below this are taken as this before the log


def _kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """``"softmax"`` / ``"sigmoid"`` if ``node`` applies one over the channel axis, else None."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, nn.Softmax):  # dim None: PyTorch's implicit channel axis
            return "softmax" if module.dim in (1, None) else None
        if isinstance(module, nn.Sigmoid):
            return "sigmoid"
        return None
    name = getattr(node.target, "__name__", str(node.target))
    if node.op in ("call_function", "call_method") and name in ("softmax", "sigmoid"):
        if name == "sigmoid":
            return "sigmoid"
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return "softmax" if dim == 1 else None
    return None


def _name(node: fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target))


def _operand(node: object, *names: str) -> fx.Node | None:
    """The first operand of ``node`` if it calls a function or method named in ``names``."""
    if not isinstance(node, fx.Node) or node.op not in ("call_function", "call_method"):
        return None
    first = node.args[0] if node.args else None
    return first if _name(node) in names and isinstance(first, fx.Node) else None


def _over_classes(node: fx.Node) -> bool:
    """Whether ``node`` reduces over axis 1 (``dim=1``, ``(1,)`` or ``[1]``)."""
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return bool(dim == 1 or (isinstance(dim, (tuple, list)) and list(dim) == [1]))


def _exp_argument(node: object) -> fx.Node | None:
    return _operand(node, "exp")


def _class_max_removed(z: fx.Node) -> fx.Node:
    """``y`` if ``z`` is ``y - y.amax(1, keepdim=True)`` (or ``y.max(1, keepdim=True)[0]``,
    ``.values``): the logits before the usual overflow guard; else ``z``."""
    y = _operand(z, "sub")
    if y is None or len(z.args) < 2 or not isinstance(z.args[1], fx.Node):
        return z
    peak = z.args[1]
    if _name(peak) in ("getitem", "getattr") and isinstance(peak.args[0], fx.Node):
        if peak.args[1] not in (0, "values"):
            return z
        peak = peak.args[0]
    return y if _operand(peak, "amax", "max") is y and _over_classes(peak) else z


def handwritten_softmax(node: fx.Node) -> fx.Node | None:
    """The logits ``z`` if ``node`` is ``exp(z) / exp(z).sum(1)`` (keepdim or not; the two
    ``exp`` may be one node or two of the same ``z``); else None."""
    if node.op not in ("call_function", "call_method") or len(node.args) != 2:
        return None
    if _name(node) not in ("truediv", "div", "divide", "true_divide", "__truediv__"):
        return None
    numerator, denominator = node.args
    z, total = _exp_argument(numerator), _operand(denominator, "sum")
    if z is None or total is None or not isinstance(denominator, fx.Node):
        return None
    if _exp_argument(total) is not z or not _over_classes(denominator):
        return None
    return _class_max_removed(z)


def strip_activation(gm: fx.GraphModule) -> str:
    """Remove a softmax (over the class axis) or sigmoid that produces ``gm``'s output, in place.

    Returns ``"softmax cut"``, ``"sigmoid cut"`` or ``"logits"`` (nothing removed).
    """
    output = next(n for n in gm.graph.nodes if n.op == "output")
    last = output.args[0]
    if not isinstance(last, fx.Node):
        return "logits"
    kind, logits = _kind(gm, last), last.args[0] if last.args else None
    if kind is None:
        kind, logits = "softmax", handwritten_softmax(last)
    if not isinstance(logits, fx.Node):
        return "logits"
    output.args = (logits,)
    if not last.users:
        gm.graph.erase_node(last)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return f"{kind} cut"


def looks_like_probabilities(out: torch.Tensor) -> bool:
    """Whether ``out`` ``(1, K, *spatial)`` is per-pixel class probabilities: every value in
    [0, 1] and, over the K channels, summing to 1 (softmax) within 1e-3."""
    if out.shape[1] < 2 or out.numel() == 0:
        return False
    if float(out.min()) < 0.0 or float(out.max()) > 1.0:
        return False
    return bool(torch.allclose(out.sum(1), torch.ones(()), atol=1e-3))


class LogProbabilities(nn.Module):
    """``log(head(*features))``, probabilities floored at 1e-12: logits of the same argmax."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(1, K, *spatial)`` float32."""
        out: torch.Tensor = self.head(*features)
        return out.clamp_min(_LOG_FLOOR).log()
