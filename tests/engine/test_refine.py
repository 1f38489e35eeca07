"""Objective terms and trainable depth (the config itself: test_config.py)."""

from __future__ import annotations

import torch
from torch import nn

from medrefine.engine.refine.loop import trainable_parameters
from medrefine.engine.refine.objective import (
    LossInputs,
    build_objective,
    mark_loss,
    prediction_anchor,
    weight_anchor,
)


def test_trainable_depth_selects_last_layers() -> None:
    head = nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1))
    params = trainable_parameters(head, 1)
    assert [p.shape for p in params] == [head[3].weight.shape, head[3].bias.shape]
    assert not head[0].weight.requires_grad and head[3].weight.requires_grad
    assert len(trainable_parameters(head, None)) == 6


def _inputs(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> LossInputs:
    z = torch.zeros(0, logits.shape[1])
    p = [torch.ones(2, requires_grad=True)]
    return LossInputs(
        logits, label, weight, z, torch.zeros(0, dtype=torch.long), z, z, p, [torch.ones(2)]
    )


def test_class_balanced_mark_loss_weighs_classes_equally() -> None:
    logits = torch.tensor([[2.0, 0.0]] * 9 + [[0.0, 2.0]])
    label = torch.tensor([0] * 9 + [0])
    label[-1] = 1  # one pixel of class 1 predicted right, nine of class 0 right
    logits[-1] = torch.tensor([2.0, 0.0])  # ... now the class-1 pixel is wrong
    w = torch.ones(10)
    plain, balanced = (
        mark_loss(False)(_inputs(logits, label, w)),
        mark_loss(True)(_inputs(logits, label, w)),
    )
    ce_right = torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    ce_wrong = torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
    torch.testing.assert_close(plain, (9 * ce_right + ce_wrong) / 10)
    torch.testing.assert_close(balanced, (ce_right + ce_wrong) / 2)


def test_weight_anchor_is_the_l2_distance() -> None:
    x = _inputs(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.ones(1))
    x.params = [torch.tensor([4.0, 1.0])]
    x.params0 = [torch.tensor([1.0, 5.0])]
    torch.testing.assert_close(weight_anchor(x), torch.tensor(5.0))


def test_objective_leaves_out_zero_weight_terms() -> None:
    assert build_objective(0.0, 0.0, 0.0, True).names == ("marks",)
    assert build_objective(1.0, 0.5, 1.0, True).names == (
        "marks",
        "negatives",
        "weight_anchor",
        "prediction_anchor",
    )


def test_prediction_anchor_weights_each_pixel() -> None:
    torch.manual_seed(0)
    logits, ref = torch.randn(6, 3), torch.randn(6, 3).softmax(1)
    x = _inputs(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), torch.ones(1))
    x.anchor_logits, x.anchor_ref = logits, ref
    full = prediction_anchor(x)
    per_pixel = (ref * (ref.log() - logits.log_softmax(1))).sum(1)
    torch.testing.assert_close(full, per_pixel.mean())
    x.anchor_hold = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(prediction_anchor(x), per_pixel[:3].sum() / 6)
    x.anchor_hold = torch.zeros(6)
    assert float(prediction_anchor(x)) == 0.0
