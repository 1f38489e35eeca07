"""Algorithm 1 of Sambaturu et al. (MICCAI 2021) on cached features, with a pluggable objective.

The loop adapts the head's trainable parameters until the network predicts every required
constraint (the clinician's pixels, box centres, box exclusions) or ``loop.max_iterations``
steps have been taken (:class:`~medrefine.engine.config.RefineConfig` holds every setting). The
stop rule is checked before each step on the logits the step would use, so no extra head
evaluation is spent on it. The head is evaluated only where the loss needs it (see
:mod:`medrefine.engine.head.runner`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medrefine.engine.config import RefineConfig
from medrefine.engine.head.runner import HeadRunner
from medrefine.engine.head.threads import single_threaded
from medrefine.engine.refine.constraints import Constraints
from medrefine.engine.refine.objective import LossInputs, build_objective
from medrefine.types import RefineProgress

__all__ = ["LoopOutcome", "Refiner", "trainable_parameters"]


def trainable_parameters(head: nn.Module, last_k: int | None) -> list[nn.Parameter]:
    """Parameters of the last ``last_k`` parameterised layers (modules owning parameters) in
    registration order, or all of them; the others get ``requires_grad=False``."""
    layers = [m for m in head.modules() if any(True for _ in m.parameters(recurse=False))]
    chosen = layers if last_k is None else layers[-last_k:]
    for p in head.parameters():
        p.requires_grad_(False)
    params = [p for m in chosen for p in m.parameters(recurse=False)]
    for p in params:
        p.requires_grad_(True)
    return params


@dataclass(frozen=True)
class LoopOutcome:
    """What the loop did: gradient steps, the objective at each, and how many required drawn
    pixels the head predicted as their class before the first step."""

    iterations: int
    loss_trace: tuple[float, ...]
    honoured_before: int = 0


@dataclass(frozen=True)
class _Targets:
    """Per-pixel targets of one refine, in the order ``evaluate()`` returns logits:
    ``n_pos`` positive, ``n_neg`` negative, then anchor pixels."""

    label: torch.Tensor
    weight: torch.Tensor
    required: torch.Tensor
    neg_label: torch.Tensor
    anchor_ref: torch.Tensor
    n_pos: int
    n_neg: int
    anchor_hold: torch.Tensor

    def honoured(self, logits: torch.Tensor) -> int:
        """Required positive pixels the logits predict as their class."""
        req = self.required
        return int((logits[: self.n_pos][req].argmax(1) == self.label[req]).sum())

    def wrong(self, logits: torch.Tensor) -> int:
        """Constraints the logits break: required positive pixels predicted as another class
        plus negative pixels predicted as the class they exclude (0 = satisfied)."""
        missed = int(self.required.sum()) - self.honoured(logits)
        neg = logits[self.n_pos : self.n_pos + self.n_neg]
        return missed + int((neg.argmax(1) == self.neg_label).sum())

    def inputs(
        self, logits: torch.Tensor, params: list[nn.Parameter], params0: list[torch.Tensor]
    ) -> LossInputs:
        a, b = self.n_pos, self.n_pos + self.n_neg
        return LossInputs(
            logits[:a],
            self.label,
            self.weight,
            logits[a:b],
            self.neg_label,
            logits[b:],
            self.anchor_ref,
            params,
            params0,
            self.anchor_hold,
        )


class Refiner:
    """Runs Algorithm 1 for one ``refine()``: objective and stop rule from ``config``."""

    def __init__(self, config: RefineConfig) -> None:
        self.config = config
        obj = config.objective
        self.objective = build_objective(
            obj.alpha, obj.anchor_weight, obj.negative_weight, obj.class_balanced
        )

    def _anchor_pixels(self, cons: Constraints, region: np.ndarray | None = None) -> np.ndarray:
        """Sampled unmarked pixels (flat index) for the anchor term: anywhere in the image, or
        among the flat ``region`` pixels (a cropped head's crop, where they cost nothing)."""
        if self.config.objective.anchor_weight == 0:
            return np.zeros(0, dtype=np.int64)
        size = int(np.prod(cons.shape)) if region is None else region.size
        rng = np.random.default_rng(self.config.loop.seed)
        count = min(self.config.objective.anchor_samples, size)
        sample = np.unique(rng.integers(0, size, count))
        if region is not None:
            sample = np.unique(region[sample])
        return sample[~np.isin(sample, cons.index)]

    def run(
        self,
        runner: HeadRunner,
        cons: Constraints,
        params0: dict[str, torch.Tensor],
        anchor_hold: Callable[[np.ndarray], torch.Tensor] | None = None,
        progress: Callable[[RefineProgress], None] | None = None,
    ) -> LoopOutcome:
        """Adapt ``runner.head`` in place; ``params0`` are the pre-trained head parameters.

        ``anchor_hold`` maps the anchor pixels (flat index, ``(A,)``) to how firmly each is held
        at the network's prediction (``(A,)`` float32 in [0, 1], on any device: it is moved to
        the features'); None holds them all fully. Targets, anchors and the loss live on the
        features' device (``runner.features[0].device``); pixel indices stay on the host.
        ``progress`` is called before every gradient step; an exception it raises (e.g.
        :class:`~medrefine.errors.CancelledError`) stops the loop and propagates, leaving the
        head part-way: the caller restores it.
        """
        head = runner.head
        params = trainable_parameters(head, self.config.loop.trainable_layers)
        names = {id(p): n for n, p in head.named_parameters()}
        anchors0 = [params0[names[id(p)]] for p in params]
        marked = np.concatenate([cons.index, cons.neg_index])
        anchor_idx = self._anchor_pixels(cons, runner.anchor_region(marked))
        # pixel indices stay on the host (the runner gathers or crops with them); every
        # tensor the loss meets lives where the features and the head do
        device = runner.features[0].device
        index = torch.from_numpy(np.concatenate([cons.index, cons.neg_index, anchor_idx]))
        evaluate = runner.evaluator(index)
        ref = torch.zeros(0, device=device)
        if anchor_idx.size:  # the pre-trained head's probabilities at the anchor pixels
            with torch.no_grad():
                current = {n: p.detach().clone() for n, p in head.named_parameters()}
                head.load_state_dict(params0, strict=False)
                ref = evaluate()[cons.index.size + cons.neg_index.size :].softmax(1)
                head.load_state_dict(current, strict=False)
        hold = torch.zeros(0, device=device)
        if anchor_hold is not None and anchor_idx.size:
            hold = anchor_hold(anchor_idx).to(device)
        targets = _Targets(
            torch.from_numpy(cons.label).to(device),
            torch.from_numpy(cons.weight).to(device),
            torch.from_numpy(cons.required).to(device),
            torch.from_numpy(cons.neg_label).to(device),
            ref,
            cons.index.size,
            cons.neg_index.size,
            hold,
        )
        with single_threaded():  # rows of a few thousand pixels: thread hand-offs cost more
            return self._loop(evaluate, targets, params, anchors0, progress)

    def _loop(
        self,
        evaluate: Callable[[], torch.Tensor],
        targets: _Targets,
        params: list[nn.Parameter],
        params0: list[torch.Tensor],
        progress: Callable[[RefineProgress], None] | None,
    ) -> LoopOutcome:
        cfg = self.config.loop
        opt: torch.optim.Optimizer = (
            (
                torch.optim.Adam(params, lr=cfg.lr)
                if cfg.optimizer == "adam"
                else torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
            )
            if params
            else torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
        )
        trace: list[float] = []
        before = 0
        for step in range(cfg.max_iterations + 1):
            logits = evaluate()
            with torch.no_grad():
                wrong = targets.wrong(logits)
                if step == 0:
                    before = targets.honoured(logits)
            if wrong == 0 or step == cfg.max_iterations or not params:
                return LoopOutcome(step, tuple(trace), before)
            if progress is not None:
                last = trace[-1] if trace else math.nan
                progress(RefineProgress(step, cfg.max_iterations, last, wrong))
            loss = self.objective(targets.inputs(logits, params, params0))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            trace.append(float(loss.detach()))
        return LoopOutcome(cfg.max_iterations, tuple(trace), before)
