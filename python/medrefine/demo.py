"""``medrefine demo``: a zoo model corrects a shipped sample under simulated scribbles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from medrefine.engine.refine import RefineConfig
from medrefine.eval.harness import simulate
from medrefine.eval.methods import MedrefineMethod
from medrefine.eval.robot.types import RobotConfig, paint
from medrefine.models.zoo import load_model
from medrefine.samples import SAMPLES, load_sample
from medrefine.viz import save_overlay


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
