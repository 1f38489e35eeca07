"""The site protocol: one domain's images in a fixed order, each corrected and accepted.

For each image in turn, every method starts (the network's mask, a site head's, or nothing for
a seed method), the simulated user (robot-user protocol v1.1) corrects it until its Dice reaches
``target`` or ``cap`` interactions have run, and a method with a site then accepts its own final
mask (never the ground truth) so that the next image may start from what it taught. Per image
and method: the first mask's Dice, the interactions needed to reach 0.85 and 0.90 (NoC, ``cap``
when never), and the seconds the method took (start, refines and accept).

Which masks are accepted: every final mask, as the protocol says, unfinished ones too. With
``finished`` > 0 only those whose Dice reached it (``medrefine bench site --finished 0.85``: a
clinician who gave up on an image at the cap does not sign its mask off).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from medrefine.data import Case
from medrefine_lab.eval.harness import _score
from medrefine_lab.eval.methods import InteractiveMethod, MedrefineMethod
from medrefine_lab.eval.robot import Robot, RobotConfig
from medrefine_lab.eval.robot.regions import has_error
from medrefine_lab.eval.robot.types import paint

#: The Dice levels whose NoC is reported.
LEVELS = (0.85, 0.90)


@dataclass(frozen=True)
class SequenceRecord:
    """One method on one image of a sequence.

    Attributes:
        method: the method's name.
        index: the image's place in the sequence, 1-based.
        case: the case id.
        first: Dice of the first mask (0 for a method that starts from nothing).
        noc85, noc90: first interaction with Dice >= 0.85 / 0.90 (0 when the first mask
            already is; ``cap`` when never reached within it).
        final: Dice when the user stopped.
        interactions: interactions the user made.
        seconds: the method's time on this image (start, refines, accept).
        head: which head the session started from (``"network"``, ``"site vN"``; "" for
            methods without one).
        accepted: the final mask went to the method's site.
        after_one: Dice after the first interaction (the first mask's when the user made
            none).
    """

    method: str
    index: int
    case: str
    first: float
    noc85: int
    noc90: int
    final: float
    interactions: int
    seconds: float
    head: str = ""
    accepted: bool = False
    after_one: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def correct(
    method: InteractiveMethod,
    case: Case,
    num_classes: int,
    robot: RobotConfig,
    cap: int,
    target: float = LEVELS[-1],
) -> tuple[list[float], float, np.ndarray | None]:
    """Start ``method`` on ``case`` and let the robot correct until Dice >= ``target`` or
    ``cap`` interactions; returns Dice after each interaction (0 = the start), the method's
    seconds, and its last mask."""
    gt = case.label
    first, later = Robot(robot), Robot(robot)
    a_min = robot.resolved_a_min(gt.ndim)
    t = time.perf_counter()
    pred = method.start(case.image)
    seconds = time.perf_counter() - t
    dice = [_score(gt, pred, num_classes)[0]]
    seeds = np.zeros(gt.shape, dtype=np.int32)
    for k in range(1, cap + 1):
        if dice[-1] >= target or (pred is not None and not has_error(gt, pred, seeds, a_min)):
            break
        bot = first if k == 1 else later
        strokes = (
            bot.first_interaction(gt, pred, seeds) if k == 1 else bot.interact(gt, pred, seeds)
        )
        if not strokes:
            break
        seeds = paint(seeds, strokes)
        t = time.perf_counter()
        pred = method.step(strokes, seeds)
        seconds += time.perf_counter() - t
        dice.append(_score(gt, pred, num_classes)[0])
    return dice, seconds, pred


def noc(dice: Sequence[float], level: float, cap: int) -> int:
    """First interaction whose Dice reaches ``level`` (0: the start did), else ``cap``."""
    return next((k for k, d in enumerate(dice) if d >= level), cap)


def run_sequence(
    make: Callable[[], InteractiveMethod],
    cases: Sequence[Case],
    num_classes: int,
    robot: RobotConfig,
    cap: int,
    finished: float = 0.0,
) -> list[SequenceRecord]:
    """One method over ``cases`` in order. ``make`` builds the method for each image (a method
    holding a site keeps it across images); a :class:`MedrefineMethod` with a site accepts its
    final mask after each image the user finished (Dice >= ``finished``)."""
    out = []
    for index, case in enumerate(cases, start=1):
        method = make()
        dice, seconds, _ = correct(method, case, num_classes, robot, cap)
        head, accepted = "", False
        if isinstance(method, MedrefineMethod) and method.session is not None:
            head = method.session.head_source[0]
            if method.site is not None and dice[-1] >= finished:
                t = time.perf_counter()
                method.session.accept()
                seconds += time.perf_counter() - t
                accepted = True
        out.append(
            SequenceRecord(
                method.name,
                index,
                case.case_id,
                dice[0],
                noc(dice, LEVELS[0], cap),
                noc(dice, LEVELS[1], cap),
                dice[-1],
                len(dice) - 1,
                seconds,
                head,
                accepted,
                dice[1] if len(dice) > 1 else dice[0],
            )
        )
    return out
