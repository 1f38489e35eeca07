"""Command line: ``medrefine demo | segment | train | models | serve | bench ...``.

A subcommand that needs an extra which is not installed (``serve`` without ``medrefine[serve]``,
``demo`` without ``medrefine[viz]``) or the lab (``demo``, ``bench`` and ``models --evaluate``
without ``medrefine-lab``, the checkout's ``lab/``) ends with one line naming what to install,
exit code 2 (:mod:`medrefine.extras`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from medrefine.errors import MedrefineError, MissingExtraError
from medrefine.extras import missing, require


def _demo(args: argparse.Namespace) -> int:
    require("matplotlib", "medrefine demo (its overlay PNGs)")  # before the work, not after
    demo = require("medrefine_lab.demo", "medrefine demo (its simulated user)")
    from medrefine.engine.config import RefineConfig

    config = RefineConfig().with_overrides(args.config)
    demo.run_demo(args.sample, args.interactions, args.out, config)
    if args.site_out != "none":
        demo.run_site_demo(args.site_out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from medrefine.models.train import main as train_main

    argv = ["--model", args.model, "--data", args.data, "--out", args.out]
    argv += ["--device", args.device] if args.device else []
    argv += ["--steps", str(args.steps)] if args.steps else []
    return train_main(argv)


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from medrefine.models.zoo import ZOO, model_card

    cards = (
        require("medrefine_lab.eval.cards", "medrefine models --evaluate")
        if args.evaluate
        else None
    )

    table = Table(title="medrefine model zoo")
    cols = ["name", "classes", "card: test Dice (network alone)", "description"]
    if args.evaluate:
        cols.insert(3, f"measured now on {args.evaluate}")
    for col in cols:
        table.add_column(col)
    for name, entry in sorted(ZOO.items()):
        card = model_card(name)
        row = [name, ", ".join(entry.class_names), f"{card['test_dice_mean']:.4f}"]
        if args.evaluate:
            assert cards is not None
            score = cards.evaluate_model(name, args.evaluate)
            row.append("n/a" if score != score else f"{score:.4f}")  # NaN: the data does not fit
        table.add_row(*row, entry.description)
    Console().print(table)
    return 0


#: ``medrefine bench`` names that differ from their module's.
_BENCH_NAMES = {"gpu_check": "gpu", "site_speed": "site-speed"}


class _NeedsExtra:
    """A benchmark whose module needs an extra that is not installed: ``medrefine bench NAME``
    is still listed, and running it raises the :class:`MissingExtraError` naming the extra."""

    def __init__(self, name: str, error: MissingExtraError) -> None:
        self.name, self.error = name, error

    def add_parser(self, sub: Any) -> None:
        p = sub.add_parser(self.name, help=f"(needs medrefine[{self.error.extra}])")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=self.run)

    def run(self, args: argparse.Namespace) -> int:
        raise self.error


def _benchmarks() -> list[Any]:
    """Modules with ``add_parser(subparsers)``, one ``medrefine bench NAME`` each."""
    import importlib

    names = ["grow", "geodesic", "engine", "latency", "accuracy", "report", "serve", "memory"]
    names += ["backends", "heads", "set_image", "conformance", "gpu_check", "site", "site_speed"]
    found: list[Any] = []
    for n in names:
        try:
            found.append(importlib.import_module(f"medrefine_lab.benchmarks.{n}"))
        except ModuleNotFoundError as exc:
            bench = _BENCH_NAMES.get(n, n)
            error = missing(exc, f"medrefine bench {bench}")
            if error is None:
                raise
            found.append(_NeedsExtra(bench, error))
    return found


def build_parser() -> argparse.ArgumentParser:
    """The ``medrefine`` argument parser (subcommands register themselves here)."""
    from medrefine.models.train import RECIPES
    from medrefine.samples import list_samples

    parser = argparse.ArgumentParser(prog="medrefine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="correct a shipped sample with simulated scribbles")
    demo.add_argument("--sample", default="nuclei-stained", choices=list_samples())
    demo.add_argument("--interactions", type=int, default=3)
    demo.add_argument("--out", default="medrefine-demo.png", help="overlay PNG to write")
    demo.add_argument(
        "--site-out",
        default="medrefine-site-demo.png",
        help="the site part's overlay PNG ('none': skip the site part)",
    )
    demo.add_argument(
        "--config",
        default="",
        help="RefineConfig overrides, comma-separated, e.g. objective.alpha=1,loop.lr=0.01",
    )
    demo.set_defaults(func=_demo)

    train = sub.add_parser("train", help="reproduce a zoo model's training run")
    train.add_argument("--model", required=True, choices=sorted(RECIPES))
    train.add_argument("--data", required=True, help="dataset folder (with cases.csv)")
    train.add_argument("--out", default="runs/train")
    train.add_argument("--device", default=None)
    train.add_argument("--steps", type=int, default=None)
    train.set_defaults(func=_train)

    models = sub.add_parser("models", help="list the shipped models and their cards")
    models.add_argument(
        "--evaluate",
        default=None,
        metavar="DATA_ROOT",
        help="recompute each card's test Dice from the dataset folders in DATA_ROOT (or from "
        "DATA_ROOT itself when it is one dataset folder, e.g. an nnU-Net raw dataset)",
    )
    models.set_defaults(func=_models)

    from medrefine.export_cli import add_parser as add_export
    from medrefine.segment import add_parser as add_segment
    from medrefine.serve.cli import add_parser as add_serve

    add_segment(sub)
    add_serve(sub)
    add_export(sub)

    bench = sub.add_parser("bench", help="benchmarks and evaluation").add_subparsers(
        dest="bench", required=True
    )
    for module in _benchmarks():
        module.add_parser(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; typed medrefine errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a page's "How measured" line
    try:
        try:
            return int(args.func(args))
        except ModuleNotFoundError as exc:  # an extra's package, imported by the subcommand
            error = missing(exc, f"medrefine {args.command}")
            if error is None:
                raise
            raise error from exc
    except MedrefineError as exc:
        print(f"medrefine: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
