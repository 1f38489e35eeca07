"""The accuracy page's generated section is read from the report's experiment folders."""

from __future__ import annotations

import json
from pathlib import Path

from medrefine_lab.benchmarks.accuracy_page import headline_markdown, measured, page_body
from medrefine_lab.eval.experiments import Spec
from medrefine_lab.eval.harness import Record


def _experiment(out: Path, key: str, curves: dict[str, list[float]], date: str) -> None:
    records = [
        Record(method, case, k, dice + 0.01 * i, {1: dice + 0.01 * i}, 1.0).to_json()
        for method, curve in curves.items()
        for i, case in enumerate(("case-1", "case-2"))
        for k, dice in enumerate(curve)
    ]
    folder = out / key
    folder.mkdir(parents=True)
    meta = {"machine": "test box", "date": date}
    (folder / "results.json").write_text(json.dumps({"meta": meta, "records": records}))
    (folder / "summary.md").write_text(f"### {key}\n\n| table of {key} |\n\nMachine: test box.\n")
    (folder / "minutes.txt").write_text("1.5\n")
    (folder / "dice.png").write_bytes(b"png of " + key.encode())


def test_headline_rows_come_from_each_experiment(tmp_path: Path) -> None:
    _experiment(
        tmp_path,
        "nuclei",
        {
            "medrefine": [0.80, 0.85, 0.84],
            "marks-only": [0.80, 0.82, 0.83],
            "graphcut": [0.0, 0.6, 0.7],
            "watershed": [0.0, 0.7, 0.75],
        },
        "2026-01-02",
    )
    text = headline_markdown(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| nuclei, DSB test"))
    # 2 cases (+0.01 on the second): network .805, medrefine .845 after k = 2, marks .835,
    # no paper's loop, the best seed baseline watershed .755, worst step .85 -> .84
    assert row == (
        "| nuclei, DSB test (2) | 2 | 0.805 | **0.845** | 0.835 |  | 0.755 watershed | -0.010 |"
    )
    assert "| hippocampus 3D, two classes | | not run (`hippocampus`, `medrefine`) |" in text


def test_the_page_body_holds_every_table_and_copies_only_the_shown_plots(tmp_path: Path) -> None:
    out, page = tmp_path / "runs", tmp_path / "docs" / "accuracy.md"
    _experiment(out, "nuclei", {"medrefine": [0.8, 0.9]}, "2026-01-02")
    _experiment(out, "ablation-nuclei", {"medrefine": [0.8, 0.9]}, "2026-01-05")
    chosen = [
        Spec(k, f"Title {k}", "data", "model", ("medrefine",), 2)
        for k in ("nuclei", "ablation-nuclei", "mode-box")
    ]
    body = page_body(out, chosen, page)
    assert "| table of nuclei |" in body and "| table of ablation-nuclei |" in body
    assert "Machine:" not in body and "### Title mode-box\n\nNot run." in body
    assert "Measured 2026-01-05, simulated-user protocol v1." in body
    assert "![mean Dice](images/accuracy/nuclei-dice.png)" in body
    assert (page.parent / "images/accuracy/nuclei-dice.png").read_bytes() == b"png of nuclei"
    assert sorted(p.name for p in (page.parent / "images/accuracy").iterdir()) == [
        "nuclei-dice.png"
    ]
    assert measured(out, ["nuclei", "ablation-nuclei", "mode-box"]) == (
        "2026-01-02 to 2026-01-05",
        "test box",
        3.0,
    )
