"""HeadRunner picks pointwise / crop / full by what the head computes, and all agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medrefine.engine.head.crop import measure_margins
from medrefine.engine.head.pointwise import as_row_head
from medrefine.engine.head.runner import (
    HeadRunner,
    channels_last,
    last_layer,
    resize_outputs,
)


class TwoInputHead(nn.Module):
    def __init__(self, kernel: int = 1, norm: bool = False) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 8, kernel, padding=kernel // 2)
        self.norm = nn.InstanceNorm2d(8) if norm else nn.Identity()
        self.b = nn.Conv2d(12, 3, 1)

    def forward(self, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cat([torch.relu(self.norm(self.a(f0))), f1 * 2.0], dim=1))


def _features(shape: tuple[int, ...] = (20, 24)) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    return tuple(channels_last(torch.randn((1, c, *shape))) for c in (4, 4))


@pytest.mark.parametrize(
    ("head", "mode"),
    [(TwoInputHead(1), "pointwise"), (TwoInputHead(3), "crop"), (TwoInputHead(1, True), "full")],
)
def test_modes_and_their_logits_agree_with_the_whole_head(head: nn.Module, mode: str) -> None:
    head = head.eval()
    feats = _features()
    runner = HeadRunner(head, feats, (20, 24))
    assert runner.mode == mode
    with torch.no_grad():
        want = head(*feats)[0]
    torch.testing.assert_close(runner.predict(), want, rtol=1e-4, atol=1e-5)
    index = torch.tensor([0, 5, 24 * 7 + 3, 20 * 24 - 1])
    got = runner.evaluator(index)()
    torch.testing.assert_close(got, want.reshape(3, -1)[:, index].T, rtol=1e-4, atol=1e-5)


def test_evaluator_is_differentiable_in_head_parameters() -> None:
    head = TwoInputHead(1).eval()
    runner = HeadRunner(head, _features(), (20, 24))
    runner.evaluator(torch.tensor([3, 7]))().sum().backward()
    assert head.a.weight.grad is not None and head.a.weight.grad.abs().sum() > 0


def test_naive_mode_is_full() -> None:
    assert HeadRunner(TwoInputHead(1).eval(), _features(), (20, 24), naive=True).mode == "full"


def test_receptive_margin_of_stacked_convs() -> None:
    head = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 1, 5, padding=2))
    grid = measure_margins(head, (torch.randn(1, 2, 41, 41),), (41, 41))
    assert grid is not None
    assert grid.margins == ((3, 3),)  # radius 1 + 2
    norm = nn.Sequential(nn.InstanceNorm2d(2))
    assert measure_margins(norm, (torch.randn(1, 2, 41, 41),), (41, 41)) is None


def test_row_head_refuses_spatial_ops_and_training_mode() -> None:
    def seq(*mods: nn.Module) -> nn.Module:
        return nn.Sequential(*mods).eval()

    assert as_row_head(seq(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.BatchNorm2d(2))) is not None
    assert as_row_head(seq(nn.Conv2d(2, 2, 3))) is None
    assert as_row_head(seq(nn.Conv2d(2, 2, 1), nn.Softmax(dim=-1))) is None
    assert as_row_head(seq(nn.Conv2d(2, 2, 1), nn.Softmax(dim=1))) is not None
    assert as_row_head(nn.Sequential(nn.Conv2d(2, 2, 1)).train()) is None


def test_row_head_matches_batchnorm_head_on_rows() -> None:
    head = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Conv2d(4, 2, 1)
    )
    head[1].running_mean.uniform_(-1, 1)
    head[1].running_var.uniform_(0.5, 2)
    head = head.eval()
    x = torch.randn(1, 3, 5, 6)
    row_head = as_row_head(head)
    assert row_head is not None
    with torch.no_grad():
        want = head(x).movedim(1, -1).reshape(-1, 2)
        got = row_head(x.movedim(1, -1).reshape(-1, 3))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_resize_outputs_keeps_rows_and_last_layer_is_found() -> None:
    head = nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    layer = last_layer(head, 3)
    assert layer is head[2]
    before = layer.weight.detach().clone()
    resize_outputs(layer, 4)
    assert layer.weight.shape[0] == 4 and layer.out_channels == 4
    torch.testing.assert_close(layer.weight[:3], before)
    assert float(layer.weight[3].detach().abs().sum()) == 0.0
    resize_outputs(layer, 3)
    torch.testing.assert_close(layer.weight, before)
    with pytest.raises(ValueError, match="5 outputs"):
        last_layer(head, 5)
