"""``medrefine bench accuracy``: simulated-user experiments on a dataset folder.

Writes ``OUT/results.json`` (``{"meta", "records"}``, one record per method, case and interaction),
``OUT/summary.md`` (Dice after each interaction, Dice-AUC, NoC@0.85/0.90, ms p50/p95, machine),
``OUT/dice.png``, overlays of the first cases (``OUT/overlay-*.png``) and of each drawn method's
worst one-interaction Dice loss, the interaction before and after (``OUT/failure-*.png``).
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.data import Case
from medrefine.errors import InputError
from medrefine.viz import save_overlay
from medrefine_lab.eval.bench import Experiment, run_accuracy, save_records
from medrefine_lab.eval.report import machine, markdown, plot_curves, summarize
from medrefine_lab.eval.robot.types import RobotConfig, paint


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench accuracy``."""
    p = sub.add_parser("accuracy", help="simulated-user accuracy experiment", description=__doc__)
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="dataset folder: a staged one (cases.csv) or an nnU-Net raw dataset (dataset.json, "
        "imagesTs/ with _0000 channel files, labelsTs/) in any format medrefine reads",
    )
    p.add_argument("--model", required=True, help="zoo model name")
    p.add_argument(
        "--methods",
        default="medrefine,marks-only",
        help="comma-separated methods; medrefine[:section.field=value,...] takes RefineConfig "
        "overrides, also comma-separated (an item with '=' and no ':' belongs to the method "
        "before it), e.g. medrefine:objective.alpha=1,marks.grow=on,marks-only",
    )
    p.add_argument("--mode", default="scribble", choices=("scribble", "click", "box"))
    p.add_argument("--single", action="store_true", help="one stroke per interaction (R6)")
    p.add_argument(
        "--first-rounds",
        type=int,
        default=1,
        help="rounds of strokes drawn at the first interaction, refined at once (a person's "
        "several strokes per class before the first refine)",
    )
    p.add_argument(
        "--protocol",
        default="v1.1",
        choices=("v1", "v1.1"),
        help="simulated-user protocol: v1.1 adds R6b (a first interaction on a structure the "
        "start mask lacks also draws a background stroke, docs/protocol.md); v1 without it",
    )
    p.add_argument("--cases", type=int, default=0, help="first N test cases (0 = all)")
    p.add_argument("--skip", type=int, default=0, help="pass over the first N test cases")
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "train"),
        help="cases.csv split; train holds a dev split for experiments whose network never saw "
        "those images (the shift's stained and brightfield groups, fetal heads for the nuclei "
        "network)",
    )
    p.add_argument("--interactions", type=int, default=5)
    p.add_argument("--groups", default="", help="comma-separated acquisition groups (DSB)")
    p.add_argument("--overlays", type=int, default=3, help="cases drawn as overlays")
    p.add_argument(
        "--overlay-methods", default="", help="comma-separated methods to draw (default: all)"
    )
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=run)


def failure_name(method: str) -> str:
    """File name of the overlay of ``method``'s worst one-interaction Dice loss."""
    return f"failure-{method.replace(':', '_').replace(',', '_')}.png"


def overlay_name(method: str, index: int) -> str:
    """File name of the ``index``-th overlay (1-based) drawn for ``method``."""
    return f"overlay-{method.replace(':', '_').replace(',', '_')}-{index}.png"


def parse_methods(text: str) -> tuple[str, ...]:
    """Split ``--methods`` at commas; an item holding ``=`` but no ``:`` is an override of the
    method before it: ``a,medrefine:gate.widest=48,loop.lr=0.02,b`` ->
    ``("a", "medrefine:gate.widest=48,loop.lr=0.02", "b")``."""
    methods: list[str] = []
    for item in (m.strip() for m in text.split(",")):
        if not item:
            continue
        if ";" in item:
            raise InputError(f"methods and their overrides are separated by ',', not ';': {item!r}")
        if "=" in item and ":" not in item:
            if not methods:
                raise InputError(f"override {item!r} follows no method")
            methods[-1] += "," + item
        else:
            methods.append(item)
    return tuple(methods)


def _seeds(shape: tuple[int, ...], trace: list[Any]) -> np.ndarray:
    """The seed array (0 = none, c+1 = class c) of every stroke in ``trace``'s interactions."""
    seeds = np.zeros(shape, np.int32)
    for _, _, strokes in trace:
        seeds = paint(seeds, strokes)
    return seeds


def run(args: argparse.Namespace) -> int:
    """``medrefine bench accuracy``: the command line's experiment, written under ``--out``."""
    exp = Experiment(
        data=args.data,
        model=args.model,
        methods=parse_methods(args.methods),
        robot=RobotConfig(
            mode=args.mode,
            per_class=not args.single,
            first_rounds=args.first_rounds,
            absent_background=args.protocol != "v1",
        ),
        cases=args.cases,
        skip=args.skip,
        interactions=args.interactions,
        groups=tuple(g for g in args.groups.split(",") if g) or None,
        split=args.split,
    )
    chosen = parse_methods(args.overlay_methods)
    write_accuracy(exp, args.out, overlays=args.overlays, overlay_methods=chosen, title=args.title)
    return 0


def write_accuracy(
    exp: Experiment,
    out: Path,
    *,
    overlays: int = 3,
    overlay_methods: tuple[str, ...] = (),
    title: str = "",
) -> None:
    """Run ``exp`` and write its records, summary, curves and overlays under ``out``.

    ``overlays`` cases are drawn per method (only ``overlay_methods`` are drawn, all if empty);
    each drawn method's worst one-interaction loss is drawn too.
    """
    drawn: dict[str, int] = {}
    chosen = set(overlay_methods)

    def overlay(method: str, case_id: str, case: Case, trace: list[Any]) -> None:
        if drawn.get(method, 0) >= overlays or (chosen and method not in chosen):
            return
        drawn[method] = drawn.get(method, 0) + 1
        seeds = _seeds(case.label.shape, trace)
        first, last = trace[0][1], trace[-1][1]
        name = overlay_name(method, drawn[method])
        save_overlay(
            out / name,
            case.image,
            [
                ("start", first),
                ("marks", first),
                (f"after {exp.interactions}", last),
                ("ground truth", case.label),
            ],
            seeds,
            case.label.ndim,
        )

    worst: dict[str, tuple[float, Case, list[Any], int]] = {}

    def on_case(method: str, case_id: str, case: Case, trace: list[Any]) -> None:
        overlay(method, case_id, case, trace)
        if chosen and method not in chosen:
            return
        dice = [r.dice for r, _, _ in trace]
        steps = [
            (dice[k] - dice[k - 1], k) for k in range(1, len(dice)) if trace[k - 1][1] is not None
        ]
        if not steps:
            return
        drop, k = min(steps)
        if drop < worst.get(method, (0.0,))[0]:  # keep the worst loss (a loss only)
            worst[method] = (drop, case, trace, k)

    records = run_accuracy(exp, on_case=on_case)
    for method, (drop, case, trace, k) in worst.items():
        seeds = _seeds(case.label.shape, trace[: k + 1])
        save_overlay(
            out / failure_name(method),
            case.image,
            [
                (f"after {k - 1}", trace[k - 1][1]),
                ("marks", trace[k - 1][1]),
                (f"after {k} ({drop:+.2f} Dice)", trace[k][1]),
                ("ground truth", case.label),
            ],
            seeds,
            case.label.ndim,
        )
    meta = {
        "data": str(exp.data),
        "model": exp.model,
        "methods": list(exp.methods),
        "mode": exp.robot.mode,
        "per_class": exp.robot.per_class,
        "first_rounds": exp.robot.first_rounds,
        "protocol": "v1.1" if exp.robot.absent_background else "v1",
        "cases": len(exp.case_ids()),
        "interactions": exp.interactions,
        "groups": ",".join(exp.groups or ()),
        "split": exp.split,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
    }
    save_records(records, out / "results.json", meta)
    title = title or f"{exp.model} on {exp.data.name} ({exp.robot.mode}, {meta['cases']} cases)"
    summaries = summarize(records)
    text = markdown(summaries, title) + f"\nMachine: {machine()}.\n"
    (out / "summary.md").write_text(text)
    plot_curves(summaries, out / "dice.png", title)
    print(text)
