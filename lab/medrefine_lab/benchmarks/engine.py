"""Benchmark ``medrefine bench engine``: set_image and refine latency of the shipped models.

Cases: the nuclei model on a 512x512 image (the fluorescence sample tiled 2x2) and the
hippocampus model on a 128^3 volume (a sample volume resampled to 128^3), corrected by the
simulated user's per-class scribbles for ``--interactions`` steps. Reported: ``set_image`` cold
(backbone) and warm (feature cache hit), refine p50/p95 over every interaction, gradient steps per
refine, and the same refines run by the naive loop (the head over the whole image at every
iteration, the same arithmetic up to float rounding), with the share of pixels on which the two
loops' masks agree.

A second table runs the stroke workload (:mod:`medrefine_lab.benchmarks.strokes`: ``--strokes``
short strokes inside the network's wrong regions of a 512x512 stained nuclei crop, classes
alternating, a refine after each) with its ratio to the simulated user's 2D refines of the same
run, and a third says whether each latency target (2D 512^2 refine p50 <= 100 ms, 3D 128^3 <=
300 ms) is met, with the load average the figures were taken under.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from rich.table import Table
from scipy import ndimage

from medrefine.data import Case
from medrefine.engine.config import RefineConfig
from medrefine.models.zoo import load_model
from medrefine.samples import load_sample
from medrefine_lab.benchmarks.page import Page, add_page_option
from medrefine_lab.benchmarks.stats import percentile
from medrefine_lab.benchmarks.strokes import measure_strokes, stained_512
from medrefine_lab.eval.harness import simulate
from medrefine_lab.eval.methods import MedrefineMethod
from medrefine_lab.eval.robot.types import RobotConfig


def case_2d() -> Case:
    """512x512 nuclei image: the fluorescence sample tiled 2x2."""
    s = load_sample("nuclei-fluorescence")
    return Case("nuclei 512x512", np.tile(s.image, (2, 2)), np.tile(s.label, (2, 2)), (1.0, 1.0))


def case_3d() -> Case:
    """128^3 hippocampus volume: a sample resampled (linear image, nearest label)."""
    s = load_sample("hippocampus-007")
    zoom = [128 / n for n in s.image.shape]
    image = ndimage.zoom(s.image, zoom, order=1)
    label = ndimage.zoom(s.label, zoom, order=0)
    return Case("hippocampus 128^3", image, label, (1.0, 1.0, 1.0))


@dataclass(frozen=True)
class EngineFigures:
    """Latencies (ms) of one case."""

    case: str
    set_image_cold: float
    set_image_warm: float
    refine_ms: tuple[float, ...]
    iterations: tuple[int, ...]
    naive_ms: tuple[float, ...]
    agreement: float


def measure(
    case: Case, model_name: str, interactions: int, naive_steps: int, config: RefineConfig
) -> EngineFigures:
    """Run the simulated session on ``case``; the first ``naive_steps`` refines are repeated by
    the naive loop from the same state for the ratio."""
    model = load_model(model_name)
    method = MedrefineMethod(model, config)
    t = time.perf_counter()
    method.start(case.image)
    cold = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    method.start(case.image)  # same pixels: served from the feature cache
    warm = 1000 * (time.perf_counter() - t)
    refine_ms, iterations, masks = [], [], []
    strokes_seen = []
    for rec, pred, strokes in simulate(
        method, case, model.num_classes, RobotConfig(), interactions
    ):
        if rec.interaction == 0 or rec.carried:
            continue
        refine_ms.append(rec.ms)
        iterations.append(rec.iterations or 0)
        masks.append(pred)
        strokes_seen.append(strokes)
    naive_cfg = replace(config, loop=replace(config.loop, head_eval="full"))
    naive = MedrefineMethod(model, naive_cfg)
    naive.start(case.image)
    naive_ms, agree = [], []
    for k, strokes in enumerate(strokes_seen[:naive_steps]):
        t = time.perf_counter()
        out = naive.step(strokes, np.zeros(0))
        naive_ms.append(1000 * (time.perf_counter() - t))
        agree.append(float(np.mean(out == masks[k])))
    return EngineFigures(
        case.case_id,
        cold,
        warm,
        tuple(refine_ms),
        tuple(iterations),
        tuple(naive_ms),
        min(agree, default=float("nan")),
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench engine``."""
    p = sub.add_parser(
        "engine", help="set_image / refine latency against the naive loop", description=__doc__
    )
    p.add_argument("--interactions", type=int, default=20)
    p.add_argument("--naive", type=int, default=5, help="refines repeated by the naive loop")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--strokes", type=int, default=12, help="strokes of the error workload (0: skip it)"
    )
    p.add_argument(
        "--config",
        default="",
        help="RefineConfig overrides, comma-separated, e.g. gate.widest=48,loop.lr=0.02",
    )
    add_page_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the figures as a table."""
    torch.set_num_threads(args.threads)
    config = RefineConfig().with_overrides(args.config)
    page = Page.from_args(args, "engine")
    table = Table(
        title=f"medrefine engine latency ({args.threads} torch threads, "
        f"{args.interactions} interactions per case)"
    )
    for col in (
        "case",
        "set_image cold ms",
        "set_image cached ms",
        "refine p50 ms",
        "refine p95 ms",
        "iterations p50",
        f"naive p50 ms (first {args.naive})",
        "ratio naive/fast",
        "mask agreement",
    ):
        table.add_column(col, justify="right")
    p50: dict[str, float] = {}
    for case, model in ((case_2d(), "nuclei-unet2d"), (case_3d(), "hippocampus-unet3d")):
        f = measure(case, model, args.interactions, args.naive, config)
        p50[model] = percentile(f.refine_ms, 50)
        fast_same = f.refine_ms[: len(f.naive_ms)]
        ratio = statistics.median(f.naive_ms) / statistics.median(fast_same) if fast_same else 0
        table.add_row(
            f.case,
            f"{f.set_image_cold:.0f}",
            f"{f.set_image_warm:.0f}",
            f"{percentile(f.refine_ms, 50):.0f}",
            f"{percentile(f.refine_ms, 95):.0f}",
            f"{statistics.median(f.iterations):.0f}",
            f"{percentile(f.naive_ms, 50):.0f}",
            f"{ratio:.1f}x",
            f"{100 * f.agreement:.2f}%",
        )
    page.table(table)
    checks = [
        ("2D 512^2 refine p50 (simulated user)", p50["nuclei-unet2d"], 100.0),
        ("3D 128^3 refine p50 (simulated user)", p50["hippocampus-unet3d"], 300.0),
    ]
    if args.strokes > 0:
        s = measure_strokes(stained_512(), load_model("nuclei-unet2d"), config, args.strokes)
        strokes = Table(title=f"stroke workload: {len(s.refine_ms)} strokes, a refine after each")
        for col in ("case", "refine p50 ms", "refine p95 ms", "iterations p50", "ratio to 2D"):
            strokes.add_column(col, justify="right")
        ratio = percentile(s.refine_ms, 50) / p50["nuclei-unet2d"]
        strokes.add_row(
            s.case,
            f"{percentile(s.refine_ms, 50):.0f}",
            f"{percentile(s.refine_ms, 95):.0f}",
            f"{statistics.median(s.iterations):.0f}",
            f"{ratio:.2f}x",
        )
        page.table(strokes)
        checks.insert(
            1, ("2D 512^2 refine p50 (stroke workload)", percentile(s.refine_ms, 50), 100.0)
        )
    page.table(_targets(checks))
    page.write()
    return 0


def _targets(checks: list[tuple[str, float, float]]) -> Table:
    """One row per latency target: the figure, the bound and whether it is met."""
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    table = Table(title=f"latency targets (load average 1 / 5 / 15 min: {load})")
    for col in ("target", "measured ms", "bound ms", "met"):
        table.add_column(col, justify="right")
    for name, value, bound in checks:
        table.add_row(name, f"{value:.0f}", f"{bound:.0f}", "yes" if value <= bound else "no")
    return table
