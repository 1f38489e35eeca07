"""Gates over features coarser than the image, at one or several resolutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import medrefine as mr
from medrefine.engine.gate.plan import FeatureGate, GatePlan, spatial_gate
from medrefine.engine.head.runner import HeadRunner, channels_last, rows


class CoarseNet(nn.Module):
    """Encoder to 1/4 with a skip at 1/2; the head upsamples both back to full size."""

    def __init__(self) -> None:
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.up4 = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.head = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.out = nn.ConvTranspose2d(4, 2, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.down1(x)
        quarter = self.down2(half)
        return self.out(self.head(torch.cat([self.up4(quarter), half], 1)))


def _image(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.indices(shape)
    disc = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 5) ** 2
    noise = np.random.default_rng(0).normal(0, 0.1, shape)
    return np.asarray(disc + noise, dtype=np.float32)


def _model() -> mr.SplitModel:
    torch.manual_seed(0)
    return mr.SplitModel.from_module(
        CoarseNet().eval(), ["up4", "head", "out"], num_classes=2, spatial_dims=2
    )


def test_nearest_feature_rows_equal_an_upsampled_copy_of_the_features() -> None:
    torch.manual_seed(0)
    shape = (24, 20)
    quarter = channels_last(torch.randn(1, 3, 6, 5))
    half = channels_last(torch.randn(1, 2, 12, 10))
    head = _TwoScaleHead().eval()
    runner = HeadRunner(head, (quarter, half), shape)
    pixel_map = runner.pixel_map()
    assert pixel_map is not None
    coarse = FeatureGate((rows(quarter), rows(half)), pixel_map)
    # The reference: every feature repeated to the image's grid, then the same-size gate.
    big = tuple(
        channels_last(f.repeat_interleave(k, 2).repeat_interleave(k, 3))
        for f, k in ((quarter, 4), (half, 2))
    )
    dense = FeatureGate(tuple(rows(f) for f in big))
    index = np.ravel_multi_index(([3, 5, 17], [2, 11, 19]), shape)
    labels = np.array([1, 1, 0])
    for gate in (coarse, dense):
        assert gate.pixels == 24 * 20
    # Spreads come from each feature's own pixels: the same up to the sampling of repeats.
    for a, b in zip(coarse.inv_var, dense.inv_var, strict=True):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0)
    coarse.inv_var = dense.inv_var
    torch.testing.assert_close(coarse._scaled(torch.arange(480)), dense._scaled(torch.arange(480)))
    torch.testing.assert_close(coarse(index, 0.5, 2, 0, labels), dense(index, 0.5, 2, 0, labels))


class _TwoScaleHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 2, 2, stride=2)
        self.mix = nn.Conv2d(4, 2, 3, padding=1)
        self.out = nn.ConvTranspose2d(2, 2, 2, stride=2)

    def forward(self, quarter: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        return self.out(self.mix(torch.cat([self.up(quarter), half], 1)))


@pytest.mark.parametrize("kind", ["feature", "adaptive", "spatial"])
def test_gates_refine_a_head_over_coarse_features(kind: str) -> None:
    model = _model()
    session = mr.Session(model, mr.RefineConfig().with_overrides(f"gate.kind={kind}"))
    shape = (64, 72)
    mask = session.set_image(_image(shape))
    wrong = 1 - int(mask[32, 24])
    session.add(mr.Scribble(wrong, ((32, 18), (32, 30)), radius=1))
    result = session.refine()
    assert result.mode == "crop"
    assert result.mask.shape == shape
    assert result.satisfied and (result.mask[32, 18:31] == wrong).all()


def test_feature_gate_relaxes_the_anchor_over_coarse_features() -> None:
    cfg = mr.RefineConfig().with_overrides(
        "gate.anchor_relax=on,gate.anchor_reach=0,gate.fallback=40,gate.evidence=0"
    )
    session = mr.Session(_model(), cfg)
    mask = session.set_image(_image((64, 72)))
    session.add(mr.Scribble(1 - int(mask[10, 10]), ((10, 6), (10, 14)), radius=1))
    session.add(mr.Scribble(int(mask[10, 10]), ((50, 50), (50, 60)), radius=1))
    assert session.refine().mask.shape == (64, 72)


def test_refined_logits_on_the_open_box_equal_the_whole_image_ones() -> None:
    torch.manual_seed(0)
    shape = (64, 60)
    feats = (channels_last(torch.randn(1, 3, 16, 15)), channels_last(torch.randn(1, 2, 32, 30)))
    runner = HeadRunner(_TwoScaleHead().eval(), feats, shape)
    assert runner.mode == "crop"
    base = torch.randn(2, *shape)
    index = np.ravel_multi_index(([20, 22], [30, 33]), shape)
    weights = spatial_gate(shape, index, sigma=3.0).reshape(1, *shape)
    plan = GatePlan(base, weights)
    with torch.no_grad():
        for p in runner.head.parameters():
            p.add_(0.3)  # an adapted head
    got = plan.refined(runner)
    torch.testing.assert_close(got, plan.apply(runner.predict()), rtol=1e-5, atol=1e-5)
    assert torch.equal(got[:, :5], base[:, :5])  # the closed gate keeps the network's logits
    closed = GatePlan(base, torch.zeros(1, *shape))
    assert torch.equal(closed.refined(runner), base)
