"""The accuracy summary page's generated section, read from ``medrefine bench report``'s folders.

``medrefine bench report --page docs/accuracy.md`` writes, between the page's ``report``
markers (:mod:`medrefine_lab.benchmarks.page`): a headline table (:data:`HEADLINE`, one row per
experiment and method), one row per accuracy target
(:func:`medrefine_lab.eval.targets.targets_summary`), then every experiment's table from its
``summary.md``. The Dice curves of :data:`PLOTTED` and one
overlay are copied beside the page (``images/accuracy/``); every other file of the report stays
in its output folder, which is not part of the repository.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from medrefine_lab.eval.experiments import Spec
from medrefine_lab.eval.report import MethodSummary
from medrefine_lab.eval.targets import SEED_BASELINES, load_summaries, targets_summary


@dataclass(frozen=True)
class Headline:
    """One headline row: ``method`` (default: medrefine's) in experiment ``key``."""

    key: str
    label: str
    method: str = "medrefine"


_ONE = "one refine after 4 rounds of strokes"
_NEW = "medrefine+newclass"
HEADLINE = (
    Headline("nuclei", "nuclei, DSB test"),
    Headline("held-out-nuclei", "nuclei, held-out test cases 17-37"),
    Headline("nuclei-20", "nuclei, 20 interactions"),
    Headline("hippocampus", "hippocampus 3D, two classes"),
    Headline("held-out-hippocampus", "hippocampus, held-out test cases 17-36"),
    Headline("fetalhead", "fetal head ultrasound"),
    Headline("held-out-fetalhead", "fetal head, held-out test cases 11-30"),
    Headline(
        "shift",
        "shift: fluorescence network on stained/brightfield, `RefineConfig.shifted()`",
        "medrefine:shifted",
    ),
    Headline("shift", "the same with the default settings"),
    Headline("new-structure", "nuclei network on fetal heads, nucleus channel reused"),
    Headline("new-structure", "the same, the head as a new class (`add_class`)", _NEW),
    Headline(
        "held-out-new-class",
        "fetal-head network, a new nucleus class on stained images, never tuned on",
        "medrefine+newclass",
    ),
    Headline(
        "held-out-new-class-fluo",
        "the same on fluorescence images, no new-class setting chosen on them",
        "medrefine+newclass",
    ),
    Headline("mode-click", "clicks, nuclei"),
    Headline("mode-box", "a box, then clicks, nuclei"),
    Headline("one-refine-nuclei", f"{_ONE}: nuclei"),
    Headline("one-refine-fetalhead", f"{_ONE}: fetal head"),
    Headline("one-refine-new-structure", f"{_ONE}: new structure, channel reused"),
    Headline("one-refine-new-structure", f"{_ONE}: new structure, `add_class`", _NEW),
    Headline("one-refine-shift", f"{_ONE}: shift"),
)
#: Experiments whose Dice curve the page shows.
PLOTTED = ("nuclei", "hippocampus", "fetalhead", "shift", "new-structure")
#: The one overlay the page shows: (experiment, file in its folder).
OVERLAY = ("nuclei", "overlay-medrefine-1.png")


def _at(s: MethodSummary | None, k: int) -> str:
    return "" if s is None or k >= len(s.dice) else f"{s.dice[k]:.3f}"


def headline_markdown(out: Path) -> str:
    """The headline table: per experiment, mean Dice of the network alone and after the last
    interaction k of medrefine, of the marks written without fine-tuning, of the paper's loop
    and of the best seed baseline, and the worst one-interaction change of any case."""
    head = [
        "experiment (cases)",
        "k",
        "network alone",
        "medrefine",
        "marks written, no fine-tuning",
        "paper's loop",
        "best seed baseline",
        "worst case step",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cache: dict[str, dict[str, MethodSummary] | None] = {}
    for row in HEADLINE:
        if row.key not in cache:
            cache[row.key] = load_summaries(out / row.key)
        found = cache[row.key]
        ours = None if found is None else found.get(row.method)
        if found is None or ours is None:
            lines.append(f"| {row.label} | | not run (`{row.key}`, `{row.method}`) | | | | | |")
            continue
        k = len(ours.dice) - 1
        seeds = [(found[b].dice[k], b) for b in SEED_BASELINES if b in found]
        best = max(seeds) if seeds else None
        cells = [
            f"{row.label} ({ours.cases})",
            str(k),
            _at(ours, 0),
            f"**{ours.dice[k]:.3f}**",
            _at(found.get("marks-only"), k),
            _at(found.get("medrefine:paper"), k),
            "" if best is None else f"{best[0]:.3f} {best[1]}",
            f"{ours.worst_drop:+.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measured(out: Path, keys: list[str]) -> tuple[str, str, float]:
    """(dates, machines, minutes) of the experiments ``keys`` under ``out``, from each folder's
    ``results.json`` meta and ``minutes.txt``; an experiment without a date reads "undated"."""
    dates, machines, minutes = set(), set(), 0.0
    for key in keys:
        path = out / key / "results.json"
        if not path.exists():
            continue
        meta = json.loads(path.read_text())["meta"]
        dates.add(str(meta.get("date", "undated")))
        machines.add(str(meta.get("machine", "machine not recorded")))
        spent = out / key / "minutes.txt"
        minutes += float(spent.read_text()) if spent.exists() else 0.0
    ordered = sorted(dates)
    span = ordered[0] if len(ordered) == 1 else f"{ordered[0]} to {ordered[-1]}" if ordered else ""
    return span, "; ".join(sorted(machines)), minutes


def _section(out: Path, spec: Spec, images: Path, page_dir: Path) -> str:
    """One experiment's table (its ``summary.md`` without the machine line) and, for
    :data:`PLOTTED` experiments, its Dice curve copied to ``images``."""
    path = out / spec.key / "summary.md"
    if not path.exists():
        return f"### {spec.title}\n\nNot run.\n"
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("Machine:") and (line.strip() or (lines and lines[-1].strip())):
            lines.append(line)  # the machine is in the page's header; no doubled blank lines
    meta_path = out / spec.key / "results.json"
    meta = json.loads(meta_path.read_text())["meta"] if meta_path.exists() else {}
    protocol = meta.get("protocol", "v1")
    lines += [f"Measured {meta.get('date', 'undated')}, simulated-user protocol {protocol}."]
    shown = []
    if spec.key in PLOTTED and (out / spec.key / "dice.png").exists():
        shown.append((out / spec.key / "dice.png", f"{spec.key}-dice.png", "mean Dice"))
    if spec.key == OVERLAY[0] and (out / spec.key / OVERLAY[1]).exists():
        shown.append((out / spec.key / OVERLAY[1], f"{spec.key}-overlay.png", "a first case"))
    for source, name, alt in shown:
        images.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, images / name)
        lines += ["", f"![{alt}]({(images / name).relative_to(page_dir).as_posix()})"]
    return "\n".join(lines).strip("\n") + "\n"


def page_body(out: Path, chosen: list[Spec], page: Path) -> str:
    """The generated section of the summary page ``page`` from the report folder ``out``."""
    images = page.parent / "images" / "accuracy"
    _, _, minutes = measured(out, [s.key for s in chosen])
    parts = [
        f"Read from `{out}` ({len(chosen)} experiments, {minutes:.0f} minutes of runs). "
        "D0 is before any interaction (the network's own mask for medrefine and marks-only; "
        "nothing, Dice 0, for the seed baselines); Dk after k interactions.\n",
        "### Headline\n",
        headline_markdown(out),
        "### Targets\n",
        targets_summary(out),
    ]
    parts += [_section(out, spec, images, page.parent) for spec in chosen]
    return "\n".join(parts)
