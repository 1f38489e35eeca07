"""The refinement objective, built from composable terms.

Each term maps a :class:`LossInputs` to a scalar. :func:`build_objective` picks the terms the
``objective`` section of a :class:`medrefine.RefineConfig` switches on: the paper's loss is
``MarkLoss + WeightAnchor`` (plus ``NegativeLoss`` for boxes); ``PredictionAnchor`` keeps
unmarked pixels near the network's own prediction.

A term's *weight* is one scalar per term; an anchor pixel's *hold* (``anchor_hold``, in [0, 1]) is
how firmly that one pixel is kept at the network's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812


@dataclass
class LossInputs:
    """What the terms see in one iteration (N positive, M negative, A anchor pixels; K classes),
    every tensor on one device (the session's).

    Attributes:
        pos_logits: ``(N, K)`` logits at positively constrained pixels.
        pos_label, pos_weight: ``(N,)`` int64 classes and float32 weights.
        neg_logits: ``(M, K)``; neg_label: ``(M,)`` the class each pixel must not be.
        anchor_logits: ``(A, K)`` at sampled unmarked pixels; anchor_ref: ``(A, K)`` the
            pre-trained network's probabilities there; anchor_hold: ``(A,)`` float32 in
            [0, 1], how firmly each is held (empty = all 1).
        params, params0: current and pre-trained trainable parameters (same order).
    """

    pos_logits: torch.Tensor
    pos_label: torch.Tensor
    pos_weight: torch.Tensor
    neg_logits: torch.Tensor
    neg_label: torch.Tensor
    anchor_logits: torch.Tensor
    anchor_ref: torch.Tensor
    params: Sequence[torch.Tensor]
    params0: Sequence[torch.Tensor]
    anchor_hold: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


Term = Callable[[LossInputs], torch.Tensor]


def mark_loss(class_balanced: bool) -> Term:
    """Weighted cross-entropy on the marked pixels; optionally each class weighs the same."""

    def term(x: LossInputs) -> torch.Tensor:
        if x.pos_label.numel() == 0:
            return x.pos_logits.sum() * 0.0
        w = x.pos_weight
        if class_balanced:
            counts = torch.bincount(x.pos_label, weights=w, minlength=x.pos_logits.shape[1])
            w = w / counts[x.pos_label].clamp_min(1e-6)
        ce = F.cross_entropy(x.pos_logits, x.pos_label, reduction="none")
        return (w * ce).sum() / w.sum()

    return term


def negative_loss(x: LossInputs) -> torch.Tensor:
    """-log(1 - p_c) where a pixel must not be class c (boxes)."""
    if x.neg_label.numel() == 0:
        return x.neg_logits.sum() * 0.0
    logp = x.neg_logits.log_softmax(1)
    p_c = logp.gather(1, x.neg_label[:, None]).exp().clamp(max=1 - 1e-6)
    return -torch.log1p(-p_c).mean()


def weight_anchor(x: LossInputs) -> torch.Tensor:
    """||W - W0||_2 over all trainable parameters (the paper's regulariser)."""
    sq = sum(((p - p0) ** 2).sum() for p, p0 in zip(x.params, x.params0, strict=True))
    return torch.sqrt(torch.as_tensor(sq, device=x.pos_logits.device) + 1e-12)


def prediction_anchor(x: LossInputs) -> torch.Tensor:
    """KL(p0 || p) at sampled unmarked pixels, each scaled by its ``anchor_hold``, summed and
    divided by their count: keep them where the network had them."""
    if x.anchor_ref.numel() == 0:
        return x.anchor_logits.sum() * 0.0
    kl = F.kl_div(x.anchor_logits.log_softmax(1), x.anchor_ref, reduction="none").sum(1)
    weighted = kl if x.anchor_hold.numel() == 0 else x.anchor_hold * kl
    return weighted.sum() / kl.numel()


@dataclass(frozen=True)
class Objective:
    """A weighted sum of terms; ``terms`` holds ``(name, weight, term)``."""

    terms: tuple[tuple[str, float, Term], ...]

    def __call__(self, x: LossInputs) -> torch.Tensor:
        start = torch.zeros((), device=x.pos_logits.device)
        return sum((w * t(x) for _, w, t in self.terms), start)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _, _ in self.terms)


def build_objective(
    alpha: float, anchor_weight: float, negative_weight: float, class_balanced: bool
) -> Objective:
    """The objective for these weights (:class:`medrefine.engine.config.ObjectiveConfig`'s
    ``alpha``, ``anchor_weight``, ``negative_weight``); terms with weight 0 are left out."""
    terms: list[tuple[str, float, Term]] = [("marks", 1.0, mark_loss(class_balanced))]
    if negative_weight > 0:
        terms.append(("negatives", negative_weight, negative_loss))
    if alpha > 0:
        terms.append(("weight_anchor", alpha, weight_anchor))
    if anchor_weight > 0:
        terms.append(("prediction_anchor", anchor_weight, prediction_anchor))
    return Objective(tuple(terms))
