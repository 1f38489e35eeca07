"""The backbone in overlapping tiles, written straight into channels-last feature buffers.

A volume over ``SessionLimits.max_tile_voxels`` runs through the backbone tile by tile along its
spatial axes. Each tile is its interior plus a margin on every side of at least the backbone's
receptive-field radius, rounded up to the preprocessing's pad multiple (pooling networks are
shift-equivariant only by that multiple); only the interior is kept, so the stitched features
equal the whole-volume ones to float32 rounding. The interiors are copied into one
preallocated ``(1, C, *shape)`` channels-last buffer per feature: the whole channels-first
feature tensor, and the backbone's activations at the whole-volume size, never exist.

Networks whose features at one pixel depend on the whole image (instance normalisation, global
pooling, attention over the image) cannot be tiled exactly: :func:`backbone_radius` finds this
and :func:`tiled_features` raises :class:`~medrefine.errors.UnsupportedModelError` naming it.
Features coarser than the input (stride > 1) are refused the same way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from medrefine.errors import InputError, ResourceError, UnsupportedModelError

Run = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def backbone_radius(
    run: Run, channels: int, spatial_dims: int, multiple: int, max_voxels: int = 0
) -> int:
    """Receptive-field radius of the backbone, pixels at the input (= feature) resolution.

    Measured by perturbing a central block (one pad multiple per axis) of a seeded random
    ``(1, channels, P, ..., P)`` float32 input and taking the largest distance from the block,
    along any axis, at which any feature changed. ``P`` starts at 64 in 2D, 32 in 3D (at least 4
    pad multiples) and doubles while the change reaches the probe's border and the next probe
    has at most ``max_voxels`` pixels. It assumes a receptive field without holes (true of
    stacked convolutions and poolings; a lone dilated convolution could skip the probe).

    Raises:
        UnsupportedModelError: the change reaches the border of the largest probe (a global
            operation such as instance normalisation, or a receptive field too wide for the
            budget), or a feature's spatial shape is not the input's.
    """
    size = _round_up(max(64 if spatial_dims == 2 else 32, 4 * multiple), multiple)
    while True:
        reach = _reach(run, channels, spatial_dims, multiple, size)
        if reach is not None:
            return reach
        if (2 * size) ** spatial_dims > max_voxels:
            raise UnsupportedModelError(
                f"the backbone cannot be tiled: a change at one pixel of a {size}-pixel probe "
                "alters its features at the probe's border (a global operation such as instance "
                "normalisation, or a receptive field wider than max_tile_voxels allows), so "
                "tiled features would differ from whole-image ones"
            )
        size *= 2


def _reach(run: Run, channels: int, spatial_dims: int, multiple: int, size: int) -> int | None:
    """Farthest pixel whose features a central block changes; None if it reaches the border."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((1, channels) + (size,) * spatial_dims, generator=generator)
    # A block of one pad multiple per axis covers every phase of the network's poolings.
    first = size // 2 // multiple * multiple
    last = first + multiple - 1
    y = x.clone()
    y[(0, slice(None)) + (slice(first, last + 1),) * spatial_dims] += 10.0
    changed = torch.zeros((size,) * spatial_dims, dtype=torch.bool)
    for a, b in zip(run(x), run(y), strict=True):
        _check_resolution(a, x)
        changed |= (a != b).any(dim=1)[0]
    where = torch.nonzero(changed)
    if where.numel() == 0:
        return 0
    if bool((where == 0).any()) or bool((where == size - 1).any()):
        return None
    return int(torch.maximum(first - where, where - last).clamp(min=0).max())


def _check_resolution(f: torch.Tensor, x: torch.Tensor) -> None:
    if tuple(f.shape[2:]) != tuple(x.shape[2:]):
        raise UnsupportedModelError(
            f"the backbone cannot be tiled: a feature of spatial shape {tuple(f.shape[2:])} for "
            f"an input of {tuple(x.shape[2:])} is coarser than the image (stride > 1), and its "
            "tiles would not align with the image's"
        )


def plan_tiles(
    padded: tuple[int, ...], margin: int, multiple: int, max_tile_voxels: int
) -> tuple[int, ...]:
    """Interior size per axis such that every tile (interior + ``margin`` per side, clipped to
    ``padded``) has at most ``max_tile_voxels`` voxels; all multiples of ``multiple``.

    Raises:
        ResourceError: even interiors of one pad multiple give tiles over the budget.
    """
    core = list(padded)

    def tile_voxels() -> int:
        return math.prod(min(c + 2 * margin, p) for c, p in zip(core, padded, strict=True))

    while tile_voxels() > max_tile_voxels:
        axis = max(range(len(core)), key=lambda i: (core[i], -i))
        if core[axis] <= multiple:
            smallest = (min(multiple + 2 * margin, p) for p in padded)
            raise ResourceError(
                f"SessionLimits.max_tile_voxels={max_tile_voxels:,} is below the smallest tile "
                f"this backbone can use, {math.prod(smallest):,} voxels (interior of "
                f"{multiple} px plus a {margin} px margin per side for its receptive field)"
            )
        core[axis] = max(multiple, _round_up(core[axis] // 2, multiple))
    return tuple(core)


def tiled_features(
    run: Run, x: torch.Tensor, shape: tuple[int, ...], multiple: int, max_tile_voxels: int
) -> tuple[torch.Tensor, ...]:
    """Features of ``x`` cropped to ``shape``, computed tile by tile.

    Args:
        run: the backbone, ``(1, C, *spatial)`` float32 -> features ``(1, C_i, *spatial)``.
        x: ``(1, C, *padded)`` float32, each padded size a multiple of ``multiple``.
        shape: the image's spatial shape (``<= padded`` per axis), array order.
        multiple: the preprocessing's pad multiple.
        max_tile_voxels: most voxels of one tile, margins included.

    Returns:
        One ``(1, C_i, *shape)`` float32 channels-last tensor per feature.

    Raises:
        InputError: ``max_tile_voxels`` below 1.
        ResourceError: a budget too small for the backbone's margin.
        UnsupportedModelError: a backbone that cannot be tiled exactly (see module docstring).
    """
    if max_tile_voxels < 1:
        raise InputError(f"max_tile_voxels must be >= 1, got {max_tile_voxels}")
    padded = tuple(int(s) for s in x.shape[2:])
    radius = backbone_radius(run, int(x.shape[1]), len(padded), multiple, max_tile_voxels)
    margin = _round_up(radius, multiple)
    core = plan_tiles(padded, margin, multiple, max_tile_voxels)
    starts = [range(0, min(p, s), c) for p, s, c in zip(padded, shape, core, strict=True)]
    buffers: list[torch.Tensor] = []
    for start in itertools.product(*starts):
        end = [min(s + c, n) for s, c, n in zip(start, core, shape, strict=True)]
        lo = [max(0, s - margin) for s in start]
        hi = [min(p, s + c + margin) for s, c, p in zip(start, core, padded, strict=True)]
        tile = x[(slice(None), slice(None)) + tuple(map(slice, lo, hi))].contiguous()
        inner = tuple(slice(s - a, e - a) for s, e, a in zip(start, end, lo, strict=True))
        where = tuple(map(slice, start, end))
        for i, f in enumerate(run(tile)):
            _check_resolution(f, tile)
            if len(buffers) <= i:
                buffers.append(_buffer(f, shape))
            buffers[i][(slice(None), slice(None)) + where] = f[(slice(None), slice(None)) + inner]
    return tuple(buffers)


def _buffer(f: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(len(shape))
    size = (1, int(f.shape[1])) + shape
    if fmt is None:
        return torch.empty(size, dtype=f.dtype)
    return torch.empty(size, dtype=f.dtype, memory_format=fmt)
