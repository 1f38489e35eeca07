"""The checks that choose a head's mode, on their own: what they measure, what they keep, and
where a kept verdict spares them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medrefine.engine.head.checks import HeadChecks, covers, probe_boxes, probe_window
from medrefine.engine.head.crop import FeatureGrid
from medrefine.engine.head.verdict import Verdict

from .crop_heads import Decoder, make_features

Features = tuple[torch.Tensor, ...]


pytestmark = pytest.mark.usefixtures("fresh_verdicts")


def _never(head: nn.Module, features: Features, out_shape: tuple[int, ...]) -> FeatureGrid | None:
    raise AssertionError("margins measured although a verdict decides")


def _whole(head: nn.Module, features: Features) -> torch.Tensor:
    with torch.no_grad():
        return head(*features)


def test_a_crop_verdict_is_kept_and_the_next_lookup_takes_it() -> None:
    torch.manual_seed(0)
    head, shape = Decoder(2).eval(), (40, 44)
    feats = make_features(shape, 4)
    checks = HeadChecks(head, feats, shape)
    assert checks.known is None
    assert checks.row_head() is None  # features at 1/4: no row of a feature is a pixel
    verdict, _ = checks.crop(feats, _whole(head, feats))
    assert verdict.grid is not None and not verdict.pointwise
    assert verdict.grid.scales == ((4, 4),)
    again = HeadChecks(head, feats, shape, measure=_never)
    assert again.known == verdict
    assert again.crop(feats, _whole(head, feats))[0] == verdict


def test_no_grid_measured_means_no_crop_mode_and_that_is_kept() -> None:
    torch.manual_seed(0)
    head, shape = Decoder(2).eval(), (40, 44)
    feats = make_features(shape, 4)
    verdict, stages = HeadChecks(head, feats, shape, measure=lambda *a: None).crop(
        feats, _whole(head, feats)
    )
    assert verdict == Verdict(pointwise=False) and stages is None
    assert HeadChecks(head, feats, shape, measure=_never).known == verdict


def test_an_output_smaller_than_the_image_is_never_measured() -> None:
    head = nn.Conv2d(6, 3, 3).eval()  # no padding: 2 pixels short along each axis
    shape = (20, 24)
    feats = make_features(shape, 1)
    checks = HeadChecks(head, feats, shape, measure=_never)
    assert checks.row_head() is None  # a 3x3 convolution has no row rewrite
    assert checks.crop(feats, _whole(head, feats)) == (Verdict(pointwise=False), None)
    assert not covers((18, 22), shape) and covers((20, 24), shape) and covers((21, 30), shape)
    assert not covers((20, 24, 1), shape)


def test_a_pointwise_verdict_is_kept_for_the_next_image() -> None:
    head = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    shape = (20, 24)
    feats = make_features(shape, 1)
    rows = HeadChecks(head, feats, shape).row_head()
    assert rows is not None
    kept = HeadChecks(head, feats, shape)
    assert kept.known == Verdict(pointwise=True) and kept.row_head() is not None


def test_probe_window_and_boxes_lie_inside_and_reach_both_ends() -> None:
    assert probe_window((40, 5)) == (slice(16, 25), slice(0, 5))
    boxes = [(lo.tolist(), hi.tolist()) for lo, hi in probe_boxes((40, 9))]
    # sides: 40 // 8 = 5 (odd), 9 // 8 = 1; the inner box starts at a third of each axis
    assert boxes == [([13, 3], [18, 4]), ([0, 0], [5, 1]), ([35, 8], [40, 9])]
    for lo, hi in probe_boxes((3, 2)):  # a tiny image: every box inside it
        assert (np.asarray(lo) >= 0).all() and (np.asarray(hi) <= (3, 2)).all()
