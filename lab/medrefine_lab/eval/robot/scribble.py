"""Scribbles of the simulated user (protocol R5-R12), after the DAVIS interactive robot.

One stroke is drawn per kept class: the largest error region (R6), in 3D reduced to its largest
2D region on the worst slice (R7), smoothed (R8), skeletonised to its longest geodesic path (R9),
cut to L_max (R10) or replaced by a straight blob stroke (R11), and painted with a radius-1 brush
that never leaves the region (R12). Arrays are spatial, axes in array order (2D: y, x;
3D: z, y, x); a 2D plane is (rows, cols) = the two axes other than the annotation axis, in order.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.draw import line
from skimage.morphology import medial_axis

from medrefine_lab.eval.robot.regions import (
    BoolArray,
    IntArray,
    bbox_slices,
    disk,
    error_sets,
    first_argmax,
    largest_region,
    lift,
    padded_edt,
    worst_slice,
)
from medrefine_lab.eval.robot.types import Coords, RobotConfig, Stroke

KERNEL_FRACTION = 0.15  # R8, DAVIS kernel_size
MAX_KERNEL_RADIUS = 16.0  # R8, DAVIS max_kernel_radius
MIN_PATH = 3  # R11: shorter skeleton paths fall back to a blob stroke, shorter strokes to a click
_SQRT2 = math.sqrt(2.0)
_STEPS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def round_half_up(x: float) -> int:
    """R8 "round r": nearest integer, halves rounded up (2.5 -> 3)."""
    return math.floor(x + 0.5)


def smoothing_radius(area: int) -> float:
    """R8: r = min(0.5 * 0.15 * sqrt(|R|), 16)."""
    return min(0.5 * KERNEL_FRACTION * math.sqrt(area), MAX_KERNEL_RADIUS)


def opening_ignore_border(region: BoolArray, radius: int) -> BoolArray:
    """Binary opening by disk(radius) (|offset| <= radius) ignoring pixels beyond the border.

    Computed exactly with two distance transforms: the erosion keeps the pixels farther than
    `radius` from every non-region pixel of the array (outside pixels are ignored, as in
    skimage's mode "ignore" and the DAVIS rank filters); the dilation adds every pixel within
    `radius` of the erosion. (H, W) bool in and out.
    """
    if region.all():
        return region.copy()
    eroded = np.asarray(ndi.distance_transform_edt(region) > radius, dtype=np.bool_)
    if not eroded.any():
        return eroded
    return np.asarray(ndi.distance_transform_edt(~eroded) <= radius, dtype=np.bool_)


def smooth(region: BoolArray) -> BoolArray:
    """R8: opening with disk(round r), shrinking r by 0.9 until the result is non-empty.

    The opening ignores pixels beyond the array border (skimage mode "ignore", like the DAVIS
    rank filters), so a region touching the border is not eaten from that side. If r <= 1
    before any opening survives, the region is returned unchanged. (H, W) bool in and out.
    """
    r = smoothing_radius(int(region.sum()))
    while r > 1.0:
        opened = opening_ignore_border(region, round_half_up(r))
        if opened.any():
            return opened
        r *= 0.9
    return region.copy()


def skeleton(region: BoolArray) -> BoolArray:
    """R9: medial_axis of the 1-px zero-padded region, cropped back. (H, W) bool in and out.

    skimage breaks ties in its thinning order with a generator; it is seeded with 0 so the
    skeleton is deterministic.
    """
    skel = medial_axis(np.pad(region, 1), rng=0)  # type: ignore[no-untyped-call]
    return np.asarray(skel, dtype=np.bool_)[1:-1, 1:-1]


def _graph(coords: Coords, shape: tuple[int, ...]) -> list[list[tuple[int, int, int]]]:
    """8-neighbour adjacency of skeleton pixels: node -> [(neighbour, n_straight, n_diag)]."""
    index = np.full((shape[0] + 2, shape[1] + 2), -1, dtype=np.int64)
    index[coords[:, 0] + 1, coords[:, 1] + 1] = np.arange(len(coords))
    adjacency: list[list[tuple[int, int, int]]] = []
    for y, x in coords.tolist():
        nbrs = []
        for dy, dx in _STEPS:
            j = int(index[y + 1 + dy, x + 1 + dx])
            if j >= 0:
                diagonal = int(dy != 0 and dx != 0)
                nbrs.append((j, 1 - diagonal, diagonal))
        adjacency.append(nbrs)
    return adjacency


def _dijkstra(
    adjacency: list[list[tuple[int, int, int]]], source: int
) -> tuple[dict[int, float], dict[int, int]]:
    """Geodesic distances (straight step 1, diagonal sqrt 2) and predecessors from `source`.

    A distance is kept as exact step counts (straight, diagonal), so equal lengths compare equal.
    Nodes settle in (distance, raster index) order; a predecessor changes only on a strictly
    shorter path.
    """
    steps: dict[int, tuple[int, int]] = {source: (0, 0)}
    dist: dict[int, float] = {source: 0.0}
    parent: dict[int, int] = {}
    heap = [(0.0, source)]
    done: set[int] = set()
    while heap:
        _, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        for v, n_straight, n_diag in adjacency[u]:
            s = (steps[u][0] + n_straight, steps[u][1] + n_diag)
            dv = s[0] + s[1] * _SQRT2
            if v not in dist or dv < dist[v]:
                steps[v], dist[v], parent[v] = s, dv, u
                heapq.heappush(heap, (dv, v))
    return dist, parent


def _farthest(dist: dict[int, float]) -> int:
    """Node of largest distance; ties go to the lowest index (= raster order)."""
    return min(dist, key=lambda n: (-dist[n], n))


def longest_path(skel: BoolArray) -> Coords:
    """R9: longest geodesic path of the skeleton by a double Dijkstra sweep.

    The first sweep starts at the first skeleton pixel in raster order and finds the farthest
    pixel u; the second finds the pixel v farthest from u. Only the skeleton component of the
    first pixel is reached. Returns the path u -> v, (M, 2) int64; empty for an empty skeleton.
    """
    coords = np.argwhere(skel).astype(np.int64)
    if len(coords) == 0:
        return coords
    adjacency = _graph(coords, skel.shape)
    u = _farthest(_dijkstra(adjacency, 0)[0])
    dist, parent = _dijkstra(adjacency, u)
    node = _farthest(dist)
    order = [node]
    while node != u:
        node = parent[node]
        order.append(node)
    return coords[order[::-1]]


def window(path: Coords, depth: npt.NDArray[np.float64], max_length: int) -> Coords:
    """R10: keep the `max_length` path pixels centred on the deepest one.

    The centre is the path pixel of largest depth (EDT of the region), ties to the lowest raster
    index. For an even window the centre is its element max_length // 2 (one more pixel before
    than after); the window is shifted, not shortened, where the path ends.
    """
    if len(path) <= max_length:
        return path
    d = depth[tuple(path.T)]
    raster = np.ravel_multi_index(tuple(path.T), depth.shape)
    centre = int(np.lexsort((raster, -d))[0])
    start = min(max(centre - max_length // 2, 0), len(path) - max_length)
    return path[start : start + max_length]


def principal_axis(region: BoolArray) -> tuple[npt.NDArray[np.float64], float]:
    """Unit direction (dy, dx) of the region's largest coordinate variance, and that variance.

    The variance is the population one, as in regionprops (major axis = 4 sqrt(lambda_max)).
    For an isotropic region (equal eigenvalues) the direction is x; the sign makes the first
    non-zero component positive.
    """
    coords = np.argwhere(region).astype(np.float64)
    centred = coords - coords.mean(axis=0)
    evals, evecs = np.linalg.eigh(centred.T @ centred / len(coords))
    if evals[-1] - evals[0] <= 1e-9 * max(float(evals[-1]), 1.0):
        return np.array([0.0, 1.0]), float(evals[-1])
    v = evecs[:, -1]
    if v[np.flatnonzero(np.abs(v) > 1e-12)[0]] < 0:
        v = -v
    return np.asarray(v, dtype=np.float64), float(evals[-1])


def _ray(region: BoolArray, start: tuple[int, ...], end: npt.NDArray[np.float64]) -> list[Coords]:
    """Pixels of the digital line start -> end (start excluded), up to the first one off R."""
    stop = int(np.rint(end[0])), int(np.rint(end[1]))
    rr, cc = line(start[0], start[1], *stop)  # type: ignore[no-untyped-call]
    kept: list[Coords] = []
    for y, x in zip(rr[1:].tolist(), cc[1:].tolist(), strict=True):
        if not (0 <= y < region.shape[0] and 0 <= x < region.shape[1] and region[y, x]):
            break
        kept.append(np.array([y, x], dtype=np.int64))
    return kept


def blob_stroke(region: BoolArray, depth: npt.NDArray[np.float64]) -> Coords:
    """R11: straight stroke through the deepest pixel along the principal axis.

    Half-length sqrt(lambda_max) each way from p0 = first argmax of `depth`; the digital line to
    the rounded end point stops before the first pixel outside the region. (M, 2) int64, in
    drawing order from the negative to the positive end of the axis.
    """
    p0 = first_argmax(depth)
    v, lam = principal_axis(region)
    half = math.sqrt(lam)
    centre = np.asarray(p0, dtype=np.float64)
    back = _ray(region, p0, centre - half * v)[::-1]
    ahead = _ray(region, p0, centre + half * v)
    return np.array([*back, np.array(p0), *ahead], dtype=np.int64).reshape(-1, 2)


def brush(centerline: Coords, region: BoolArray) -> BoolArray:
    """R12: the centerline dilated with disk(1) (the 4-neighbour cross), cut to the region."""
    mask = np.zeros_like(region)
    mask[tuple(centerline.T)] = True
    return np.asarray(ndi.binary_dilation(mask, structure=disk(1)) & region)


def scribble_2d(region: BoolArray, max_length: int) -> tuple[Coords, BoolArray, bool]:
    """R8-R12 on one 2D region: (centerline (M, 2), painted mask, is_click).

    `region` is (H, W) bool and should be cropped with a margin of at least 17 pixels (or the
    array border) around the region, so that the R8 opening is the same as on the full plane.
    """
    depth = padded_edt(region)
    path = longest_path(skeleton(smooth(region)))
    is_click = False
    if len(path) < MIN_PATH:
        path = blob_stroke(region, depth)
        is_click = len(path) < MIN_PATH
        if is_click:
            path = np.array([first_argmax(depth)], dtype=np.int64)
    path = window(path, depth, max_length)
    return path, brush(path, region), is_click


def _plane_stroke(plane: BoolArray, max_length: int) -> tuple[Coords, Coords, bool]:
    """scribble_2d on a cropped copy of `plane`, coordinates returned in plane coordinates."""
    box = bbox_slices(plane, margin=int(MAX_KERNEL_RADIUS) + 1)
    offset = np.array([s.start for s in box], dtype=np.int64)
    path, painted, is_click = scribble_2d(plane[box], max_length)
    return path + offset, np.argwhere(painted).astype(np.int64) + offset, is_click


def region_stroke(label: int, region: BoolArray, config: RobotConfig) -> Stroke:
    """One scribble for class `label` on its largest error region (R7-R12), full coordinates."""
    if region.ndim == 2:
        path, pixels, is_click = _plane_stroke(region, config.max_length)
    else:
        z = worst_slice(region, config.axis)
        plane, _ = largest_region(np.take(region, z, axis=config.axis))
        path, pixels, is_click = _plane_stroke(plane, config.max_length)
        path, pixels = lift(path, config.axis, z), lift(pixels, config.axis, z)
    return Stroke(label, pixels, path, "click" if is_click else "scribble")


def scribble_strokes(
    gt: IntArray, pred: IntArray | None, seeds: IntArray, config: RobotConfig
) -> list[Stroke]:
    """R5-R12: the scribbles of one interaction, classes ascending.

    per_class: one stroke for every class whose largest error region has >= a_min pixels;
    single: only the class with the largest such region (ties: lower class).
    """
    a_min = config.resolved_a_min(gt.ndim)
    kept = []
    for c, errors in error_sets(gt, pred, seeds).items():
        region, size = largest_region(errors)
        if size >= a_min:
            kept.append((c, region, size))
    if not config.per_class and kept:
        kept = [min(kept, key=lambda k: (-k[2], k[0]))]
    return [region_stroke(c, region, config) for c, region, _ in kept]
