"""Converters for the indexing and shape operators of a head (``Shape``, ``Gather``, ``Slice``,
``Unsqueeze``, ``Squeeze``) and the run-time functions the converted head calls for them and for
a ``Resize`` whose sizes or scales it computes.

A shape is an int64 vector at run time, as in ONNX, so the arithmetic PyTorch exports for
``F.interpolate(x, size=image.shape[-2:])`` runs unchanged on whatever input the head gets. A
``Shape`` of a size carrier (:mod:`medrefine.onnx.shapes`) reads the carrier's spatial size and
the source's channel count, known when the head is converted.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx

from medrefine.onnx.builder import HeadBuilder, attributes, describe, refuse
from medrefine.onnx.shapes import SHAPE_OPS, blocking_node, carrier_name


def shape_of(x: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
    """``x.shape[start:end]`` as an int64 vector (on ``x``'s device, as the head's constants)."""
    return torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


def carried_shape(
    carrier: torch.Tensor, channels: int, start: int, end: int | None
) -> torch.Tensor:
    """The shape of the tensor ``carrier`` stands for (``(N, 0, *spatial)``: its batch and
    spatial sizes, ``channels`` on axis 1), ``[start:end]``, as an int64 vector."""
    full = (carrier.shape[0], channels, *carrier.shape[2:])
    return torch.tensor(full[start:end], dtype=torch.int64, device=carrier.device)


def gather(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX ``Gather``: ``data`` indexed along ``axis`` by ``indices`` (negative ones counted
    from the end); the result's shape is ``data``'s with that axis replaced by ``indices``'.

    Raises:
        RuntimeError: an index lies outside ``data`` (e.g. on a crop of a feature map; the
            head runner then evaluates the whole image).
    """
    n = data.shape[axis]
    picked = torch.where(indices < 0, indices + n, indices).reshape(-1)
    try:
        out = data.index_select(axis, picked)
    except (IndexError, RuntimeError) as exc:  # torch raises either, by rank
        raise RuntimeError(
            f"Gather indices {indices.tolist()} outside axis {axis} of {tuple(data.shape)}"
        ) from exc
    return out.reshape(data.shape[:axis] + indices.shape + data.shape[axis + 1 :])


def unsqueeze(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``x`` with a new axis of size 1 at each of ``axes`` (ascending, of the result)."""
    for axis in axes:
        x = x.unsqueeze(axis)
    return x


def squeeze(x: torch.Tensor, axes: tuple[int, ...] | None) -> torch.Tensor:
    """``x`` without the size-1 ``axes`` (None: without every size-1 axis)."""
    return x.squeeze() if axes is None else x.squeeze(axes)


def interpolate_to(x: torch.Tensor, sizes: torch.Tensor, where: str, **mode: Any) -> torch.Tensor:
    """ONNX ``Resize`` of ``x`` (``(N, C, *spatial)``) to the computed ``sizes`` (int64, one
    per axis of ``x``); ``mode``: ``F.interpolate``'s ``mode`` (and ``align_corners``).

    The batch and channel entries of ``sizes`` are not read (as for constant sizes): the
    network computed them for its own batch of one and its own classes, and the head is also
    run on a batch of crops and, after ``add_class``, with one class more.

    Raises:
        RuntimeError: ``sizes`` do not have one entry per axis of ``x`` (``where`` names the
            node).
    """
    size = [int(v) for v in sizes.tolist()]
    if len(size) != x.ndim:
        raise RuntimeError(f"{where}: sizes {size} do not fit an input {tuple(x.shape)}")
    return F.interpolate(x, size=size[2:], **mode)


def interpolate_by(x: torch.Tensor, scales: torch.Tensor, where: str, **mode: Any) -> torch.Tensor:
    """ONNX ``Resize`` of ``x`` (``(N, C, *spatial)``) by the computed ``scales`` (float, one
    per axis of ``x``, 1 for the batch and channel axes); see :func:`interpolate_to`.

    Raises:
        RuntimeError: ``scales`` do not fit ``x`` or change its batch or channel axes.
    """
    factors = [float(v) for v in scales.tolist()]
    if len(factors) != x.ndim or factors[:2] != [1.0, 1.0]:
        raise RuntimeError(
            f"{where}: scales {factors} computed for an input {tuple(x.shape)} must keep its "
            "batch and channel axes (1, 1)"
        )
    return F.interpolate(x, scale_factor=factors[2:], **mode)


def shape(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Shape -> the int64 shape of a head tensor, or of the tensor a size carrier stands for."""
    a = attributes(node)
    start, end = int(a.get("start", 0)), a.get("end")
    end = None if end is None else int(end)
    carrier = b.cut.carriers.get(carrier_name(node.input[0]))
    if carrier is None or node.input[0] in b.env:
        return b.call_function(shape_of, (b.tensor(node.input[0]), start, end))
    if carrier.rank != b.spatial_dims + 2 or carrier.channels is None:
        raise refuse(
            node,
            f"reads the shape of {carrier.source!r} (rank {carrier.rank}, channels "
            f"{carrier.channels}); only that of a {b.spatial_dims}D feature map "
            "(N, C, *spatial) with a fixed channel count can travel with the features",
        )
    value = b.tensor(carrier_name(node.input[0]))
    return b.call_function(carried_shape, (value, carrier.channels, start, end))


def _ints(b: HeadBuilder, node: onnx.NodeProto, index: int, attr: str) -> list[int] | None:
    """Integer list from constant input ``index`` (opset >= 10/13 form) or attribute ``attr``."""
    if index < len(node.input) and node.input[index]:
        value = b.weight(node, index)
        assert value is not None
        return [int(v) for v in np.asarray(value).reshape(-1)]
    found = attributes(node).get(attr)
    return None if found is None else [int(v) for v in found]


def gather_node(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Gather with constant indices -> :func:`gather`."""
    b.weight(node, 1)  # refuses computed indices
    axis = int(attributes(node).get("axis", 0)) % max(b.rank(node.input[0]), 1)
    return b.call_function(gather, (b.tensor(node.input[0]), b.tensor(node.input[1]), axis))


def slice_node(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Slice with constant starts, ends, axes and positive steps -> Python slicing."""
    rank = b.rank(node.input[0])
    starts, ends = _ints(b, node, 1, "starts"), _ints(b, node, 2, "ends")
    if starts is None or ends is None:
        raise refuse(node, "no starts or ends")
    axes = _ints(b, node, 3, "axes") or list(range(len(starts)))
    steps = _ints(b, node, 4, "steps") or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise refuse(
            node, f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length"
        )
    if any(s <= 0 for s in steps):
        raise refuse(node, f"steps {steps}: only positive steps are supported")
    index = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis % rank] = slice(start, end, step)
    return b.call_function(operator.getitem, (b.tensor(node.input[0]), tuple(index)))


def unsqueeze_node(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Unsqueeze -> :func:`unsqueeze` (axes counted in the output's rank)."""
    axes = _ints(b, node, 1, "axes")
    if not axes:
        raise refuse(node, "no axes")
    rank = b.rank(node.input[0]) + len(axes)
    ordered = tuple(sorted(a % rank for a in axes))
    return b.call_function(unsqueeze, (b.tensor(node.input[0]), ordered))


def squeeze_node(b: HeadBuilder, node: onnx.NodeProto) -> fx.Node:
    """Squeeze -> :func:`squeeze` (no axes: every axis of size 1)."""
    axes = _ints(b, node, 1, "axes")
    rank = max(b.rank(node.input[0]), 1)
    ordered = None if axes is None else tuple(sorted(a % rank for a in axes))
    return b.call_function(squeeze, (b.tensor(node.input[0]), ordered))


def computed_resize(
    b: HeadBuilder, node: onnx.NodeProto, name: str, sizes: bool, mode: dict[str, Any]
) -> fx.Node:
    """A Resize whose sizes (``sizes`` True) or scales, tensor ``name``, the head computes."""
    if name in b.cut.features:
        found = blocking_node(b.cut.frozen.graph, name)
        by = f" by {describe(found)}" if found is not None else ""
        raise refuse(
            node,
            f"its {'sizes' if sizes else 'scales'} ({name!r}) are computed{by}, not by shape "
            f"arithmetic alone; supported: constants, or {', '.join(sorted(SHAPE_OPS))} "
            "of tensor shapes",
        )
    fn = interpolate_to if sizes else interpolate_by
    args = (b.tensor(node.input[0]), b.tensor(name), describe(node))
    return b.call_function(fn, args, mode)
