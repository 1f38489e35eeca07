"""Heads whose network ends in a softmax or sigmoid: refine on logits, not probabilities.

The engine's objective (cross-entropy over the head's output, softmax over the class axis) takes
logits. A network whose last operation turns logits into probabilities would be refined on
``softmax(softmax(z))``, which barely moves (the probabilities lie in [0, 1]), so the head never
learns the marks. :func:`strip_activation` cuts a final softmax or sigmoid off the head's graph
(argmax, hence the network's mask, is unchanged); :func:`looks_like_probabilities` recognises
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


def strip_activation(gm: fx.GraphModule) -> str:
    """Remove a softmax (over the class axis) or sigmoid that produces ``gm``'s output, in place.

    Returns ``"softmax cut"``, ``"sigmoid cut"`` or ``"logits"`` (nothing removed).
    """
    output = next(n for n in gm.graph.nodes if n.op == "output")
    last = output.args[0]
    if not isinstance(last, fx.Node):
        return "logits"
    kind = _kind(gm, last)
    if kind is None or not last.args or not isinstance(last.args[0], fx.Node):
        return "logits"
    output.args = (last.args[0],)
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
