"""One refine, in three stages that :meth:`medrefine.Session.refine` calls in turn.

- :func:`prepare`: the marks become per-pixel constraints, the gate is planned from them and the
  network's mask, and the loop's settings follow from the gate (:class:`Prepared`).
- :func:`fit`: the refinement loop (:meth:`medrefine.engine.refine.loop.Refiner.run`) adapts the
  head's weights on the constraints; the gradient steps are there.
- :func:`finish`: the adapted head's logits through the gate, propagation to the marked classes,
  the reach rule, the mask, the :class:`~medrefine.types.RefineResult` and the state to commit.

:func:`fit` and :func:`finish` change one object in place, the session's head; run them inside
:func:`restoring`, which puts the head back on any exception, so that a failed refine leaves the
session exactly as before (the session swaps the new state in only once ``finish`` returned).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from medrefine.engine.config import RefineConfig
from medrefine.engine.gate.appearance import class_log_likelihoods
from medrefine.engine.gate.plan import GatePlan, loop_settings, plan_gate
from medrefine.engine.gate.propagate import class_distances, fuse, propagates
from medrefine.engine.gate.reach import class_changes, hold_unmarked, marked_classes, reach_map
from medrefine.engine.refine import constraints
from medrefine.engine.refine.loop import LoopOutcome, Refiner
from medrefine.engine.session.history import SessionState, snapshot
from medrefine.engine.session.image import ImageState, labels_and_top
from medrefine.errors import NumericalError, StateError
from medrefine.packed import PackedMask
from medrefine.records import Interaction
from medrefine.types import Mark, RefineProgress, RefineResult, relative_spacing


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` decided for one refine.

    Attributes:
        marks: every mark the refine honours (the state's, then the pending ones).
        pending: the marks added since the last refine (what the history entry records).
        config: the session's config (propagation and mark writing read it).
        loop_config: the config the loop runs with
            (:func:`~medrefine.engine.gate.plan.loop_settings`: a wide gate gets more
            iterations and a dropped or relaxed anchor).
        cons: the marks as per-pixel constraints.
        plan: the gate.
        hold: how firmly each anchor pixel is held (None: fully).
        started: :func:`time.perf_counter` when the refine began (the result's ``seconds``).
    """

    marks: tuple[Mark, ...]
    pending: tuple[Mark, ...]
    config: RefineConfig
    loop_config: RefineConfig
    cons: constraints.Constraints
    plan: GatePlan
    hold: Callable[[np.ndarray], torch.Tensor] | None
    started: float


def prepare(
    img: ImageState, state: SessionState, pending: tuple[Mark, ...], config: RefineConfig
) -> Prepared:
    """Constraints from ``state.marks + pending``, the gate and the loop's settings. Changes
    nothing.

    Raises:
        StateError: no marks.
    """
    marks = state.marks + pending
    if not marks:
        raise StateError("no marks: add() a scribble, click or box before refine()")
    started = time.perf_counter()
    cons = constraints.build(
        marks,
        img.shape,
        config.marks,
        img.image,
        img.network_mask,
        seed=config.loop.seed,
        spacing=img.spacing,
    )
    plan = gate_plan(img, config, cons, len(state.class_names))
    loop, hold = loop_settings(config, plan, img.features_gate)
    return Prepared(marks, pending, config, loop, cons, plan, hold, started)


@contextmanager
def restoring(img: ImageState, state: SessionState) -> Iterator[None]:
    """Put the session's head back to ``state.head`` if the block raises (a cancel from
    ``progress``, an injected fault, non-finite numbers); the exception propagates."""
    try:
        yield
    except BaseException:
        img.head.load_state_dict(state.head)  # a failed refine changes nothing
        raise


def fit(
    img: ImageState,
    state: SessionState,
    prep: Prepared,
    progress: Callable[[RefineProgress], None] | None = None,
) -> LoopOutcome:
    """Adapt the session's head (in place) on ``prep``'s constraints: the refinement loop.

    Raises:
        NumericalError: the adapted weights are not finite (e.g. a huge ``lr``).
    """
    head = img.head
    if not prep.loop_config.loop.warm_start:
        head.load_state_dict(state.params0, strict=False)
    outcome = Refiner(prep.loop_config).run(
        img.runner, prep.cons, state.params0, prep.hold, progress
    )
    if not all(bool(torch.isfinite(p).all()) for p in head.parameters()):
        raise NumericalError(_diverged(prep.loop_config, "head weights"))
    return outcome


def finish(
    img: ImageState, state: SessionState, prep: Prepared, outcome: LoopOutcome
) -> tuple[RefineResult, SessionState]:
    """The mask of the adapted head, the result and the state to commit.

    Raises:
        NumericalError: the refined logits are not finite.
    """
    cons, plan, config, cfg = prep.cons, prep.plan, prep.config, prep.loop_config
    k = len(state.class_names)
    before = outcome.honoured_before
    logits = plan.refined(img.runner)
    shown = state.mask.unpack()  # the mask before this refine
    scale = None
    if propagates(config.propagate, cons.label[cons.written], img.own_classes):
        scale, cap = config.propagate.scale, config.propagate.cap
        distances = torch.from_numpy(_distances(img, cons, k, config)).to(logits.device)
        found = _likelihoods(img, cons, k, config, shown)
        likelihoods = None if found is None else torch.from_numpy(found).to(logits.device)
        weight = config.propagate.appearance
        logits = fuse(logits, distances, scale, cap, likelihoods, weight)
    for c, region in zip(cons.box_classes, cons.box_regions, strict=True):
        logits[c][~torch.from_numpy(region)] = -torch.inf
    spacing = relative_spacing(img.spacing, len(img.shape))
    reach = reach_map(plan.weights, plan.wrong_index, cons, shown, cfg.gate, spacing)
    marked = marked_classes(prep.marks)
    hold_unmarked(logits, marked, reach, shown)
    # A NaN or +inf from the adapted head reaches every pixel's maximum (the gate's
    # base + g * (adapted - base) keeps it even where g = 0).
    predicted, top_floor, top = labels_and_top(logits)
    if not (math.isfinite(top_floor) and math.isfinite(top)):
        raise NumericalError(_diverged(cfg, "logits"))
    req = cons.required
    wrong = cons.index[req][predicted.reshape(-1)[cons.index[req]] != cons.label[req]]
    mask = predicted
    if cfg.marks.write:
        mask.reshape(-1)[cons.index[cons.written]] = cons.label[cons.written]
    packed = PackedMask.pack(mask)
    wrong_where = np.stack(np.unravel_index(wrong, img.shape), 1).astype(np.int64)
    wrong_where.setflags(write=False)
    result = RefineResult(
        mask=mask,
        iterations=outcome.iterations,
        satisfied=wrong.size == 0,
        wrong_marks=int(wrong.size),
        wrong_where=wrong_where,
        marked_pixels=int(req.sum()),
        seconds=time.perf_counter() - prep.started,
        loss_trace=outcome.loss_trace,
        mode=img.runner.mode,
        honoured_before=1.0 if not req.any() else before / int(req.sum()),
        note=_stuck_note(
            before,
            int(req.sum()) - int(wrong.size),
            int(req.sum()),
            outcome.iterations,
            outcome.loss_trace,
        ),
        propagation=scale,
        changes=class_changes(shown, mask, reach, k),
        unmarked=tuple(c for c in range(k) if c not in marked),
    )
    entry = Interaction("refine", prep.pending, result, packed=packed)
    new = SessionState(
        prep.marks,
        snapshot(img.head),
        state.params0,
        state.class_names,
        packed,
        top_floor,
        state.history + (entry,),
        max(state.reach, plan.reach or 0.0),
    )
    return result, new


def gate_plan(
    img: ImageState, config: RefineConfig, cons: constraints.Constraints, num_classes: int
) -> GatePlan:
    """The gate of one refine (see :func:`medrefine.engine.gate.plan.plan_gate`)."""
    base = img.base
    if base.shape[0] != num_classes:  # classes added since start at the floor
        floor = torch.full((num_classes - base.shape[0], *base.shape[1:]), -1e4, device=base.device)
        base = torch.cat([base, floor])
    reach = img.history.current.reach
    spacing = relative_spacing(img.spacing, len(img.shape))
    return plan_gate(
        config, base, img.network_mask, cons, img.features_gate, reach, img.image, spacing
    )


def _distances(
    img: ImageState, cons: constraints.Constraints, k: int, config: RefineConfig
) -> np.ndarray:
    """Each class's geodesic distance to its drawn pixels, ``(k, *shape)`` float32."""
    index, label = cons.index[cons.written], cons.label[cons.written]
    spacing = relative_spacing(img.spacing, len(img.shape))
    prop = config.propagate
    return class_distances(index, label, k, img.image, prop.edge_weight, spacing, prop.lone_margin)


def _likelihoods(
    img: ImageState,
    cons: constraints.Constraints,
    k: int,
    config: RefineConfig,
    shown: np.ndarray,
) -> np.ndarray | None:
    """Each class's colour-model log-likelihood, ``(k, *shape)`` float32, or None when the
    fusion leaves appearance out; ``shown`` is the mask before the refine (its colours join
    each class's model with ``propagate.shown_prior``)."""
    prop = config.propagate
    if prop.appearance <= 0:
        return None
    index, label = cons.index[cons.drawn], cons.label[cons.drawn]
    cells = img.colour_cells(prop.bins)
    return class_log_likelihoods(
        img.image, index, label, k, prop.bins, cells, shown, prop.shown_prior
    )


def _stuck_note(
    before: int, after: int, total: int, iterations: int, losses: tuple[float, ...]
) -> str:
    """Why a refine that took steps did not move the network's prediction at the marks ("" if
    it did, took none, or every drawn pixel was already predicted as its class). ``losses`` is
    the loop's objective per step: flat means the head's output does not answer its weights."""
    if iterations == 0 or after > before or before >= total:
        return ""
    stuck = (
        f"the refinement did not move the network's prediction at the marks: {before} of "
        f"{total} drawn pixels predicted as their class before, {after} after {iterations} "
        "steps; the mask shows the marks only where they are written into it. "
    )
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) >= 2 and max(finite) - min(finite) <= 1e-6 * max(1.0, abs(finite[0])):
        return stuck + (
            "The objective did not change: the head's output does not depend on the weights "
            "being adapted. Check that the head returns logits (SplitModel.output_kind) and "
            "that it can reach the marks (cut earlier)"
        )
    return stuck + (
        "The network is confident against them there: add marks of that class nearby, or "
        "allow more steps (loop.max_iterations) or a larger step (loop.lr)"
    )


def _diverged(cfg: RefineConfig, what: str) -> str:
    return (
        f"the refinement diverged: the adapted {what} are not finite (optimizer "
        f"{cfg.loop.optimizer}, lr {cfg.loop.lr:g}); the step was rolled back, lower the "
        "learning rate"
    )
