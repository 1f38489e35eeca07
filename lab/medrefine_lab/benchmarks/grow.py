"""Benchmark ``medrefine bench grow``: region growing of scribbles on synthetic scenes.

A scene is smooth blobs (the structures, classes 1..3) on a smoothly varying background (class 0)
with blur and Gaussian noise, and a few scribbled strokes per class. The kernel grows all strokes at
once; the baseline is ``skimage.segmentation.flood`` run once per stroke with the same tolerance.
Everything runs on one thread. Run it as ``python -m medrefine_lab.benchmarks.grow``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medrefine.kernels.grow import Criterion, region_grow
from medrefine_lab.benchmarks.page import Page, add_page_option

CLASS_LEVELS = (20.0, 100.0, 180.0, 260.0)  # background, then the structures
NOISE_SD = 4.0


@dataclass(frozen=True)
class Scene:
    """A synthetic image with scribbles. Arrays are (H, W) or (D, H, W), axes (y, x) / (z, y, x)."""

    image: npt.NDArray[np.float32]  # intensities
    truth: npt.NDArray[np.int32]  # class of every pixel
    seeds: npt.NDArray[np.int32]  # the strokes' classes, -1 elsewhere
    strokes: tuple[npt.NDArray[np.intp], ...]  # each stroke's pixel coordinates, (n, ndim)
    threshold: float  # for criterion "neighbour"
    mean_threshold: float  # for criterion "seed_mean"


def make_scene(shape: Sequence[int], rng: np.random.Generator, strokes_per_class: int = 3) -> Scene:
    """Blobs + noise of the given spatial shape, with ``strokes_per_class`` strokes per class."""
    shape = tuple(shape)
    grid = np.indices(shape, dtype=np.float32)
    truth = np.zeros(shape, np.int32)
    for cls in range(1, len(CLASS_LEVELS)):
        centre = [rng.uniform(0.25, 0.75) * n for n in shape]
        radii = [rng.uniform(0.12, 0.22) * n for n in shape]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) < 1
        truth[inside] = cls
    del grid
    image = np.asarray(CLASS_LEVELS, np.float32)[truth]
    image = ndimage.gaussian_filter(image, 0.6)  # partial-volume edges
    drift = ndimage.gaussian_filter(rng.standard_normal(shape, np.float32), min(shape) / 16)
    image += 6.0 * drift / max(float(drift.std()), 1e-6)
    image += rng.normal(0.0, NOISE_SD, shape).astype(np.float32)
    strokes = tuple(
        _stroke(truth, cls, rng)
        for cls in range(len(CLASS_LEVELS))
        for _ in range(strokes_per_class)
    )
    seeds = np.full(shape, -1, np.int32)
    for stroke in strokes:
        seeds[tuple(stroke.T)] = truth[tuple(stroke[0])]
    return Scene(image.astype(np.float32), truth, seeds, strokes, 4.0 * NOISE_SD, 6.0 * NOISE_SD)


def _stroke(
    truth: npt.NDArray[np.int32], cls: int, rng: np.random.Generator
) -> npt.NDArray[np.intp]:
    """A scribble in one slice: a wandering 3-pixel-wide line that stays inside class ``cls``."""
    region = ndimage.binary_erosion(truth == cls, iterations=2)
    region = region if region.any() else truth == cls
    candidates = np.argwhere(region)
    point = candidates[rng.integers(len(candidates))].astype(float)
    heading = rng.uniform(0, 2 * np.pi)
    marked: list[tuple[int, ...]] = []
    for _ in range(max(truth.shape[-1] // 3, 10)):
        step = point.copy()
        step[-2:] += (np.sin(heading), np.cos(heading))
        centre = tuple(round(p) for p in step)
        if (
            not all(0 <= p < n for p, n in zip(centre, truth.shape, strict=True))
            or not region[centre]
        ):
            heading += np.pi + rng.normal(0.0, 0.5)  # turn back at the edge of the structure
            continue
        point, heading = step, heading + rng.normal(0.0, 0.3)
        for dy, dx in np.ndindex(3, 3):
            pixel = (*centre[:-2], centre[-2] + dy - 1, centre[-1] + dx - 1)
            if all(0 <= p < n for p, n in zip(pixel, truth.shape, strict=True)) and region[pixel]:
                marked.append(pixel)
    start = tuple(round(p) for p in point)
    return np.array(list(dict.fromkeys([*marked, start] if marked else [start])), np.intp)


def times_ms(call: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``call``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def _flood_per_stroke(scene: Scene, tolerance: float) -> None:
    from skimage import segmentation

    flood: Callable[..., npt.NDArray[np.bool_]] = segmentation.flood
    for stroke in scene.strokes:
        flood(scene.image, tuple(int(p) for p in stroke[0]), tolerance=tolerance, connectivity=1)


def measure(scene: Scene, repeats: int) -> list[dict[str, Any]]:
    """Median / p95 wall times (ms) of both criteria and of the per-stroke flood baseline."""
    rows = []
    criteria: tuple[tuple[Criterion, float], ...] = (
        ("neighbour", scene.threshold),
        ("seed_mean", scene.mean_threshold),
    )
    for criterion, threshold in criteria:
        grown = region_grow(scene.image, scene.seeds, threshold, criterion=criterion)
        ours = times_ms(
            partial(region_grow, scene.image, scene.seeds, threshold, criterion=criterion), repeats
        )
        flood = times_ms(partial(_flood_per_stroke, scene, threshold), repeats)
        rows.append(
            {
                "criterion": criterion,
                "threshold": threshold,
                "grown": int(np.count_nonzero(grown >= 0)),
                "median": statistics.median(ours),
                "p95": float(np.percentile(ours, 95)),
                "flood_median": statistics.median(flood),
                "flood_p95": float(np.percentile(flood, 95)),
            }
        )
    return rows


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``grow`` on an argparse subparsers object."""
    parser = subparsers.add_parser("grow", help="region-growing kernel vs skimage flood per stroke")
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size2d", type=int, default=512, help="2D scene is size2d^2")
    parser.add_argument("--size3d", type=int, default=256, help="3D scene is size3d^3")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=0, help="scene random seed")
    add_page_option(parser)


def run(args: argparse.Namespace) -> int:
    """Build the 2D and 3D scenes, time them and print a table."""
    from rich.table import Table

    rng = np.random.default_rng(args.seed)
    table = Table(title="region growing: one call for all strokes vs skimage flood once per stroke")
    for column in (
        "scene",
        "strokes",
        "criterion",
        "tol",
        "grown px",
        "median ms",
        "p95 ms",
        "flood/stroke median ms",
        "speed-up",
    ):
        table.add_column(column, justify="right")
    for shape in ((args.size2d,) * 2, (args.size3d,) * 3):
        scene = make_scene(shape, rng)
        label = "x".join(map(str, shape))
        for row in measure(scene, args.repeats):
            table.add_row(
                label,
                str(len(scene.strokes)),
                row["criterion"],
                f"{row['threshold']:g}",
                f"{row['grown']:,}",
                f"{row['median']:.1f}",
                f"{row['p95']:.1f}",
                f"{row['flood_median']:.1f}",
                f"{row['flood_median'] / row['median']:.1f}x",
            )
    page = Page.from_args(args, "grow")
    page.table(table)
    page.write()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medrefine_lab.benchmarks.grow", description=__doc__
    )
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
