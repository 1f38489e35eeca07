"""Summaries of accuracy records: Markdown tables (R14-R17) and plots."""

from __future__ import annotations

import platform
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrefine.extras import pyplot
from medrefine_lab.eval.harness import Record
from medrefine_lab.eval.metrics import dice_auc, noc


@dataclass(frozen=True)
class MethodSummary:
    """One method over every case of an experiment.

    Attributes:
        dice: mean Dice after k = 0..K interactions.
        auc: mean Dice-AUC over k = 1..5 (trapezoid, R14), in [0, 4].
        noc85, noc90: mean NoC (first k with Dice >= tau, else 20) and how many cases never
            reached tau within the run.
        ms_p50, ms_p95: method-call time over every interaction k >= 1 that ran (R17).
        worst_drop: the most negative one-interaction Dice change of any case, k = 0 -> 1
            included (negative = a loss; for seed baselines, which start at 0, the first step is
            a gain by construction).
        worst_mean_step: the most negative change of the mean Dice between consecutive k.
        honoured: mean share of marked pixels the network itself predicts (medrefine only).
        outside: per session class, the mean pixels a refine gained and lost outside the marks'
            reach, ``(class, gained, lost)`` (medrefine only; :mod:`medrefine.engine.gate.reach`).
        unmarked_outside_gain: pixels classes no mark named gained outside the reach, summed
            over every refine (medrefine only; 0 by the engine's rule).
    """

    method: str
    cases: int
    dice: tuple[float, ...]
    auc: float
    noc85: float
    never85: int
    noc90: float
    never90: int
    ms_p50: float
    ms_p95: float
    worst_drop: float
    worst_mean_step: float
    honoured: float | None
    outside: tuple[tuple[int, float, float], ...] = ()
    unmarked_outside_gain: float | None = None


def _outside(ran: Sequence[Record]) -> tuple[tuple[tuple[int, float, float], ...], float | None]:
    """Mean outside-reach gains and losses per class, and the never-marked classes' total."""
    with_reach = [r for r in ran if "unmarked_outside_gain" in r.extra]
    if not with_reach:
        return (), None
    classes = sorted(
        {int(k.rsplit("_", 1)[1]) for r in with_reach for k in r.extra if k[:13] == "outside_gain_"}
    )
    rows = tuple(
        (
            c,
            float(np.mean([r.extra.get(f"outside_gain_{c}", 0.0) for r in with_reach])),
            float(np.mean([r.extra.get(f"outside_loss_{c}", 0.0) for r in with_reach])),
        )
        for c in classes
    )
    return rows, float(sum(r.extra["unmarked_outside_gain"] for r in with_reach))


def _curves(records: Sequence[Record]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: (r.method, r.case, r.interaction)):
        out[r.method][r.case].append(r.dice)
    return out


def summarize(records: Sequence[Record]) -> list[MethodSummary]:
    """One summary per method, in order of first appearance."""
    curves = _curves(records)
    order = list(dict.fromkeys(r.method for r in records))
    result = []
    for method in order:
        per_case = np.array(list(curves[method].values()), dtype=np.float64)
        ran = [r for r in records if r.method == method and r.interaction > 0 and not r.carried]
        ms = np.array([r.ms for r in ran]) if ran else np.array([np.nan])
        hon = [r.honoured for r in ran if r.honoured is not None]
        n85 = [noc(list(c[1:]), 0.85) for c in per_case]
        n90 = [noc(list(c[1:]), 0.90) for c in per_case]
        steps = np.diff(per_case, axis=1) if per_case.shape[1] > 1 else np.zeros((1, 1))
        mean = per_case.mean(axis=0)
        outside, unmarked_gain = _outside(ran)
        result.append(
            MethodSummary(
                method=method,
                cases=len(per_case),
                dice=tuple(float(v) for v in mean),
                auc=float(np.mean([dice_auc(list(c[1:6])) for c in per_case]))
                if per_case.shape[1] > 5
                else float("nan"),
                noc85=float(np.mean([n.k for n in n85])),
                never85=sum(not n.reached for n in n85),
                noc90=float(np.mean([n.k for n in n90])),
                never90=sum(not n.reached for n in n90),
                ms_p50=float(np.percentile(ms, 50)),
                ms_p95=float(np.percentile(ms, 95)),
                worst_drop=float(steps.min()),
                worst_mean_step=float(np.diff(mean).min()) if mean.size > 1 else float("nan"),
                honoured=float(np.mean(hon)) if hon else None,
                outside=outside,
                unmarked_outside_gain=unmarked_gain,
            )
        )
    return result


def machine() -> str:
    """The machine the figures were measured on, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def markdown(summaries: Sequence[MethodSummary], title: str, upto: int = 5) -> str:
    """A Markdown section: Dice after 0..upto interactions, AUC, NoC, time, worst drops."""
    k = min(upto, len(summaries[0].dice) - 1) if summaries else 0
    head = (
        ["method", "cases"]
        + [f"D{i}" for i in range(k + 1)]
        + [
            "AUC(1-5)",
            "NoC85 (never)",
            "NoC90 (never)",
            "ms p50",
            "ms p95",
            "worst case step",
            "worst mean step",
            "marks honoured",
        ]
    )
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        row = (
            [f"`{s.method}`", str(s.cases)]
            + [f"{d:.3f}" for d in s.dice[: k + 1]]
            + [
                f"{s.auc:.3f}",
                f"{s.noc85:.1f} ({s.never85})",
                f"{s.noc90:.1f} ({s.never90})",
                f"{s.ms_p50:.0f}",
                f"{s.ms_p95:.0f}",
                f"{s.worst_drop:+.3f}",
                f"{s.worst_mean_step:+.3f}",
                "" if s.honoured is None else f"{100 * s.honoured:.0f}%",
            ]
        )
        lines.append("| " + " | ".join(row) + " |")
    lines += _reach_table(summaries)
    if summaries and len(summaries[0].dice) - 1 > k:
        lines += [
            "",
            "Mean Dice after every interaction: "
            + "; ".join(f"`{s.method}` " + " ".join(f"{d:.3f}" for d in s.dice) for s in summaries),
        ]
    return "\n".join(lines) + "\n"


def _reach_table(summaries: Sequence[MethodSummary]) -> list[str]:
    """Lines of the outside-the-reach table (empty when no method reports a reach)."""
    shown = [s for s in summaries if s.unmarked_outside_gain is not None]
    if not shown:
        return []
    classes = sorted({c for s in shown for c, _, _ in s.outside})
    head = [
        "method",
        *[f"class {c} +/-" for c in classes],
        "never-marked classes' gain (all refines)",
    ]
    lines = [
        "",
        "Outside the marks' reach (mean pixels per refine gained / lost, per session class; "
        "the reach is the open gate plus the marked, enclosed and grown pixels):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in shown:
        per = {c: (g, lost) for c, g, lost in s.outside}
        cells = [f"+{per[c][0]:.0f} / -{per[c][1]:.0f}" if c in per else "" for c in classes]
        lines.append(
            f"| `{s.method}` | " + " | ".join(cells) + f" | {s.unmarked_outside_gain:.0f} |"
        )
    return lines


def plot_curves(summaries: Sequence[MethodSummary], path: Path, title: str) -> Path:
    """Mean Dice against interactions, one line per method (matplotlib: the ``viz`` extra)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summaries:
        ax.plot(range(len(s.dice)), s.dice, marker="o", ms=3, label=s.method)
    ax.set_xlabel("interaction")
    ax.set_ylabel("mean Dice")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
