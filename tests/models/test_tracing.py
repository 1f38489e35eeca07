"""Tracing a head while another thread runs a network: torch.fx patches ``nn.Module`` for every
thread during a trace; :func:`medrefine.models.tracing.symbolic_trace` must leave the others'
networks alone and still give torch.fx's graph."""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import fx, nn

from medrefine.engine.head.pointwise import as_row_head
from medrefine.models.tracing import symbolic_trace


def _head() -> nn.Module:
    return nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()


def _race(
    trace: Callable[[nn.Module], object], seconds: float, stop_on_error: bool
) -> tuple[list[str], dict[str, int]]:
    """Trace a head in one thread while another runs a different network, for ``seconds``
    (sooner with ``stop_on_error`` once the runner fails); the runner's errors, and how many
    traces and runs completed."""
    head, other = _head(), nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()).eval()
    errors: list[str] = []
    done = threading.Event()
    counts = {"traces": 0, "runs": 0}

    def tracer() -> None:
        while not done.is_set():
            trace(head)
            counts["traces"] += 1

    def runner() -> None:
        x = torch.zeros(1, 1, 8, 8)
        while not done.is_set():
            try:
                with torch.no_grad():
                    assert other(x).shape == (1, 2, 8, 8)
                counts["runs"] += 1
            except Exception as exc:  # what torch.fx's patch raises in this thread
                errors.append(f"{type(exc).__name__}: {exc}")
                if stop_on_error:
                    done.set()

    threads = [threading.Thread(target=tracer), threading.Thread(target=runner)]
    for t in threads:
        t.start()
    done.wait(seconds)
    done.set()
    for t in threads:
        t.join()
    return errors, counts


def test_plain_torch_fx_tracing_breaks_another_threads_network() -> None:
    # the hazard this module exists for (if torch ever makes its patch thread-local, this
    # fails and the wrapper can go)
    errors, _ = _race(fx.symbolic_trace, 10.0, stop_on_error=True)
    assert errors and "not installed as a submodule" in errors[0]


def test_tracing_here_leaves_another_threads_network_alone() -> None:
    for trace in (symbolic_trace, as_row_head):  # as_row_head: the engine's per-image trace
        errors, counts = _race(trace, 1.0, stop_on_error=False)
        assert errors == []
        assert counts["traces"] > 10 and counts["runs"] > 10  # both threads really ran


def test_the_graph_is_torch_fx_s() -> None:
    head = _head()
    ours, theirs = symbolic_trace(head), fx.symbolic_trace(head)
    assert ours.code == theirs.code
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(ours(x), head(x))
