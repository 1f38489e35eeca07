"""The accuracy targets the product is held to, each met or not, read from the report's folders.

Each target names an experiment (a folder of ``medrefine bench report`` holding
``results.json``), a method and a rule; :func:`targets_markdown` prints one table per target
with the figures the verdict rests on, and :func:`targets_summary` one row per target (for the
summary page). An experiment not run yet reads "not run".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medrefine_lab.eval.harness import Record
from medrefine_lab.eval.report import MethodSummary, summarize

SEED_BASELINES = ("graphcut", "random_walker", "geodesic", "grabcut", "watershed")
Check = tuple[str, str, bool]  # what, figure, held
Verdict = tuple[bool, list[Check]]  # met, one row per check


def load_summaries(folder: Path) -> dict[str, MethodSummary] | None:
    """The per-method summaries of one experiment folder, None if it has no results."""
    path = folder / "results.json"
    if not path.exists():
        return None
    rows = json.loads(path.read_text())["records"]
    records = []
    for r in rows:
        per = {int(k): float(v) for k, v in r.pop("dice_per_class").items()}
        records.append(Record(dice_per_class=per, **r))
    return {s.method: s for s in summarize(records)}


def _not_run(method: str) -> Verdict:
    """The verdict of a rule whose method the experiment did not run (``--only``, ``--quick``)."""
    return False, [(f"`{method}`", "not run in this experiment", False)]


def at_least(method: str, k: int, bound: float) -> Callable[[dict[str, MethodSummary]], Verdict]:
    """``method``'s mean Dice after ``k`` interactions is at least ``bound``."""

    def rule(s: dict[str, MethodSummary]) -> Verdict:
        if method not in s:
            return _not_run(method)
        if k >= len(s[method].dice):  # a shortened run (--quick) never reached k
            return False, [(f"`{method}` D{k} >= {bound:.3f}", f"not run to D{k}", False)]
        value = s[method].dice[k]
        ok = value >= bound
        return ok, [(f"`{method}` D{k} >= {bound:.3f}", f"{value:.3f}", ok)]

    return rule


def no_loss(method: str, bound: float = -0.05) -> Callable[[dict[str, MethodSummary]], Verdict]:
    """No case of ``method`` loses more than ``-bound`` Dice in one interaction."""

    def rule(s: dict[str, MethodSummary]) -> Verdict:
        if method not in s:
            return _not_run(method)
        value = s[method].worst_drop
        ok = value >= bound
        return ok, [(f"`{method}` worst one-step change >= {bound:+.2f}", f"{value:+.3f}", ok)]

    return rule


def ahead(
    method: str, others: Sequence[str], ks: Sequence[int]
) -> Callable[[dict[str, MethodSummary]], Verdict]:
    """``method``'s mean Dice is at least every one of ``others``' (those in the experiment)
    after each of the ``ks`` interactions."""

    def rule(s: dict[str, MethodSummary]) -> Verdict:
        if method not in s:
            return _not_run(method)
        rows: list[Check] = []
        met = True
        for other in (o for o in others if o in s):
            for k in ks:
                if k >= len(s[method].dice) or k >= len(s[other].dice):
                    continue
                ours, theirs = s[method].dice[k], s[other].dice[k]
                ok = ours >= theirs
                met &= ok
                rows.append((f"`{method}` >= `{other}` at D{k}", f"{ours:.3f} vs {theirs:.3f}", ok))
        return met, rows

    return rule


@dataclass(frozen=True)
class Target:
    """One target: ``rules`` over the summaries of experiment ``key``."""

    title: str
    key: str
    rules: tuple[Callable[[dict[str, MethodSummary]], Verdict], ...]


def targets() -> list[Target]:
    """Targets 1-4 on the report's experiments (the default is ``medrefine``): 1 the shift,
    2 a new structure, 3 in distribution and held out, 4 one refine after several strokes."""
    me, later = "medrefine", (1, 2, 3, 4, 5)
    in_distribution = [
        ("nuclei", 0.915),
        ("hippocampus", 0.905),
        ("fetalhead", 0.978),
    ]
    out = [
        Target(
            "1. Shift: D5 >= 0.80 and >= every baseline at 5",
            "shift",
            (at_least(me, 5, 0.80), ahead(me, SEED_BASELINES, (5,))),
        ),
        Target(
            "2. New structure (reused channel): D5 >= 0.80, ahead of every seed baseline at each k",
            "new-structure",
            (at_least(me, 5, 0.80), ahead(me, SEED_BASELINES, later)),
        ),
    ]
    # A class added with add_class, on three pairings: one rule for each.
    new_class = (
        at_least("medrefine+newclass", 5, 0.80),
        ahead("medrefine+newclass", SEED_BASELINES, later),
    )
    every_k = "D5 >= 0.80, ahead of every seed baseline at each k"
    out += [
        Target(f"2b. New structure (add_class): {every_k}", "new-structure", new_class),
        Target(
            "2c. New class on a pairing never tuned on (fetal-head network, nuclei): " + every_k,
            "held-out-new-class",
            new_class,
        ),
        Target(
            "2d. New class on a pairing and images never tuned on (fetal-head network, "
            "fluorescence nuclei): " + every_k,
            "held-out-new-class-fluo",
            new_class,
        ),
    ]
    out += [
        Target(
            f"3. In distribution, {key}: D5 >= {bound}, no case loses > 0.05",
            key,
            (at_least(me, 5, bound), no_loss(me)),
        )
        for key, bound in in_distribution
    ]
    out += [
        Target(f"3. Held out, {key}: no case loses > 0.05", f"held-out-{key}", (no_loss(me),))
        for key in ("nuclei", "hippocampus", "fetalhead")
    ]
    out += [
        Target(
            f"4. One refine after several strokes per class, {key}: D1 >= every baseline's D1",
            f"one-refine-{key}",
            (ahead(me, SEED_BASELINES, (1,)),),
        )
        for key in ("nuclei", "fetalhead", "new-structure", "shift")
    ]
    return out


def verdicts(out: Path) -> list[tuple[Target, bool | None, list[Check]]]:
    """Each target with its verdict (None: its experiment has not run under ``out``) and the
    ``(check, figure, held)`` rows it rests on."""
    result: list[tuple[Target, bool | None, list[Check]]] = []
    for t in targets():
        summaries = load_summaries(out / t.key)
        if summaries is None:
            result.append((t, None, []))
            continue
        rows: list[Check] = []
        met = True
        for rule in t.rules:
            ok, found = rule(summaries)
            met &= ok
            rows += found
        result.append((t, met, rows))
    return result


def targets_markdown(out: Path) -> str:
    """One table per target under the report folder ``out``: each figure and the verdict."""
    parts = ["### Accuracy targets (met or not, from the tables below)\n"]
    for t, met, rows in verdicts(out):
        if met is None:
            parts.append(f"**{t.title}**: not run (`{t.key}`)\n")
            continue
        lines = [
            f"**{t.title}**: {'met' if met else 'not met'}\n",
            "| check | figure |",
            "|---|---|",
        ]
        lines += [f"| {what} | {fig} |" for what, fig, _ in rows]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) + "\n"


def targets_summary(out: Path, shown: int = 3) -> str:
    """One Markdown row per target: the verdict and its checks' figures (when not met, only the
    first ``shown`` checks that failed, and how many more did)."""
    lines = ["| target | verdict | checks (figure) |", "|---|---|---|"]
    for t, met, rows in verdicts(out):
        if met is None:
            lines.append(f"| {t.title} | not run | |")
            continue
        picked = rows if met else [r for r in rows if not r[2]]
        cells = [f"{what}: {fig}" for what, fig, _ in picked[:shown]]
        if len(picked) > shown:
            kind = "checks" if met else "failed"
            cells.append(f"{len(picked) - shown} more {kind} of {len(rows)}")
        lines.append(f"| {t.title} | {'met' if met else 'not met'} | {'; '.join(cells)} |")
    return "\n".join(lines) + "\n"
