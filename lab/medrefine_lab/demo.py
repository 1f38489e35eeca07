"""``medrefine demo``: a zoo model corrects a shipped sample under simulated scribbles, then a
site learns a shipped series: the simulated user corrects and accepts the first images, and the
next one opens right (:func:`run_site_demo`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from medrefine.engine.config import RefineConfig
from medrefine.models.zoo import load_model
from medrefine.samples import SAMPLES, SERIES, load_sample
from medrefine.site import Site
from medrefine.viz import save_overlay
from medrefine_lab.eval.harness import simulate
from medrefine_lab.eval.methods import MedrefineMethod
from medrefine_lab.eval.robot.types import RobotConfig, paint
from medrefine_lab.eval.sequence import correct


def run_demo(
    sample: str = "nuclei-stained",
    interactions: int = 3,
    out: str | Path = "medrefine-demo.png",
    config: RefineConfig | None = None,
    console: Console | None = None,
) -> list[float]:
    """Segment ``sample`` with its zoo model, correct it ``interactions`` times with the
    simulated user's scribbles, print Dice after each and write an overlay PNG to ``out``.

    Returns the mean foreground Dice after 0..interactions interactions.
    """
    console = console or Console()
    case = load_sample(sample)
    model = load_model(SAMPLES[sample].model)
    method = MedrefineMethod(model, config or RefineConfig())
    table = Table(title=f"{model.name} on sample {sample} {case.image.shape}")
    for col in ("interaction", "Dice", "ms", "iterations", "marks honoured by the network"):
        table.add_column(col, justify="right")
    seeds = np.zeros(case.label.shape, dtype=np.int32)
    first: np.ndarray | None = None
    last: np.ndarray | None = None
    dices = []
    for rec, pred, strokes in simulate(
        method, case, model.num_classes, RobotConfig(), interactions
    ):
        seeds = paint(seeds, strokes)
        first = pred if first is None else first
        last = pred
        dices.append(rec.dice)
        honoured = "" if rec.honoured is None else f"{100 * rec.honoured:.0f}%"
        table.add_row(
            str(rec.interaction),
            f"{rec.dice:.3f}",
            f"{rec.ms:.0f}",
            "" if rec.iterations is None else str(rec.iterations),
            honoured,
        )
    console.print(table)
    path = save_overlay(
        out,
        case.image,
        [
            ("network", first),
            ("marks", first),
            (f"after {interactions}", last),
            ("ground truth", case.label),
        ],
        seeds,
        model.spatial_dims,
    )
    console.print(f"overlay written to {path}")
    return dices


def run_site_demo(
    out: str | Path = "medrefine-site-demo.png",
    cap: int = 10,
    console: Console | None = None,
) -> list[float]:
    """The fluorescence-trained network on the shipped stained series, through one site: on
    every image but the last the simulated user corrects the mask (to Dice 0.90 or ``cap``
    interactions) and accepts it; the last opens from what they taught. Prints a table and
    writes ``out`` (the last image: the network's mask, the site's first mask, the truth).

    Returns each image's first-mask Dice, in order.
    """
    console = console or Console()
    model = load_model(SAMPLES[SERIES[0]].model)
    site = Site(model)
    table = Table(title=f"{model.name} on the stained series: a site learns from accepted masks")
    for col in ("image", "started from", "first Dice", "interactions", "final Dice", "accept s"):
        table.add_column(col, justify="right")
    firsts = []
    for i, name in enumerate(SERIES, start=1):
        case = load_sample(name)
        method = MedrefineMethod(model, RefineConfig(), "medrefine+site", site=site)
        last = i == len(SERIES)
        dice, _, _ = correct(method, case, model.num_classes, RobotConfig(), 0 if last else cap)
        assert method.session is not None
        source = method.session.head_source[0]
        accept = ""
        if not last:
            t = time.perf_counter()
            method.session.accept()
            accept = f"{time.perf_counter() - t:.2f}"
        firsts.append(dice[0])
        table.add_row(
            str(i), source, f"{dice[0]:.3f}", str(len(dice) - 1), f"{dice[-1]:.3f}", accept
        )
    console.print(table)
    console.print(site.start().reason)
    case = load_sample(SERIES[-1])
    network = MedrefineMethod(model, RefineConfig()).start(case.image)
    taught = MedrefineMethod(model, RefineConfig(), site=site).start(case.image)
    path = save_overlay(
        out,
        case.image,
        [("network alone", network), ("from the site", taught), ("ground truth", case.label)],
        None,
        model.spatial_dims,
    )
    console.print(f"overlay written to {path}")
    return firsts
