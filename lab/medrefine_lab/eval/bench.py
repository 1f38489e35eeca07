"""Accuracy experiments: methods x cases x interactions on a dataset folder -> records.

``run_accuracy`` drives every method with the same deterministic simulated user on the first
``cases`` test cases of a dataset (optionally of some acquisition groups) and returns one
:class:`~medrefine_lab.eval.harness.Record` per method, case and interaction (0..K).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from medrefine.data import Case, open_dataset
from medrefine.errors import InputError
from medrefine.models.split import SplitModel
from medrefine.models.zoo import load_model
from medrefine_lab.eval.harness import Record, simulate
from medrefine_lab.eval.methods import make_method
from medrefine_lab.eval.robot.types import RobotConfig


@dataclass(frozen=True)
class Experiment:
    """One accuracy experiment.

    Attributes:
        data: dataset folder (with ``cases.csv``).
        model: zoo model name.
        methods: method specs (see :func:`medrefine_lab.eval.methods.make_method`).
        robot: the simulated user's settings (``mode="box"`` means a box at k = 1, then clicks).
        cases: how many cases of ``split`` (in ``cases.csv`` order); 0 = all.
        skip: cases of ``split`` passed over before those (held-out cases that settings were
            never chosen on start after the first ones).
        interactions: K.
        groups: restrict to these acquisition groups (DSB), None = all.
    """

    data: Path
    model: str
    methods: tuple[str, ...]
    robot: RobotConfig = field(default_factory=RobotConfig)
    cases: int = 0
    skip: int = 0
    interactions: int = 5
    groups: tuple[str, ...] | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        if self.cases < 0 or self.skip < 0:
            raise InputError(f"cases and skip must be >= 0, got {self.cases} and {self.skip}")

    def case_ids(self) -> list[str]:
        ids = open_dataset(self.data).ids(self.split, self.groups)
        ids = ids[self.skip :]
        return ids[: self.cases] if self.cases else ids


def run_accuracy(
    exp: Experiment,
    model: SplitModel | None = None,
    on_case: Callable[[str, str, Case, list[object]], None] | None = None,
) -> list[Record]:
    """Run ``exp``; ``on_case(method, case_id, case, trace)`` sees each finished session, where
    ``trace`` holds ``(record, prediction, strokes)`` per interaction (for overlays)."""
    ds = open_dataset(exp.data)
    model = model or load_model(exp.model)
    ids = exp.case_ids()
    records: list[Record] = []
    bar = tqdm(total=len(ids) * len(exp.methods), desc=f"{exp.model} on {ds.root.name}")
    for case_id in ids:
        case = ds.load(case_id)
        for spec in exp.methods:
            method = make_method(spec, model)
            trace = list(simulate(method, case, model.num_classes, exp.robot, exp.interactions))
            records.extend(r for r, _, _ in trace)
            if on_case is not None:
                on_case(spec, case_id, case, trace)  # type: ignore[arg-type]
            bar.update()
    bar.close()
    return records


def save_records(records: Sequence[Record], path: Path, meta: dict[str, object]) -> Path:
    """Write ``{"meta": ..., "records": [...]}`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "records": [r.to_json() for r in records]}, indent=1))
    return path
