"""Benchmark ``medrefine bench geodesic``: the geodesic distance kernel on edge-cost scenes.

The scene is the region-growing benchmark's (smooth blobs on a drifting background, noise, a few
strokes per class); the cost is the gate's (:func:`medrefine.engine.gate.distance.edge_cost`,
weight 1) and the sources are every stroke. The kernel runs with the search limit a gate of width
sigma uses (4 sigma) and without one; the baseline is scikit-image's ``MCP_Geometric``
(Dijkstra, the same path cost, no limit: its cost cap is deprecated). Everything runs on one
thread. Run it as ``python -m medrefine_lab.benchmarks.geodesic``.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from skimage.graph import MCP_Geometric

from medrefine.engine.gate.distance import edge_cost
from medrefine.kernels.geodesic import geodesic_distance
from medrefine_lab.benchmarks.grow import make_scene, times_ms
from medrefine_lab.benchmarks.page import Page, add_page_option

SIGMAS = (4.0, 12.0)  # gate widths in pixels: a boundary correction, the fallback gate


def _mcp(cost: np.ndarray, starts: list[tuple[int, ...]]) -> np.ndarray:
    distances, _ = MCP_Geometric(cost).find_costs(starts)
    return np.asarray(distances)


def measure(shape: Sequence[int], repeats: int, seed: int) -> list[dict[str, Any]]:
    """Times (ms) of the kernel at each limit and of MCP_Geometric, on one scene of ``shape``."""
    scene = make_scene(shape, np.random.default_rng(seed))
    cost = edge_cost(scene.image[None], 1.0).astype(np.float64)
    seeds = scene.seeds >= 0
    starts = [tuple(int(v) for v in p) for p in np.argwhere(seeds)]
    reference = _mcp(cost, starts)
    mcp = times_ms(partial(_mcp, cost, starts), repeats)
    rows = []
    for limit in [4 * s for s in SIGMAS] + [math.inf]:
        ours = geodesic_distance(cost, seeds, limit=limit)
        within = reference <= limit
        times = times_ms(partial(geodesic_distance, cost, seeds, limit=limit), repeats)
        rows.append(
            {
                "limit": limit,
                "reached": int(np.isfinite(ours).sum()),
                "max_abs_diff": float(np.abs(ours[within] - reference[within]).max()),
                "median": statistics.median(times),
                "p95": float(np.percentile(times, 95)),
                "mcp_median": statistics.median(mcp),
                "mcp_p95": float(np.percentile(mcp, 95)),
            }
        )
    return rows


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``geodesic`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "geodesic", help="geodesic distance kernel vs scikit-image MCP_Geometric"
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size2d", type=int, default=512, help="2D scene is size2d^2")
    parser.add_argument("--size3d", type=int, default=128, help="3D scene is size3d^3")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=0, help="scene random seed")
    add_page_option(parser)


def run(args: argparse.Namespace) -> int:
    """Time the 2D and 3D scenes and print a table."""
    from rich.table import Table

    table = Table(title="geodesic distance: medrefine kernel vs scikit-image MCP_Geometric")
    columns = ("scene", "limit px", "pixels reached", "max |diff|", "median ms", "p95 ms")
    for column in columns + ("MCP median ms", "MCP p95 ms", "speed-up"):
        table.add_column(column, justify="right")
    for shape in ((args.size2d,) * 2, (args.size3d,) * 3):
        label = "x".join(map(str, shape))
        for row in measure(shape, args.repeats, args.seed):
            table.add_row(
                label,
                f"{row['limit']:g}",
                f"{row['reached']:,}",
                f"{row['max_abs_diff']:.1e}",
                f"{row['median']:.1f}",
                f"{row['p95']:.1f}",
                f"{row['mcp_median']:.1f}",
                f"{row['mcp_p95']:.1f}",
                f"{row['mcp_median'] / row['median']:.1f}x",
            )
    page = Page.from_args(args, "geodesic")
    page.table(table)
    page.write()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medrefine_lab.benchmarks.geodesic", description=__doc__
    )
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
