"""The crop mode's loop evaluation: clusters of marks, anchors joining them, batched crops.

Every evaluation is compared with the head over the whole image (``head(*features)``), the
reference the crop path must reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medrefine.engine.head.crop import FeatureGrid
from medrefine.engine.head.crop_eval import BatchedCrops, Clusters, batch_agrees
from medrefine.engine.head.runner import HeadRunner

from .crop_heads import Decoder, make_features


class BatchMixing(Decoder):
    """A decoder that subtracts the mean over the batch: one crop alone is exact, a batch not."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        out = super().forward(f)
        return out - out.mean(0, keepdim=True) + out


def _whole_at(head: nn.Module, feats: tuple[torch.Tensor, ...], flat: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        out = head(*feats)
    return out.reshape(out.shape[1], -1)[:, torch.from_numpy(flat)].T


def _scribbles(
    shape: tuple[int, ...], starts: Sequence[tuple[int, ...]], length: int
) -> np.ndarray:
    """Flat pixels of straight scribbles along the last axis, one per start."""
    rows = []
    for s in starts:
        for d in range(length):
            rows.append((*s[:-1], s[-1] + d))
    return np.ravel_multi_index(tuple(np.asarray(rows).T), shape)


def test_batched_crops_equal_separate_crops_and_the_whole_image() -> None:
    torch.manual_seed(0)
    shape = (96, 96)
    head, feats = Decoder(2).eval(), make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    assert runner.grid is not None
    # five scribbles of one size on aligned positions, far apart: crops of one shape
    starts = [(10, 9), (10, 60), (50, 9), (50, 60), (82, 33)]
    flat = _scribbles(shape, starts, 6)
    coords = np.stack(np.unravel_index(flat, shape), 1)
    groups = list(np.arange(flat.size).reshape(5, 6))  # one crop per scribble
    batched = BatchedCrops(head, feats, runner.grid, coords, groups, batch=True)
    separate = BatchedCrops(head, feats, runner.grid, coords, groups, batch=False)
    assert batched.calls < separate.calls == 5
    with torch.no_grad():
        a, b = batched(), separate()
    want = _whole_at(head, feats, flat)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a, want, rtol=1e-5, atol=1e-5)


def test_batched_crop_gradients_equal_the_whole_image_gradients() -> None:
    torch.manual_seed(0)
    shape = (32, 48, 40)
    head, feats = Decoder(3).eval(), make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    assert runner.mode == "crop" and runner.grid is not None
    flat = _scribbles(shape, [(4, 5, 3), (4, 5, 27), (26, 40, 3)], 8)
    coords = np.stack(np.unravel_index(flat, shape), 1)
    groups = list(np.arange(flat.size).reshape(3, 8))  # one crop per scribble
    crops = BatchedCrops(head, feats, runner.grid, coords, groups)
    assert crops.calls == 2  # the first two crops have one shape
    grads = []
    for path in ("crops", "whole"):
        head.zero_grad()
        logits = crops() if path == "crops" else _whole_with_grad(head, feats, flat)
        logits.pow(2).sum().backward()  # type: ignore[no-untyped-call]
        grads.append([p.grad.clone() for p in head.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _whole_with_grad(
    head: nn.Module, feats: tuple[torch.Tensor, ...], flat: np.ndarray
) -> torch.Tensor:
    out = head(*feats)
    return out.reshape(out.shape[1], -1)[:, torch.from_numpy(flat)].T


def test_a_head_that_mixes_the_batch_is_not_batched_and_stays_exact() -> None:
    torch.manual_seed(0)
    shape = (96, 96)
    head, feats = BatchMixing(2).eval(), make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    assert runner.mode == "crop" and runner.grid is not None
    plain = Decoder(2).eval()
    with torch.no_grad():
        whole, plain_whole = head(*feats), plain(*feats)
    inner = (np.asarray([30, 30]), np.asarray([41, 41]))
    assert not batch_agrees(head, feats, runner.grid, whole, inner, 1e-5)
    assert batch_agrees(plain, feats, runner.grid, plain_whole, inner, 1e-5)
    wide = (256, 256)
    runner = HeadRunner(head, make_features(wide, 4), wide)
    assert runner.mode == "crop" and runner.grid is not None
    flat = _scribbles(wide, [(10, 9), (10, 200), (200, 9)], 6)  # three crops of one shape
    coords = np.stack(np.unravel_index(flat, wide), 1)
    assert len(runner.grid.groups(coords)) == 3
    got = runner.evaluator(torch.from_numpy(flat))()
    feats = make_features(wide, 4)
    torch.testing.assert_close(got, _whole_at(head, feats, flat), rtol=1e-5, atol=1e-5)


def test_anchors_join_the_cluster_whose_box_holds_them_and_others_get_their_own() -> None:
    grid = FeatureGrid((128, 128), ((32, 32),), ((4, 4),), ((1, 1),))
    shape = (128, 128)
    marks = _scribbles(shape, [(10, 10), (100, 100)], 4)
    clusters = Clusters.of(grid, marks, shape)
    assert len(clusters.members) == 2
    region = clusters.region(shape)
    assert np.isin(marks, region).all()
    rng = np.random.default_rng(0)
    anchors = rng.choice(region, 40, replace=False)
    far = np.ravel_multi_index(([60, 61], [20, 21]), shape)  # outside both boxes
    index = np.concatenate([marks, anchors, far])
    groups = clusters.assign(grid, index, shape)
    assert len(groups) == 3
    assert sorted(np.concatenate(groups).tolist()) == list(range(index.size))
    for g, m in zip(groups[:2], clusters.members, strict=True):
        assert set(m.tolist()) <= set(g.tolist())  # the marks stay in their own cluster
    assert sorted(groups[2].tolist()) == [index.size - 2, index.size - 1]
    # the anchors cost nothing: each crop is the window of its marks alone
    coords = np.stack(np.unravel_index(index, shape), 1)
    for g, m in zip(groups[:2], clusters.members, strict=True):
        alone = grid.window(coords[m].min(0), coords[m].max(0) + 1)
        both = grid.window(coords[g].min(0), coords[g].max(0) + 1)
        assert (alone[0] == both[0]).all() and alone[1] == both[1]
    # an index that does not start with the marks is clustered afresh
    assert len(clusters.assign(grid, far, shape)) == 1


def test_runner_evaluates_marks_and_anchors_in_the_marks_crops() -> None:
    torch.manual_seed(0)
    shape = (40, 64, 64)
    head, feats = Decoder(3).eval(), make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    marks = _scribbles(shape, [(5, 5, 5), (5, 40, 44), (30, 20, 30)], 10)
    region = runner.anchor_region(marks)
    assert region is not None
    anchors = np.random.default_rng(0).choice(region, 300, replace=False)
    index = np.concatenate([marks, anchors])
    got = runner.evaluator(torch.from_numpy(index))()
    torch.testing.assert_close(got, _whole_at(head, feats, index), rtol=1e-5, atol=1e-5)


def test_a_chain_of_neighbouring_marks_is_not_one_box() -> None:
    """Scribbles in a diagonal chain of touching tiles: crops merged from single tiles cost
    less than the one box around them all (the cost :meth:`FeatureGrid.groups` minimises)."""
    grid = FeatureGrid((128, 128, 128), ((32, 32, 32),), ((4, 4, 4),), ((1, 1, 1),))
    shape = grid.out_shape
    starts = [(8 * k + 2, 8 * k + 2, 8 * k + 1) for k in range(10)]
    coords = np.stack(np.unravel_index(_scribbles(shape, starts, 5), shape), 1)
    groups = grid.groups(coords)

    def cost(part: np.ndarray) -> int:
        start, stop = grid.extent(part.min(0), part.max(0) + 1)
        return int(np.prod(stop - start))

    assert len(groups) > 1
    assert sum(cost(coords[g]) for g in groups) < cost(coords) / 4
