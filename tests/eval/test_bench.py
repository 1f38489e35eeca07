"""The accuracy pipeline end to end on a mini dataset made of the shipped samples."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import medrefine as mr
from medrefine.cli import main
from medrefine.errors import InputError
from medrefine.samples import DATA
from medrefine_lab.benchmarks import report
from medrefine_lab.eval.bench import Experiment
from medrefine_lab.eval.experiments import specs
from medrefine_lab.eval.harness import simulate
from medrefine_lab.eval.methods import MarksOnly, MedrefineMethod, make_method
from medrefine_lab.eval.report import summarize
from medrefine_lab.eval.robot.types import RobotConfig


@pytest.fixture()
def mini_dsb(tmp_path: Path) -> Path:
    """A two-case dataset folder in the DSB layout (both cases in the test split)."""
    root = tmp_path / "dsb"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = []
    for name in ("nuclei-fluorescence", "nuclei-stained"):
        shutil.copy(DATA / f"{name}.png", root / "images" / f"{name}.png")
        shutil.copy(DATA / f"{name}.label.png", root / "labels" / f"{name}.png")
        rows.append(
            {
                "image_id": name,
                "group": name,
                "height": 0,
                "width": 0,
                "channels": 0,
                "n_nuclei": 0,
                "suggested_split": "test",
            }
        )
    with (root / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_bench_accuracy_writes_records_summary_and_plots(mini_dsb: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "accuracy",
            "--data",
            str(mini_dsb),
            "--model",
            "nuclei-unet2d",
            "--methods",
            "medrefine,marks-only,graphcut",
            "--interactions",
            "2",
            "--overlays",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert len(records) == 2 * 3 * 3  # cases x methods x (0..2)
    keys = {"method", "case", "interaction", "dice", "dice_per_class", "ms", "painted"}
    assert keys <= set(records[0])
    first = {(r["method"], r["case"]): r for r in records if r["interaction"] == 0}
    assert first[("graphcut", "nuclei-stained")]["dice"] == 0.0
    assert first[("marks-only", "nuclei-stained")]["dice"] == pytest.approx(
        first[("medrefine", "nuclei-stained")]["dice"]
    )
    summary = (out / "summary.md").read_text()
    assert "| `medrefine` | 2 |" in summary
    # every medrefine refine reports what it changed outside the marks' reach, per class
    refined = [r for r in records if r["method"] == "medrefine" and r["interaction"] > 0]
    assert all("unmarked_outside_gain" in r["extra"] for r in refined if not r["carried"])
    assert (
        "Outside the marks' reach" in summary
        and "| `marks-only` |" not in summary.split("Outside the marks' reach")[1]
    )
    assert (out / "dice.png").stat().st_size > 0
    assert len(list(out.glob("overlay-*.png"))) == 3
    # One failure overlay per method that ever lost Dice in one interaction.
    curves: dict[tuple[str, str], dict[int, float]] = {}
    for r in records:
        curves.setdefault((r["method"], r["case"]), {})[r["interaction"]] = r["dice"]
    lost = {m for (m, _), d in curves.items() if any(d[k] < d[k - 1] for k in range(1, len(d)))}
    assert {p.name for p in out.glob("failure-*.png")} == {f"failure-{m}.png" for m in lost}


def test_skip_passes_over_the_first_cases(mini_dsb: Path) -> None:
    both = Experiment(mini_dsb, "nuclei-unet2d", ("marks-only",))
    assert both.case_ids() == ["nuclei-fluorescence", "nuclei-stained"]
    assert replace(both, skip=1).case_ids() == ["nuclei-stained"]
    assert replace(both, skip=1, cases=1).case_ids() == ["nuclei-stained"]
    assert replace(both, skip=2).case_ids() == []
    with pytest.raises(InputError, match="skip"):
        replace(both, skip=-1)
    held_out = [s for s in specs() if s.skip]
    assert held_out and all(s.key.startswith("held-out") for s in held_out)


def test_harness_carries_metrics_when_nothing_is_left_to_correct() -> None:
    case = mr.load_sample("nuclei-fluorescence")
    perfect = MarksOnly(mr.load_model("nuclei-unet2d"))
    perfect.start = lambda image: case.label.copy()  # type: ignore[method-assign]
    trace = list(simulate(perfect, case, 2, RobotConfig(), 3))
    assert [r.carried for r, _, _ in trace] == [False, True, True, True]
    assert all(r.dice == 1.0 for r, _, _ in trace)


def test_marks_only_writes_seeds_into_the_network_mask() -> None:
    case = mr.load_sample("nuclei-stained")
    method = MarksOnly(mr.load_model("nuclei-unet2d"))
    p0 = method.start(case.image)
    seeds = np.zeros(case.label.shape, np.int32)
    seeds[0:3, 0:3] = 2  # class 1
    out = method.step([], seeds)
    assert (out[0:3, 0:3] == 1).all() and np.array_equal(out[3:], p0[3:])


def test_new_class_method_maps_labels_both_ways() -> None:
    case = mr.load_sample("nuclei-fluorescence")
    method = make_method("medrefine+newclass", mr.load_model("nuclei-unet2d"))
    assert isinstance(method, MedrefineMethod)
    p0 = method.start(case.image)
    assert method.session is not None and method.session.num_classes == 3
    assert not p0.any()  # the new class starts below the others; nuclei count as background
    trace = list(simulate(method, case, 2, RobotConfig(), 1))
    stroke, background = trace[-1][2]  # R6b: the absent structure comes with a background stroke
    pred = trace[-1][1]
    assert (stroke.label, background.label) == (1, 0) and pred is not None
    assert (pred[tuple(stroke.pixels.T)] == 1).all()  # the new channel maps back to label 1
    assert (pred[tuple(background.pixels.T)] == 0).all()
    assert trace[-1][0].dice > 0.0


def test_summary_averages_outside_reach_changes_per_class() -> None:
    from medrefine_lab.eval.harness import Record

    def rec(k: int, gain0: float, loss1: float, unmarked: float) -> Record:
        extra = {"outside_gain_0": gain0, "outside_loss_0": 0.0}
        extra |= {"outside_gain_1": 0.0, "outside_loss_1": loss1, "unmarked_outside_gain": unmarked}
        return Record("m", "a", k, 0.5, {1: 0.5}, 1.0, extra=extra)

    (s,) = summarize([Record("m", "a", 0, 0.5, {1: 0.5}, 1.0), rec(1, 10, 4, 0), rec(2, 30, 0, 2)])
    assert s.outside == ((0, 20.0, 0.0), (1, 0.0, 2.0)) and s.unmarked_outside_gain == 2.0
    (none,) = summarize([Record("g", "a", 0, 0.0, {1: 0.0}, 1.0), Record("g", "a", 1, 0.7, {}, 1)])
    assert none.outside == () and none.unmarked_outside_gain is None


def test_summary_reports_worst_step_including_the_first() -> None:
    from medrefine_lab.eval.harness import Record

    recs = [Record("m", "a", k, d, {1: d}, 1.0) for k, d in enumerate([0.8, 0.5, 0.9])]
    (s,) = summarize(recs)
    assert s.worst_drop == pytest.approx(-0.3) and s.dice == (0.8, 0.5, 0.9)


@pytest.mark.parametrize(
    "spec", ["nope", "marks-only:objective.alpha=1", "medrefine:nope=1", "medrefine:alpha=1"]
)
def test_unknown_methods_are_refused(spec: str) -> None:
    with pytest.raises(InputError):
        make_method(spec, mr.load_model("nuclei-unet2d"))


def test_presets_take_overrides_after_them() -> None:
    model = mr.load_model("nuclei-unet2d")
    shifted = make_method("medrefine:shifted,gate.steps=0", model)
    assert isinstance(shifted, MedrefineMethod)
    gate = replace(mr.RefineConfig.shifted().gate, steps=0)
    assert shifted.config == replace(mr.RefineConfig.shifted(), gate=gate)
    paper = make_method("medrefine:paper", model)
    assert isinstance(paper, MedrefineMethod)
    assert paper.config == mr.RefineConfig.paper()


def test_the_report_runs_each_experiment_as_specified(monkeypatch, tmp_path) -> None:
    """The report calls the bench as a function with the spec's own settings (a method with
    commas in its overrides stays one method), no command line in between."""
    ran: dict[str, Experiment] = {}

    def fake_write(exp: Experiment, out: Path, **kwargs: object) -> None:
        ran[out.name] = exp
        out.mkdir(parents=True)
        (out / "summary.md").write_text(f"summary of {out.name}\n")

    monkeypatch.setattr(report.accuracy, "write_accuracy", fake_write)
    chosen = specs()[:3]
    for spec in chosen:
        text = report._run_one(spec, tmp_path / "data", tmp_path / "out", resume=False)
        assert text.startswith(f"summary of {spec.key}")
        exp = ran[spec.key]
        assert (exp.data, exp.model, exp.methods) == (
            tmp_path / "data" / spec.dataset,
            spec.model,
            spec.methods,
        )
        assert (exp.robot, exp.cases, exp.skip, exp.groups) == (
            spec.robot,
            spec.cases,
            spec.skip,
            spec.groups,
        )
    assert any("," in m for spec in specs() for m in spec.methods)  # the case that once broke


def test_accuracy_cli_takes_a_split_and_first_rounds() -> None:
    from medrefine.cli import build_parser

    args = build_parser().parse_args(
        [
            "bench",
            "accuracy",
            "--data",
            "d",
            "--model",
            "m",
            "--out",
            "o",
            "--split",
            "train",
            "--first-rounds",
            "3",
        ]
    )
    assert (args.split, args.first_rounds) == ("train", 3)
    assert build_parser().parse_args(
        ["bench", "accuracy", "--data", "d", "--model", "m", "--out", "o"]
    ).split == ("test")
