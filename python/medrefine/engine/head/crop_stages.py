"""Trim a cropped head's intermediate tensors to the part its needed output box depends on.

A crop of the features gives a whole output crop, most of it margin: a scribble 3 voxels thick
needs 12 output voxels along that axis from the decoder head of ``medrefine bench heads``, and
the 3x3x3 convolution inside computes all of them. :class:`Stages` finds the *cuts* of a
``torch.fx`` head: nodes every later node depends on through them alone (each layer of a
chain). For each, the rest of the head is itself a head over that one tensor, whose grid
(:class:`~medrefine.engine.head.crop.FeatureGrid`, margins measured as for the features) says which
of the tensor's pixels the needed output box ``[lo, hi)`` reads. :meth:`Stages.run` runs the
head on a crop and cuts each cut's tensor down to that window before the next layers see it, so
each layer computes only what the box needs. The output then starts at the last cut's window
(:meth:`Stages.trims` returns where). :class:`medrefine.engine.head.runner.HeadRunner` checks
the trimmed path against the whole-image output once per image, as it checks the crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from medrefine.engine.head.crop import FeatureGrid, measure_margins

Features = tuple[torch.Tensor, ...]
Trims = tuple[tuple[str, tuple[tuple[int, int], ...]], ...]  # node, [start, stop) per axis
_MAX_BYTES = 256 << 20  # intermediate tensors held at once while the cuts are measured
_NATIVE_CONV3D = 20480  # torch's native kernel for one sample up to N * C * D * H of this


def _cut_nodes(graph: fx.Graph) -> list[fx.Node]:
    """Nodes whose value is the only one later nodes read (get_attr values aside)."""
    nodes = list(graph.nodes)
    last_use: dict[fx.Node, int] = {}
    for i, n in enumerate(nodes):
        for arg in n.all_input_nodes:
            last_use[arg] = i
    cuts = []
    for i, n in enumerate(nodes):
        if n.op not in ("call_module", "call_function", "call_method"):
            continue
        live = [m for m in nodes[: i + 1] if last_use.get(m, -1) > i and m.op != "get_attr"]
        if live == [n]:
            cuts.append(n)
    return cuts


class _Trimming(fx.Interpreter):
    """Runs a graph, cutting the named nodes' values to the given spatial windows."""

    def __init__(self, module: fx.GraphModule, trims: Trims) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.trims = {name: tuple(slice(a, b) for a, b in w) for name, w in trims}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        window = self.trims.get(n.name)
        return out if window is None else out[(slice(None), slice(None)) + window]

    def call_module(self, target: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        """A 3D convolution of one sample whose ``N * C * D * H`` is at most 20480 runs on two
        (the second all zeros, its output dropped): torch picks its native kernel for those,
        10 to 20 times slower than oneDNN's on the crops here (16 channels, 3x3x3, 10x12x30
        voxels, one thread: 18.7 ms forward and backward against 0.8 ms), and oneDNN's for a
        batch of two. Transposed convolutions keep one sample, where the native kernel is the
        faster. The zero sample's output gets no gradient: the weights' gradients are
        unchanged."""
        module = self.fetch_attr(target)
        x = args[0] if args else None
        if (
            type(module) is nn.Conv3d
            and isinstance(x, torch.Tensor)
            and x.ndim == 5
            and x.shape[0] == 1
            and x.shape[1] * x.shape[2] * x.shape[3] <= _NATIVE_CONV3D
        ):
            return module(torch.cat([x, torch.zeros_like(x)]), *args[1:], **kwargs)[:1]
        return super().call_module(target, args, kwargs)


class _Capture(fx.Interpreter):
    """Runs a graph and keeps the values of the named nodes (none past ``_MAX_BYTES``)."""

    def __init__(self, module: fx.GraphModule, names: set[str]) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.names, self.values = names, dict[str, torch.Tensor]()
        self.held = 0

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names and isinstance(out, torch.Tensor):
            self.held += out.numel() * out.element_size()
            if self.held <= _MAX_BYTES:
                self.values[n.name] = out
        return out


def _cuts(head: fx.GraphModule) -> list[str]:
    """The cut nodes (:func:`_cut_nodes`) that call a module with weights (a convolution, a
    norm), other than the last node: a chain of parameter-free operations after one (a
    ReLU) runs on its trimmed value anyway, so their windows would only repeat it."""
    output = next(n for n in head.graph.nodes if n.op == "output")
    return [
        n.name
        for n in _cut_nodes(head.graph)
        if n.op == "call_module"
        and n not in output.all_input_nodes
        and any(True for _ in head.get_submodule(str(n.target)).parameters(recurse=False))
    ]


def _suffix(head: fx.GraphModule, cut: fx.Node) -> fx.GraphModule:
    """The part of ``head`` after ``cut``, as a module of one input (the cut's value)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut: graph.placeholder("cut")}
    after = False
    for n in head.graph.nodes:
        if n.op == "get_attr" or after:
            env[n] = graph.node_copy(n, lambda m: env[m])
        after = after or n is cut
    return fx.GraphModule(head, graph)


@dataclass(frozen=True)
class Stages:
    """The cuts of a head (fx node names) and each one's grid on the output."""

    head: fx.GraphModule
    cuts: tuple[tuple[str, FeatureGrid], ...]

    @staticmethod
    def capture(
        head: nn.Module, features: Features
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The head's output over ``features`` (no gradient) and, for a ``torch.fx`` head,
        the values of its cuts (:func:`_cuts`) over the image, at most 256 MiB of them (the
        rest are left out, so :meth:`measure` returns None)."""
        with torch.no_grad():
            if not isinstance(head, fx.GraphModule):
                return head(*features), {}
            capture = _Capture(head, set(_cuts(head)))
            out = capture.run(*features)
        values = capture.values if capture.held <= _MAX_BYTES else {}
        return out, values

    @classmethod
    def measure(
        cls,
        head: nn.Module,
        values: dict[str, torch.Tensor],
        out_shape: tuple[int, ...],
        reach: np.ndarray | None = None,
    ) -> Stages | None:
        """The stages of ``head`` from its cuts' ``values`` over the image (:meth:`capture`;
        the head's output ``out_shape``), or None when it is no ``torch.fx.GraphModule`` or
        no cut has a bounded grid. ``reach``: the first crop's half side in output pixels for
        each cut's measurement (:func:`measure_margins`; the rest of a head reaches no further
        than the whole head, so twice the features' reach is seldom outgrown)."""
        if not isinstance(head, fx.GraphModule):
            return None
        nodes = {n.name: n for n in head.graph.nodes}
        cuts = []
        for name in _cuts(head):
            value = values.get(name)
            if value is None or value.ndim != len(out_shape) + 2:
                continue
            grid = measure_margins(_suffix(head, nodes[name]), (value,), out_shape, reach)
            if grid is not None:
                cuts.append((name, grid))
        return cls(head, tuple(cuts)) if cuts else None

    def trims(self, start: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, Trims]:
        """For a crop whose output starts at output pixel ``start``, needed for output box
        ``[lo, hi)``: the output pixel where the trimmed run's output starts, and the window
        each cut's value is cut to (relative to that value's crop)."""
        origin, trims = start, []
        for name, grid in self.cuts:
            scale = np.asarray(grid.scales[0])
            if np.any(origin % scale):
                continue  # the cut's crop does not start on a whole pixel of its grid
            at, (window,) = grid.window(lo, hi)
            first = origin // scale
            rel = tuple(
                (int(w.start - f), int(w.stop - f)) for w, f in zip(window, first, strict=True)
            )
            if any(a < 0 for a, _ in rel):
                continue  # not inside what the crop computes: leave it whole
            trims.append((name, rel))
            origin = at
        return origin, tuple(trims)

    def run(self, crops: Features, trims: Trims) -> torch.Tensor:
        """The head over ``crops`` with the cuts' values trimmed (:meth:`trims`)."""
        out = _Trimming(self.head, trims).run(*crops)
        assert isinstance(out, torch.Tensor)
        return out
