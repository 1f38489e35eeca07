"""Spatial context for a pointwise head: each pixel's features averaged over boxes around it.

A pointwise head decides a pixel from that pixel's feature vector alone, so it sees little of a
large structure's shape (a fetal head, a stained tissue's layout). A site head
(:mod:`medrefine.site.fit`) may add a linear term over the features' *box means*: the mean of
every feature channel over a cube of ``window`` pixels per axis centred on the pixel, for each
of a few windows. Box means are computed once per image on a grid ``step`` times coarser than
the image (the features' mean over each ``step``-cube, then a box of ``window // step`` cells,
odd), and read at a pixel by (bi/tri)linear interpolation of that grid:

- :func:`coarse_context` builds the grid ``(1, P, *coarse)`` (P = channels x windows);
- :func:`context_rows` reads it at chosen pixels (what a site keeps of an accepted image);
- :func:`context_map` gives a linear map of it at every pixel, ``(1, K, *shape)``: applying the
  weights on the coarse grid, then interpolating, equals interpolating, then applying them
  (both are linear), so a session pays K channels at full resolution, not P.

:func:`offset_head` adds that map to a head's logits: a session started from a site head with
context runs the network's (fine-tuned) head on the cached features plus this fixed, per-image
offset, so its head stays pointwise and refinement keeps its row path. One implementation for
2D and 3D; windows count pixels along every axis, whatever the spacing.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import fx, nn

from medrefine.models.tracing import symbolic_trace

#: Coarse cells per axis are ``ceil(size / CONTEXT_STEP)`` pixels' means.
CONTEXT_STEP = 4
#: Box sizes in pixels: about a nucleus cluster's and about a fetal head's width at HC18's
#: resolution (chosen on HC18 and stained DSB development images, docs/design/site-defaults.md).
CONTEXT_WINDOWS = (68, 196)


def _box_mean(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean of ``x`` ``(1, C, *grid)`` over a cube of ``cells`` (odd) per spatial axis centred
    on every cell, counting only cells inside the grid (separable, by cumulative sums)."""
    half = cells // 2
    out = x
    for axis in range(2, x.ndim):
        n = out.shape[axis]
        zero = torch.zeros_like(out.narrow(axis, 0, 1))
        total = torch.cat([zero, out.cumsum(axis)], axis)  # total[i] = sum of the first i
        idx = torch.arange(n, device=x.device)
        hi = (idx + half + 1).clamp(max=n)
        lo = (idx - half).clamp(min=0)
        shape = [1] * x.ndim
        shape[axis] = n
        count = (hi - lo).to(out.dtype).reshape(shape)
        out = (total.index_select(axis, hi) - total.index_select(axis, lo)) / count
    return out


def _cell_means(f: torch.Tensor, cells: list[int]) -> torch.Tensor:
    """``f`` ``(1, C, *spatial)`` averaged over ``cells`` per axis, float32, a few channels at a
    time (a large volume's float16 features are never copied whole to float32)."""
    chunk = max(1, (1 << 22) // max(1, f[0, 0].numel()))  # about 16 MB of float32 at a time
    parts = []
    for a in range(0, f.shape[1], chunk):
        x = f[:, a : a + chunk].float()
        if len(cells) == 2:
            parts.append(F.adaptive_avg_pool2d(x, (cells[0], cells[1])))
        else:
            parts.append(F.adaptive_avg_pool3d(x, (cells[0], cells[1], cells[2])))
    return torch.cat(parts, 1)


def coarse_context(
    features: Sequence[torch.Tensor],
    shape: tuple[int, ...],
    windows: Sequence[int] = CONTEXT_WINDOWS,
    step: int = CONTEXT_STEP,
) -> torch.Tensor:
    """The box means of every feature on the coarse grid.

    Args:
        features: the cached features, each ``(1, C_i, *shape)`` (any float dtype).
        shape: the image's spatial shape, array order.
        windows: box sizes in pixels per axis.
        step: pixels per coarse cell along each axis.

    Returns:
        ``(1, sum(C_i) * len(windows), *coarse)`` float32, ``coarse[a] = ceil(shape[a] / step)``:
        window by window, each feature's channels in order.
    """
    means = torch.cat([_cell_means(f, [-(-s // step) for s in shape]) for f in features], 1)
    cells = [max(1, w // step) | 1 for w in windows]  # odd: centred on the cell
    return torch.cat([_box_mean(means, c) for c in cells], 1).contiguous()


def context_rows(grid: torch.Tensor, index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The coarse ``grid`` ``(1, P, *coarse)`` read at flat image pixels ``index`` (int64
    ``(N,)``) of an image of ``shape``, by linear interpolation with the pixel grids' centres
    aligned (as :func:`context_map`): ``(N, P)`` float32."""
    coords = torch.stack(torch.unravel_index(index, shape), 1).to(torch.float32)  # (N, D)
    size = torch.tensor(shape, dtype=torch.float32)
    where = (2 * coords + 1) / size - 1  # the pixel's centre in [-1, 1], axis order
    where = where.flip(1)  # grid_sample reads (x, y[, z]): the last axis first
    points = where.reshape((1,) * len(shape) + (-1, len(shape)))
    got = F.grid_sample(grid, points, mode="bilinear", padding_mode="border", align_corners=False)
    return got.reshape(grid.shape[1], -1).T.contiguous()


def context_map(grid: torch.Tensor, weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``weight`` ``(K, P)`` applied to the coarse ``grid`` ``(1, P, *coarse)``, at every pixel
    of ``shape``: ``(1, K, *shape)`` float32 on the grid's device, equal to
    ``context_rows(grid, all pixels) @ weight.T`` (up to rounding)."""
    k = weight.shape[0]
    small = torch.einsum("kp,np...->nk...", weight.to(grid.device, torch.float32), grid)
    if small.shape[2:] == shape:
        return small.contiguous()
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    out = F.interpolate(small, size=shape, mode=mode, align_corners=False)
    return out.reshape((1, k, *shape)).contiguous()


def offset_head(head: nn.Module, classes: int) -> fx.GraphModule:
    """``head`` plus a fixed logit offset for its first ``classes`` outputs, as one traced
    graph: its inputs are ``head``'s, then ``offset`` ``(1, classes, *shape)`` (given the way a
    cached feature is); outputs past ``classes`` (classes added later) take none. It holds
    ``head``'s own modules under their own names (so its state dict is ``head``'s), and is
    pointwise wherever ``head`` is.

    Raises:
        what ``torch.fx`` raises for a head it cannot trace.
    """
    inner = head if isinstance(head, fx.GraphModule) else symbolic_trace(head)
    graph = fx.Graph()
    seen: dict[fx.Node, fx.Node] = {}
    for node in inner.graph.nodes:
        if node.op == "placeholder":
            seen[node] = graph.placeholder(node.name)
    offset = graph.placeholder("offset")
    out = graph.graph_copy(inner.graph, seen)
    assert isinstance(out, fx.Node)
    own = graph.call_function(operator.getitem, (out, (slice(None), slice(None, classes))))
    added = graph.call_function(operator.getitem, (out, (slice(None), slice(classes, None))))
    total = graph.call_function(operator.add, (own, offset))
    graph.output(graph.call_function(torch.cat, ([total, added],), {"dim": 1}))
    return fx.GraphModule(inner, graph, "OffsetHead")
