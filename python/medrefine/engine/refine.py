"""Algorithm 1 of Sambaturu et al. (MICCAI 2021) on cached features, with a pluggable objective.

The loop adapts the head's trainable parameters until the network predicts every required
constraint (the clinician's pixels, box centres, box exclusions) or ``max_iterations`` steps have
been taken. The stop rule is checked before each step on the logits the step would use, so no
extra head evaluation is spent on it. The head is evaluated only where the loss needs it (see
:mod:`medrefine.engine.head`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from medrefine.engine.constraints import ConstraintConfig, Constraints
from medrefine.engine.head import HeadRunner
from medrefine.engine.objective import LossInputs, build_objective
from medrefine.errors import InputError
from medrefine.types import RefineProgress


@dataclass(frozen=True)
class RefineConfig:
    """Every knob of a refinement. Defaults are medrefine's; :meth:`paper` gives the paper's.

    The defaults (Adam, alpha 1, an anchor on 4096 unmarked pixels, the adaptive gate with a
    4-pixel floor that follows the image's edges and never opens wider than 24 pixels) were
    chosen on the accuracy bench and checked on held-out cases (``docs/corrections.md``): in
    distribution no interaction costs a case more than a few hundredths of Dice. For images far
    from the network's training data, :meth:`shifted` lets the gate widen to global.

    Attributes:
        optimizer: ``"adam"`` or ``"sgd"`` (the paper's).
        lr: learning rate. momentum: SGD momentum.
        max_iterations: M, the most gradient steps per ``refine()``; wide_iterations: M when the
            adaptive gate is wider than ``anchor_reach`` (a badly wrong network needs more).
        alpha: weight of ||W - W0||_2 (W0 = pre-trained head).
        anchor_weight: weight of KL(p0 || p) on ``anchor_samples`` sampled unmarked pixels.
        negative_weight: weight of the box-exclusion term.
        class_balanced: every class's marks weigh the same in the mark loss.
        trainable_layers: adapt only the last k parameterised layers of the head (None = all).
        warm_start: start from the session's current head (True) or the pre-trained one (False,
            the paper's choice).
        write_marks: write the drawn pixels into the returned mask.
        box_center_fraction, box_band, box_negatives: see :mod:`medrefine.engine.constraints`.
        region_grow, grow_threshold (in standard deviations of the normalised image),
        grow_criterion, grow_max_distance (pixels), grown_weight: region growing of scribbles.
        seed: seeds every random choice (sampled pixels), so refinement is deterministic.
        gate, gate_sigma (pixels), gate_tau, gate_prototypes: where the adapted head may overrule
            the network (see :mod:`medrefine.engine.gate`); ``"none"`` lets it decide everywhere.
        gate_reach, gate_global (pixels): the adaptive gate's width is ``gate_reach`` times the
            median distance of the contradicted marks to the network's mask. gate_steps: a
            reading beyond ``gate_global`` opens the gate to ``gate_global``, each further one
            doubles it, and the reading after ``gate_steps`` of them makes it global (0: global
            at once). gate_widest (pixels): the adaptive gate never opens wider (inf: it may go
            global; see :meth:`shifted`). gate_evidence: the gate grows past ``anchor_reach``
            only with this many contradicted pixels of each of two classes or more; with fewer,
            its width is ``gate_fallback`` (pixels). gate_edges: a gate narrower than
            ``gate_global`` follows the image's edges: crossing an edge k times the mean gradient
            costs about ``gate_edges * k`` extra pixels of distance (0: Euclidean gate).
        anchor_reach (pixels): the anchor is dropped when the adaptive width exceeds it (the
            network is wrong too widely to hold it at its answer), or, with ``anchor_relax``,
            released where a pixel's features resemble a contradicted mark.
        head_eval: ``"auto"`` evaluates the head only where the loss needs it; ``"full"`` runs it
            over the whole image every iteration (the naive loop, kept as a benchmark baseline).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-2
    momentum: float = 0.9
    max_iterations: int = 20
    wide_iterations: int = 50
    alpha: float = 1.0
    anchor_weight: float = 1.0
    anchor_samples: int = 4096
    negative_weight: float = 1.0
    class_balanced: bool = True
    trainable_layers: int | None = None
    warm_start: bool = True
    write_marks: bool = True
    box_center_fraction: float = 0.2
    box_band: int = 6
    box_negatives: int = 4096
    region_grow: bool = False
    grow_threshold: float = 0.3
    grow_criterion: Literal["neighbour", "seed_mean"] = "neighbour"
    grow_max_distance: float | None = 10.0
    grown_weight: float = 0.5
    seed: int = 0
    head_eval: Literal["auto", "full"] = "auto"
    gate: Literal["none", "spatial", "feature", "adaptive"] = "adaptive"
    gate_sigma: float = 4.0
    gate_reach: float = 3.0
    gate_global: float = 24.0
    gate_steps: int = 2
    gate_evidence: int = 32
    gate_fallback: float = 12.0
    gate_widest: float = 24.0
    gate_edges: float = 1.0
    anchor_reach: float = 24.0
    anchor_relax: bool = False
    gate_tau: float = 0.5
    gate_prototypes: int = 8

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("lr", "alpha", "anchor_weight", "negative_weight", "grown_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise InputError(f"{name} must be a finite number >= 0 (lr > 0), got {value!r}")
        if self.max_iterations < 0 or self.wide_iterations < 0:
            raise InputError(
                f"max_iterations and wide_iterations must be >= 0, got "
                f"{self.max_iterations} and {self.wide_iterations}"
            )
        if self.trainable_layers is not None and self.trainable_layers < 1:
            raise InputError(f"trainable_layers must be >= 1 or None, got {self.trainable_layers}")
        for name in (
            "gate_sigma",
            "gate_reach",
            "gate_tau",
            "gate_global",
            "gate_fallback",
            "gate_widest",
            "gate_edges",
            "anchor_reach",
        ):
            value = getattr(self, name)
            positive = name in ("gate_sigma", "gate_reach", "gate_tau", "gate_widest")
            if not value >= 0 or (positive and value == 0):
                raise InputError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.gate_evidence < 0 or self.gate_steps < 0:
            raise InputError(
                f"gate_evidence and gate_steps must be >= 0, got {self.gate_evidence} and "
                f"{self.gate_steps}"
            )
        if not 0 < self.box_center_fraction <= 1:
            raise InputError("box_center_fraction must be in (0, 1]")

    @classmethod
    def paper(cls) -> RefineConfig:
        """The paper's literal Algorithm 1: SGD, cross-entropy + alpha*||W - W0||, reset to the
        pre-trained head at every interaction, no gate, no anchor, no marks written, no class
        balancing."""
        return cls(
            optimizer="sgd",
            lr=0.1,
            max_iterations=50,
            momentum=0.0,
            alpha=1e-3,
            anchor_weight=0.0,
            class_balanced=False,
            warm_start=False,
            write_marks=False,
            gate="none",
        )

    @classmethod
    def shifted(cls) -> RefineConfig:
        """For an image far from the network's training data (another stain, scanner or
        modality), where the network misses or invents whole structures: far readings widen the
        gate step by step (24, 48 px) and then make the correction global, without the anchor to
        the network's answer. On images the network knows, the same widening can turn a mostly
        right mask over (``docs/corrections.md``), so it is not the default."""
        return cls(gate_widest=math.inf)

    def constraint_config(self) -> ConstraintConfig:
        """The part of this config that turns marks into constraints."""
        names = {f.name for f in fields(ConstraintConfig)}
        return ConstraintConfig(**{n: getattr(self, n) for n in names})

    def with_overrides(self, spec: str) -> RefineConfig:
        """A copy with ``"name=value,name=value"`` applied (``on``/``off`` for booleans,
        ``none`` for optional numbers). Unknown names raise :class:`InputError`."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, object] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, _, raw = item.partition("=")
            if name not in known:
                raise InputError(f"unknown RefineConfig field {name!r}; fields: {sorted(known)}")
            changes[name] = _parse(raw, getattr(self, name), str(known[name].type))
        return replace(self, **changes)  # type: ignore[arg-type]


def _parse(raw: str, current: object, annotation: str) -> object:
    low = raw.strip().lower()
    if low in ("none", "null") and "None" in annotation:
        return None
    if isinstance(current, bool) or annotation == "bool":
        if low not in ("on", "off", "true", "false", "1", "0"):
            raise InputError(f"expected on/off, got {raw!r}")
        return low in ("on", "true", "1")
    if "int" in annotation and "float" not in annotation:
        return int(raw)
    if "float" in annotation:
        return float(raw)
    return raw.strip()


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
    """What the loop did: gradient steps and the objective at each."""

    iterations: int
    loss_trace: tuple[float, ...]


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
    anchor_weight: torch.Tensor

    def wrong(self, logits: torch.Tensor) -> int:
        """Constraints the logits break: required positive pixels predicted as another class
        plus negative pixels predicted as the class they exclude (0 = satisfied)."""
        pos, neg = logits[: self.n_pos], logits[self.n_pos : self.n_pos + self.n_neg]
        req = self.required
        missed = int((pos[req].argmax(1) != self.label[req]).sum())
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
            self.anchor_weight,
        )


class Refiner:
    """Runs Algorithm 1 for one ``refine()``: objective and stop rule from ``config``."""

    def __init__(self, config: RefineConfig) -> None:
        self.config = config
        self.objective = build_objective(
            config.alpha, config.anchor_weight, config.negative_weight, config.class_balanced
        )

    def _anchor_pixels(self, cons: Constraints) -> np.ndarray:
        if self.config.anchor_weight == 0:
            return np.zeros(0, dtype=np.int64)
        size = int(np.prod(cons.shape))
        rng = np.random.default_rng(self.config.seed)
        sample = np.unique(rng.integers(0, size, min(self.config.anchor_samples, size)))
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
        at the network's prediction (``(A,)`` float32 in [0, 1]); None holds them all fully.
        ``progress`` is called before every gradient step; an exception it raises (e.g.
        :class:`~medrefine.errors.CancelledError`) stops the loop and propagates, leaving the
        head part-way: the caller restores it.
        """
        head = runner.head
        params = trainable_parameters(head, self.config.trainable_layers)
        names = {id(p): n for n, p in head.named_parameters()}
        anchors0 = [params0[names[id(p)]] for p in params]
        anchor_idx = self._anchor_pixels(cons)
        index = torch.from_numpy(np.concatenate([cons.index, cons.neg_index, anchor_idx]))
        evaluate = runner.evaluator(index)
        ref = torch.zeros(0)
        if anchor_idx.size:  # the pre-trained head's probabilities at the anchor pixels
            with torch.no_grad():
                current = {n: p.detach().clone() for n, p in head.named_parameters()}
                head.load_state_dict(params0, strict=False)
                ref = evaluate()[cons.index.size + cons.neg_index.size :].softmax(1)
                head.load_state_dict(current, strict=False)
        hold = torch.zeros(0)
        if anchor_hold is not None and anchor_idx.size:
            hold = anchor_hold(anchor_idx)
        targets = _Targets(
            torch.from_numpy(cons.label),
            torch.from_numpy(cons.weight),
            torch.from_numpy(cons.required),
            torch.from_numpy(cons.neg_label),
            ref,
            cons.index.size,
            cons.neg_index.size,
            hold,
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # rows of a few thousand pixels: thread hand-offs cost more
        try:
            return self._loop(evaluate, targets, params, anchors0, progress)
        finally:
            torch.set_num_threads(threads)

    def _loop(
        self,
        evaluate: Callable[[], torch.Tensor],
        targets: _Targets,
        params: list[nn.Parameter],
        params0: list[torch.Tensor],
        progress: Callable[[RefineProgress], None] | None,
    ) -> LoopOutcome:
        cfg = self.config
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
        for step in range(cfg.max_iterations + 1):
            logits = evaluate()
            with torch.no_grad():
                wrong = targets.wrong(logits)
            if wrong == 0 or step == cfg.max_iterations or not params:
                return LoopOutcome(step, tuple(trace))
            if progress is not None:
                last = trace[-1] if trace else math.nan
                progress(RefineProgress(step, cfg.max_iterations, last, wrong))
            loss = self.objective(targets.inputs(logits, params, params0))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            trace.append(float(loss.detach()))
        return LoopOutcome(cfg.max_iterations, tuple(trace))
