"""The accuracy targets are read from an experiment's records and judged met or not."""

from __future__ import annotations

import json
from pathlib import Path

from medrefine_lab.eval.harness import Record
from medrefine_lab.eval.targets import targets_markdown, targets_summary


def _write(folder: Path, curves: dict[str, list[float]]) -> None:
    records = [
        Record(method, "case-1", k, dice, {1: dice}, 1.0).to_json()
        for method, curve in curves.items()
        for k, dice in enumerate(curve)
    ]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"meta": {}, "records": records}))


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("**", text.index("\n", start) + 1)
    return text[start : end if end > 0 else None]


def test_targets_read_the_figures_and_judge_them(tmp_path: Path) -> None:
    _write(
        tmp_path / "shift",
        {
            "medrefine": [0.1, 0.5, 0.6, 0.7, 0.8, 0.85],
            "graphcut": [0.0, 0.7, 0.7, 0.8, 0.8, 0.84],
        },
    )
    _write(tmp_path / "nuclei", {"medrefine": [0.9, 0.95, 0.94, 0.93, 0.92, 0.91]})
    text = targets_markdown(tmp_path)
    shift = _section(text, "**1. Shift")
    assert "met" in shift.splitlines()[0] and "not met" not in shift.splitlines()[0]
    assert "| `medrefine` D5 >= 0.800 | 0.850 |" in shift
    assert "| `medrefine` >= `graphcut` at D5 | 0.850 vs 0.840 |" in shift
    nuclei = _section(text, "**3. In distribution, nuclei")
    assert "not met" in nuclei.splitlines()[0]  # D5 0.910 < 0.915
    assert "| `medrefine` worst one-step change >= -0.05 | -0.010 |" in nuclei
    assert "**3. In distribution, hippocampus: D5 >= 0.905, no case loses > 0.05**: not run" in text


def test_the_summary_row_names_the_checks_that_failed(tmp_path: Path) -> None:
    _write(
        tmp_path / "shift",
        {
            "medrefine": [0.1, 0.5, 0.6, 0.7, 0.8, 0.85],
            "graphcut": [0.0, 0.7, 0.7, 0.8, 0.8, 0.90],
            "geodesic": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        },
    )
    _write(tmp_path / "nuclei", {"medrefine": [0.9, 0.92, 0.93, 0.93, 0.93, 0.93]})
    rows = {line.split(" | ")[0][2:]: line for line in targets_summary(tmp_path).splitlines()}
    shift = rows["1. Shift: D5 >= 0.80 and >= every baseline at 5"]
    assert shift.endswith("| not met | `medrefine` >= `graphcut` at D5: 0.850 vs 0.900 |")
    nuclei = rows["3. In distribution, nuclei: D5 >= 0.915, no case loses > 0.05"]
    assert "| met | `medrefine` D5 >= 0.915: 0.930; `medrefine` worst one-step change" in nuclei
    assert rows["3. In distribution, hippocampus: D5 >= 0.905, no case loses > 0.05"].endswith(
        "| not run | |"
    )


def test_a_method_or_interaction_not_run_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    _write(tmp_path / "new-structure", {"medrefine": [0.3, 0.4, 0.5]})  # no add_class, k <= 2
    text = targets_summary(tmp_path)
    assert "| not met | `medrefine` D5 >= 0.800: not run to D5" in text
    assert "| not met | `medrefine+newclass`: not run in this experiment;" in text
