"""``torch.fx`` tracing that leaves other threads alone.

While ``torch.fx`` traces a module it replaces ``nn.Module.__call__`` and ``nn.Module.__getattr__``
on the class itself, for every thread: a network another thread runs meanwhile (another
session's refine on the gRPC server's thread pool) has its submodule calls routed to the tracer,
which fails them with ``NameError: module is not installed as a submodule``. The tracer here
answers a call or attribute read from any thread but its own as ``torch`` would without a trace,
so a session may trace a head (:mod:`medrefine.engine.head.pointwise`, :class:`SplitModel`) while
others compute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from torch import fx, nn

__all__ = ["symbolic_trace"]


class _OwnThreadTracer(fx.Tracer):
    """A :class:`torch.fx.Tracer` that records only what its own thread does."""

    def __init__(self) -> None:
        super().__init__()
        self._owner = threading.get_ident()

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if threading.get_ident() != self._owner:
            return forward(*args, **kwargs)  # another thread's network, run as usual
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if threading.get_ident() != self._owner:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def symbolic_trace(root: nn.Module) -> fx.GraphModule:
    """:func:`torch.fx.symbolic_trace` of ``root`` (the same graph), safe while other threads
    run networks. Raises what ``torch.fx`` raises for untraceable code."""
    tracer = _OwnThreadTracer()
    graph = tracer.trace(root)
    return fx.GraphModule(tracer.root, graph, root.__class__.__name__)
