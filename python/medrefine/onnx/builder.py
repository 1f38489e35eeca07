"""The pieces every ONNX-to-torch operator converter shares: node attributes, refusals, and the
:class:`HeadBuilder` that grows the head's ``torch.fx`` graph node by node.

Tensors in the graph are channel-first ``(N, C, *spatial)``, spatial axes in array order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from torch import fx, nn

from medrefine.errors import UnsupportedModelError
from medrefine.onnx.cut import Cut


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def describe(node: onnx.NodeProto) -> str:
    """``"Conv node '/head/head.0/Conv'"`` (the first output names an unnamed node)."""
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def refuse(node: onnx.NodeProto, reason: str) -> UnsupportedModelError:
    """The error for a supported operator used in a way the converter does not support."""
    return UnsupportedModelError(f"{describe(node)}: {reason}")


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name).strip("_") or "node"
    return ident if not ident[0].isdigit() else "n_" + ident


class HeadBuilder:
    """Builds the head's ``fx.Graph`` node by node; converters call its methods."""

    def __init__(self, cut: Cut, spatial_dims: int) -> None:
        self.cut, self.spatial_dims = cut, spatial_dims
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, fx.Node] = {
            name: self.graph.placeholder(f"feature_{i}") for i, name in enumerate(cut.features)
        }

    def rank(self, tensor: str) -> int:
        """Rank of ``tensor``: from shape inference, else that of an image feature map."""
        return self.cut.ranks.get(tensor, self.spatial_dims + 2)

    def constant(self, name: str) -> np.ndarray | None:
        """Value of a constant input (None for a computed tensor or an absent optional input)."""
        return self.cut.constants.get(name) if name else None

    def weight(self, node: onnx.NodeProto, index: int) -> np.ndarray | None:
        """Constant input ``index`` of ``node`` (None if absent); a computed one is refused."""
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self.constant(node.input[index])
        if value is None:
            raise refuse(node, f"input {index} ({node.input[index]!r}) must be a constant")
        return value

    def tensor(self, name: str) -> fx.Node:
        """The graph value of tensor ``name``; a constant becomes a buffer read by ``get_attr``."""
        if name not in self.env:
            value = self.constant(name)
            if value is None:
                raise UnsupportedModelError(f"the head reads {name!r}, which nothing computes")
            target = self._unique("const_" + _identifier(name))
            self.root.register_buffer(target, torch.from_numpy(np.array(value)))
            self.env[name] = self.graph.get_attr(target)
        return self.env[name]

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        return name

    def call_module(self, node: onnx.NodeProto, module: nn.Module, *args: fx.Node) -> fx.Node:
        """Add ``module`` (named after ``node``) and call it on ``args``."""
        target = self._unique(_identifier(node.name or node.op_type))
        self.root.add_module(target, module)
        return self.graph.call_module(target, args)

    def call_function(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> fx.Node:
        return self.graph.call_function(fn, args, kwargs or {})

    def call_method(self, method: str, *args: Any) -> fx.Node:
        return self.graph.call_method(method, args)

    def finish(self, output: str) -> fx.GraphModule:
        self.graph.output(self.env[output])
        return fx.GraphModule(self.root, self.graph, class_name="OnnxHead").eval()


Converter = Callable[[HeadBuilder, onnx.NodeProto], fx.Node]


def unsupported_nodes(cut: Cut, converters: dict[str, Converter]) -> list[str]:
    """``"<op> (node <name>)"`` for every head node no converter handles."""
    return [
        f"{n.op_type} (node {n.name or n.output[0]!r})"
        for n in cut.head
        if n.domain not in ("", "ai.onnx") or n.op_type not in converters
    ]
