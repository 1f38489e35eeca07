"""One simulated session (protocol R1-R4, R14, R16, R17): robot, method and metrics together."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from medrefine.data import Case
from medrefine.types import RefineResult
from medrefine_lab.eval.methods import InteractiveMethod
from medrefine_lab.eval.metrics import dice_per_class
from medrefine_lab.eval.robot import Robot
from medrefine_lab.eval.robot.regions import has_error
from medrefine_lab.eval.robot.types import Effort, RobotConfig, Stroke, paint


@dataclass(frozen=True)
class Record:
    """One (method, case, interaction) row of ``results.json``.

    ``interaction`` 0 is the start (the network's own mask for medrefine, nothing for seed
    baselines: Dice 0). ``ms`` is the wall time of the method call alone (R17); for k = 0 it is
    the start call (e.g. ``set_image``). ``carried`` marks rows carried forward after R4 stopped.
    """

    method: str
    case: str
    interaction: int
    dice: float
    dice_per_class: dict[int, float]
    ms: float
    painted: int = 0
    centerline: int = 0
    strokes: int = 0
    clicks: int = 0
    boxes: int = 0
    carried: bool = False
    iterations: int | None = None
    honoured: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["dice_per_class"] = {str(k): v for k, v in self.dice_per_class.items()}
        return out


def _extra(result: RefineResult | None) -> dict[str, float]:
    """A refine's figures beyond Dice: the propagation's scale, and per session class the
    pixels gained and lost outside the marks' reach (``outside_gain_<c>``,
    ``outside_loss_<c>``), with the part gained by classes no mark named
    (``unmarked_outside_gain``, held at 0 by :mod:`medrefine.engine.gate.reach`)."""
    if result is None:
        return {}
    out: dict[str, float] = {}
    if result.propagation is not None:
        out["propagation"] = result.propagation
    for c in result.changes:
        out[f"outside_gain_{c.label}"] = float(c.gained_outside)
        out[f"outside_loss_{c.label}"] = float(c.lost_outside)
    if result.changes:
        out["unmarked_outside_gain"] = float(result.outside_gain_unmarked)
    return out


def _score(gt: np.ndarray, pred: np.ndarray | None, k: int) -> tuple[float, dict[int, float]]:
    if pred is None:
        return 0.0, {c: 0.0 for c in range(1, k) if np.any(gt == c)}
    per = dice_per_class(gt, pred, k)
    return (float(np.mean(list(per.values()))) if per else float("nan")), per


def simulate(
    method: InteractiveMethod, case: Case, num_classes: int, robot: RobotConfig, interactions: int
) -> Iterator[tuple[Record, np.ndarray | None, list[Stroke]]]:
    """Run one session; yields ``(record, prediction, strokes)`` for k = 0..interactions.

    ``robot.mode == "box"`` is the protocol's box(+click) session: a box at k = 1, then clicks.
    With ``robot.first_rounds`` > 1 the first interaction holds that many rounds of strokes,
    refined at once (:meth:`Robot.first_interaction`).
    """
    gt = case.label
    first, later = (
        Robot(robot),
        Robot(replace(robot, mode="click") if robot.mode == "box" else robot),
    )
    a_min = robot.resolved_a_min(gt.ndim)
    t = time.perf_counter()
    pred = method.start(case.image)
    ms = 1000 * (time.perf_counter() - t)
    dice, per = _score(gt, pred, num_classes)
    rec = Record(method.name, case.case_id, 0, dice, per, ms)
    yield rec, pred, []
    seeds = np.zeros(gt.shape, dtype=np.int32)
    effort = Effort()
    for k in range(1, interactions + 1):
        done = pred is not None and not has_error(gt, pred, seeds, a_min)
        bot = first if k == 1 else later  # box(+click): a box first, then clicks
        if done:
            strokes = []
        elif k == 1:  # several rounds at once when robot.first_rounds > 1
            strokes = bot.first_interaction(gt, pred, seeds)
        else:
            strokes = bot.interact(gt, pred, seeds)
        if not strokes:  # R4: nothing left to correct; carry the last metrics forward
            rec = Record(**{**asdict(rec), "interaction": k, "carried": True})
            yield rec, pred, []
            continue
        seeds = paint(seeds, strokes)
        effort = effort.add(strokes)
        t = time.perf_counter()
        pred = method.step(strokes, seeds)
        ms = 1000 * (time.perf_counter() - t)
        dice, per = _score(gt, pred, num_classes)
        result = getattr(method, "last_result", None)
        rec = Record(
            method.name,
            case.case_id,
            k,
            dice,
            per,
            ms,
            effort.total_painted,
            sum(effort.centerline.values()),
            effort.strokes,
            effort.clicks,
            effort.boxes,
            iterations=None if result is None else result.iterations,
            honoured=None if result is None else result.honoured_fraction,
            extra=_extra(result),
        )
        yield rec, pred, strokes
