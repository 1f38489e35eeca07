"""``medrefine bench latency``: set_image and refine latency of every zoo model on its test cases.

For each model, the first ``--cases`` test cases of its dataset (under ``--data-root``) are
corrected by the simulated user for ``--interactions`` steps; reported are set_image (backbone)
p50/p95, refine p50/p95 over every refine, gradient steps, and the naive loop (the head over the
whole image at every iteration) on the first refine of each case, with the ratio of medians over
those same refines.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from medrefine.data import open_dataset
from medrefine.engine.config import RefineConfig
from medrefine.models.train import RECIPES
from medrefine.models.zoo import ZOO
from medrefine_lab.benchmarks.engine import EngineFigures, measure
from medrefine_lab.benchmarks.page import Page, add_page_option
from medrefine_lab.eval.report import machine


def _row(name: str, figures: list[EngineFigures]) -> list[str]:
    cold = [f.set_image_cold for f in figures]
    refine = [ms for f in figures for ms in f.refine_ms]
    steps = [it for f in figures for it in f.iterations]
    naive = [ms for f in figures for ms in f.naive_ms]
    fast_same = [ms for f in figures for ms in f.refine_ms[: len(f.naive_ms)]]
    ratio = statistics.median(naive) / statistics.median(fast_same) if fast_same else float("nan")
    return [
        name,
        str(len(figures)),
        f"{np.percentile(cold, 50):.0f}",
        f"{np.percentile(cold, 95):.0f}",
        f"{np.percentile(refine, 50):.0f}",
        f"{np.percentile(refine, 95):.0f}",
        f"{statistics.median(steps):.0f}",
        f"{statistics.median(naive):.0f}",
        f"{ratio:.0f}x",
    ]


def latency_markdown(data_root: Path, cases: int, interactions: int) -> str:
    """The latency table of every zoo model, as Markdown."""
    head = [
        "model",
        "cases",
        "set_image p50 ms",
        "set_image p95 ms",
        "refine p50 ms",
        "refine p95 ms",
        "steps p50",
        "naive refine p50 ms",
        "naive / fast",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    config = RefineConfig()
    for name, entry in sorted(ZOO.items()):
        ds = open_dataset(data_root / entry.dataset)
        ids = ds.ids("test", RECIPES[name].groups)[:cases]
        figures = [measure(ds.load(i), name, interactions, 1, config) for i in ids]
        lines.append("| " + " | ".join(_row(name, figures)) + " |")
    return (
        f"Latency on the test cases (first {cases} per model, {interactions} simulated "
        f"interactions each; naive = first refine of each case repeated with the head over the "
        f"whole image at every iteration). Machine: {machine()}.\n\n" + "\n".join(lines) + "\n"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench latency``."""
    p = sub.add_parser(
        "latency", help="latency of every zoo model on its test cases", description=__doc__
    )
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the datasets")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--interactions", type=int, default=5)
    add_page_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    page = Page.from_args(args, "latency")
    page.text(latency_markdown(args.data_root, args.cases, args.interactions))
    page.write()
    return 0
