"""Boxes of the simulated user (protocol R13c).

2D: the tight box of G == c, each side optionally pushed outward by U{0..jitter} pixels
(ScribblePrompt UniformBBox). 3D (CVPR 2025 form): z_min..z_max of the class along the
annotation axis, z_mid = the slice with the largest class area, and the 2D box of that slice.
Boxes use exclusive stops and array-order axes (2D: y, x; 3D: z, y, x).
"""

from __future__ import annotations

import numpy as np

from medrefine_lab.eval.robot.regions import BoolArray, IntArray, lift, worst_slice
from medrefine_lab.eval.robot.types import BoxCorners, RobotConfig, Stroke

RING_WIDTH = 2  # R13c: background seeds on a 2-px ring outside the box


def tight_box(mask: BoolArray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and stop (exclusive) per axis of a non-empty mask, int64."""
    coords = np.argwhere(mask)
    return coords.min(axis=0), coords.max(axis=0) + 1


def jitter_box(
    start: np.ndarray,
    stop: np.ndarray,
    shape: tuple[int, ...],
    jitter: int,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Push each side outward by U{0..jitter} (inclusive), clipped to the array.

    Draws one integer vector of 2 * ndim values: the start offsets, then the stop offsets.
    """
    if rng is None or jitter == 0:
        return start, stop
    offsets = rng.integers(0, jitter, size=2 * len(start), endpoint=True)
    ndim = len(start)
    return np.maximum(start - offsets[:ndim], 0), np.minimum(stop + offsets[ndim:], shape)


def ring(start: np.ndarray, stop: np.ndarray, shape: tuple[int, ...]) -> BoolArray:
    """The RING_WIDTH-pixel band just outside the box [start, stop), clipped to the array."""
    band = np.zeros(shape, dtype=bool)
    sides = list(zip(start.tolist(), stop.tolist(), strict=True))
    band[tuple(slice(max(a - RING_WIDTH, 0), b + RING_WIDTH) for a, b in sides)] = True
    band[tuple(slice(a, b) for a, b in sides)] = False
    return band


def _corners(start: np.ndarray, stop: np.ndarray) -> BoxCorners:
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def class_box(
    c: int,
    gt: IntArray,
    seeds: IntArray,
    config: RobotConfig,
    rng: np.random.Generator | None,
) -> Stroke:
    """R13c box of class c; its pixels are the ring cut to G == 0 and unseeded pixels.

    The cut keeps the seeds correct where the ring crosses another class. In 3D the ring lies
    on the z_mid slice only.
    """
    mask = gt == c
    allowed = (gt == 0) & (seeds == 0)
    if gt.ndim == 2:
        start, stop = jitter_box(*tight_box(mask), gt.shape, config.box_jitter, rng)
        pixels = np.argwhere(ring(start, stop, gt.shape) & allowed).astype(np.int64)
        return Stroke(c, pixels, np.zeros((0, 2), np.int64), "box", _corners(start, stop))
    axis = config.axis
    z_span = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    z_mid = worst_slice(mask, axis)
    plane = np.take(mask, z_mid, axis=axis)
    start, stop = jitter_box(*tight_box(plane), plane.shape, config.box_jitter, rng)
    band = ring(start, stop, plane.shape) & np.take(allowed, z_mid, axis=axis)
    pixels = lift(np.argwhere(band).astype(np.int64), axis, z_mid)
    start3 = np.insert(start, axis, z_span[0])
    stop3 = np.insert(stop, axis, z_span[-1] + 1)
    box = _corners(start3, stop3)
    return Stroke(c, pixels, np.zeros((0, 3), np.int64), "box", box, box_mid=z_mid)


def box_strokes(gt: IntArray, seeds: IntArray, config: RobotConfig) -> list[Stroke]:
    """R13c: one box per foreground class of G (ascending); single mode: the largest class
    (ties: lower class). Jitter draws come from default_rng(config.seed), in class order."""
    classes = [int(c) for c in np.unique(gt) if c != 0]
    if not config.per_class and classes:
        areas = [int((gt == c).sum()) for c in classes]
        classes = [classes[int(np.argmax(areas))]]
    rng = np.random.default_rng(config.seed) if config.box_jitter else None
    return [class_box(c, gt, seeds, config, rng) for c in classes]
