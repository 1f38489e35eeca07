"""What one refine may change: the marks' reach, and classes nobody marked kept in their lane.

A refine changes the mask in three ways: the adapted head overrules the network where the gate
is open (:mod:`medrefine.engine.gate.plan`), the image-led propagation spreads marked classes
(:mod:`medrefine.engine.gate.propagate`), and the marks are written in. The first and the last act
near the marks; the propagation, on purpose, carries a marked class to look-alikes anywhere.

*The marks' reach* of a refine is the set of pixels

- where its gate is open: ``g >= OPEN`` (about three widths around the contradicted marks); a
  refine without a gate (``gate.kind="none"``, or an adaptive gate gone global) counts as open
  within ``GLOBAL_WIDTHS`` times the widest finite adaptive width of the contradicted marks;
- that the marks cover (drawn, enclosed by a closed stroke, or region-grown);
- whose class a box removed (a box of class c says "not c" outside it, so those pixels must
  become something else).

The rule: a class that no mark of the session names (*never marked*) may lose pixels anywhere,
but gains no pixel outside the reach. Marked classes are not restricted: their spreading to
look-alikes is the method's point. So a correction of one structure never makes another,
untouched structure grow far away (the fusion's colour and distance terms re-rank every class
at every pixel; without this rule a class nobody mentioned could win where a marked class's
score fell).

Every refine reports, per class, the pixels it gained and lost inside and outside the reach
(:class:`medrefine.types.ClassChange`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medrefine.engine.config import GateConfig
from medrefine.engine.gate.distance import euclidean_map
from medrefine.engine.refine.constraints import Constraints
from medrefine.types import ClassChange, Mark, Spacing

__all__ = ["OPEN", "class_changes", "hold_unmarked", "marked_classes", "reach_map"]

#: A gate weight at or above this is open: the adapted head moves the logits there by at least
#: a hundredth of its difference from the network's (``exp(-d^2 / 2 sigma^2) >= 0.01`` within
#: about 3.03 widths of a contradicted mark).
OPEN = 0.01
#: Without a gate, the reach is this many times the widest finite adaptive width (the width
#: at which the gate's weight falls to :data:`OPEN`).
GLOBAL_WIDTHS = float(np.sqrt(2.0 * np.log(1.0 / OPEN)))


def marked_classes(marks: Sequence[Mark]) -> frozenset[int]:
    """The classes some mark names (drawn marks and boxes alike)."""
    return frozenset(int(m.label) for m in marks)


def _widest_finite(gate: GateConfig) -> float:
    """The widest finite width an adaptive gate takes (pixels) before it goes global."""
    return gate.local_width * 2 ** max(gate.steps - 1, 0) if gate.local_width > 0 else gate.sigma


def reach_map(
    weights: torch.Tensor | None,
    wrong_index: np.ndarray,
    cons: Constraints,
    before: np.ndarray,
    gate: GateConfig,
    spacing: Spacing | None = None,
) -> np.ndarray:
    """The marks' reach of one refine, ``cons.shape`` bool (a new array).

    Args:
        weights: the refine's gate ``(1, *shape)`` in [0, 1]
            (:attr:`medrefine.engine.gate.plan.GatePlan.weights`), or None when it has none.
        wrong_index: flat indices of the contradicted marks (the gate's
            :attr:`~medrefine.engine.gate.plan.GatePlan.wrong_index`), int64.
        cons: the refine's constraints (every mark of the session).
        before: the label mask before this refine, ``shape`` int.
        gate: the gate settings (the width used when there is no gate).
        spacing: relative voxel size per axis
            (:func:`~medrefine.types.relative_spacing`); distances are then physical.
    """
    shape = cons.shape
    if weights is not None:
        reach = (weights.reshape(shape) >= OPEN).cpu().numpy()
    else:
        sources = wrong_index if wrong_index.size else cons.index[cons.required]
        reach = np.zeros(shape, dtype=bool)
        if sources.size:
            reach.reshape(-1)[sources] = True
            limit = GLOBAL_WIDTHS * _widest_finite(gate)
            reach = euclidean_map(reach, spacing).full() <= limit
    reach.reshape(-1)[cons.index] = True  # drawn, enclosed and grown pixels
    for c, region in zip(cons.box_classes, cons.box_regions, strict=True):
        reach |= (before == c) & ~region
    return reach


def hold_unmarked(
    logits: torch.Tensor, marked: frozenset[int], reach: np.ndarray, before: np.ndarray
) -> None:
    """Keep never-marked classes from gaining pixels outside ``reach``, in place.

    ``logits`` ``(K, *shape)`` float (scores whose argmax is the mask); outside ``reach`` every
    class not in ``marked`` is set to ``-inf`` except the class the pixel held ``before`` this
    refine (a ``shape`` int label mask), which keeps its score.
    """
    unmarked = [c for c in range(logits.shape[0]) if c not in marked]
    if not unmarked or reach.all():
        return
    outside = torch.from_numpy(~reach).to(logits.device)
    held = torch.from_numpy(before).to(logits.device)
    for c in unmarked:
        logits[c].masked_fill_(outside & (held != c), -torch.inf)


def class_changes(
    before: np.ndarray, after: np.ndarray, reach: np.ndarray, num_classes: int
) -> tuple[ClassChange, ...]:
    """Per class ``0..num_classes-1``: pixels gained and lost from ``before`` to ``after``
    (label masks of one shape), inside and outside ``reach`` (bool, same shape)."""
    changed = before != after
    out = []
    for where, inside in ((changed & reach, True), (changed & ~reach, False)):
        gained = np.bincount(after[where].astype(np.int64), minlength=num_classes)
        lost = np.bincount(before[where].astype(np.int64), minlength=num_classes)
        out.append((gained, lost, inside))
    (g_in, l_in, _), (g_out, l_out, _) = out
    return tuple(
        ClassChange(c, int(g_in[c]), int(g_out[c]), int(l_in[c]), int(l_out[c]))
        for c in range(num_classes)
    )
