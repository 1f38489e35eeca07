"""Benchmark ``medrefine bench set-image``: set_image on crop-mode heads, checked or verdict kept.

The networks of ``medrefine bench heads`` (a transposed-convolution decoder at 1/4 and a
deeplab-like head at 1/8, random seeded weights) in 2D 512x512 and 3D 128^3, on two scenes of
one shape whose features are cached first, so that set_image is the head's part alone: the
runner's checks (:mod:`medrefine.engine.head.verdict`) and the network's mask. Each run times
set_image twice, taking turns: *checked*, with the kept verdicts forgotten first (what every
set_image paid before they were kept), and *kept*, a later image of the shape on the same
network. The table gives p50/p95 of both, their ratio in the same run, and whether the masks are
identical.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from rich.table import Table
from torch import nn

import medrefine as mr
from medrefine.engine.head.verdict import VERDICTS
from medrefine_lab.benchmarks.heads import (
    add_scene_options,
    chosen_dims,
    decoder_net,
    deeplab_net,
    scene,
    split_net,
)
from medrefine_lab.benchmarks.page import Page
from medrefine_lab.benchmarks.stats import percentile


@dataclass(frozen=True)
class SetImageFigures:
    """One case: set_image times (ms) with the checks and with their verdict kept, the
    runner's mode, and whether both gave the same masks."""

    case: str
    mode: str
    checked_ms: tuple[float, ...]
    kept_ms: tuple[float, ...]
    same_masks: bool


def measure(
    name: str, net: nn.Module, dims: int, shape: tuple[int, ...], runs: int
) -> SetImageFigures:
    """``runs`` pairs of set_image (checked, then kept) on two scenes of ``shape`` taking
    turns, their features cached beforehand."""
    model = split_net(net, dims, seed=0)
    images = [scene(shape, seed=s)[0] for s in (0, 1)]
    session = mr.Session(model)
    for image in images:
        session.set_image(image)  # features into the cache
    times: dict[str, list[float]] = {"checked": [], "kept": []}
    same = True
    for r in range(runs):
        masks = []
        for kind in ("checked", "kept"):
            if kind == "checked":
                VERDICTS.clear()
            t = time.perf_counter()
            masks.append(session.set_image(images[r % 2]))
            times[kind].append(1000 * (time.perf_counter() - t))
        same = same and np.array_equal(masks[0], masks[1])
    mode = session._require_image().runner.mode
    size = "x".join(map(str, shape))
    return SetImageFigures(
        f"{name} {dims}D {size}", mode, tuple(times["checked"]), tuple(times["kept"]), same
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench set-image``."""
    p = sub.add_parser(
        "set-image",
        help="set_image on crop-mode heads: the head's checks against their kept verdict",
        description=__doc__,
    )
    p.add_argument("--runs", type=int, default=7, help="set_image pairs per case")
    add_scene_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the figures as a table, with the load average before and after."""
    torch.set_num_threads(args.threads)
    before = os.getloadavg()[0]
    rows = []
    for d in chosen_dims(args.dims):
        shape = (512, 512) if d == 2 else (128, 128, 128)
        for name, build in (("decoder", decoder_net), ("deeplab-like", deeplab_net)):
            torch.manual_seed(0)  # the same weights on every run
            rows.append(measure(name, build(d), d, shape, args.runs))
    table = Table(
        title=f"set_image on crop-mode heads, features cached ({args.threads} torch threads, "
        f"{args.runs} runs per case, load average {before:.2f} -> {os.getloadavg()[0]:.2f})"
    )
    cols = ["case", "mode", "checked p50 / p95 ms", "verdict kept p50 / p95 ms"]
    cols += ["ratio checked/kept p50", "masks identical"]
    for col in cols:
        table.add_column(col, justify="right")
    for f in rows:
        table.add_row(
            f.case,
            f.mode,
            f"{percentile(f.checked_ms, 50):.0f} / {percentile(f.checked_ms, 95):.0f}",
            f"{percentile(f.kept_ms, 50):.0f} / {percentile(f.kept_ms, 95):.0f}",
            f"{percentile(f.checked_ms, 50) / percentile(f.kept_ms, 50):.1f}x",
            "yes" if f.same_masks else "NO",
        )
    page = Page.from_args(args, "set-image")
    page.table(table)
    page.write()
    return 0
