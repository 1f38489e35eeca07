"""Gates: distances, the spatial gate, the adaptive reach, and the plan a refine follows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.config import GateConfig, LoopConfig, MarksConfig, RefineConfig
from medrefine.engine.gate.plan import (
    FeatureGate,
    adaptive_sigma,
    enough_evidence,
    kmeans,
    plan_gate,
    spatial_gate,
)
from medrefine.engine.refine.constraints import build
from medrefine.types import Click, Scribble


def test_spatial_gate_is_one_on_marks_and_decays_with_distance() -> None:
    shape = (40, 50)
    index = np.ravel_multi_index(([20], [25]), shape)
    g = spatial_gate(shape, index, sigma=3.0).reshape(shape).numpy()
    assert g[20, 25] == pytest.approx(1.0)
    assert g[20, 28] == pytest.approx(np.exp(-9 / 18), rel=1e-5)
    assert g[0, 0] == 0.0  # beyond 4 sigma: outside the window


def test_adaptive_reach_is_local_near_a_boundary_and_infinite_for_a_missing_class() -> None:
    own = np.zeros((30, 30), np.int64)
    own[10:20, 10:20] = 1  # the network's object
    boundary = np.ravel_multi_index(([10, 10], [9, 8]), own.shape)  # 1 and 2 px outside it
    labels = np.array([1, 1])
    assert adaptive_sigma(own, boundary, labels, floor=4, factor=3, cap=20) == 4.5
    assert adaptive_sigma(own, boundary, labels, floor=6, factor=3, cap=20) == 6
    assert adaptive_sigma(own, boundary, np.array([2, 2]), 4, 3, 20) == np.inf  # never predicted
    far = np.ravel_multi_index(([2], [29]), own.shape)  # 10 px from the object, cap 5
    assert adaptive_sigma(own, far, np.array([1]), 4, 3, cap=5) == np.inf


def _with(config: RefineConfig, **gate: object) -> RefineConfig:
    """``config`` with these gate settings changed."""
    return replace(config, gate=replace(config.gate, **gate))


def _plan(
    config: RefineConfig,
    own: np.ndarray,
    marks: list,
    min_reach: float = 0.0,
    image: np.ndarray | None = None,
):
    base = torch.from_numpy(np.stack([(own == 0), (own == 1)]).astype(np.float32))
    cons = build(marks, own.shape, MarksConfig())
    fail = lambda: pytest.fail("no feature gate")  # noqa: E731
    return plan_gate(config, base, own, cons, fail, min_reach, image)


def test_plan_local_global_and_kept_reach() -> None:
    own = np.zeros((40, 40), np.int64)
    own[10:20, 10:20] = 1
    cfg = RefineConfig(
        gate=GateConfig(
            kind="adaptive",
            sigma=2.0,
            factor=3.0,
            local_width=30.0,
            evidence=0,
            widest=float("inf"),
        )
    )
    local = _plan(cfg, own, [Click(1, (10, 9), 0)])
    assert not local.is_global and local.reach == 3.0
    assert float(local.weights.reshape(40, 40)[10, 9]) == pytest.approx(1.0)
    assert float(local.weights.reshape(40, 40)[35, 35]) == 0.0
    # A class the network never predicts: the first far reading opens the gate to gate_global,
    # the next doubles it, the one after (gate_steps = 2) makes the correction global.
    own0 = np.zeros_like(own)
    far = [Click(1, (5, 5), 0)]
    first = _plan(cfg, own0, far)
    assert not first.is_global and first.reach == 30.0
    assert _plan(cfg, own0, far, min_reach=30.0).reach == 60.0
    assert _plan(cfg, own0, far, min_reach=60.0).is_global
    assert _plan(_with(cfg, steps=1), own0, far, min_reach=30.0).is_global
    assert _plan(_with(cfg, steps=0), own0, far).is_global
    # gate_widest caps every step: the ladder stops there and never goes global.
    capped = _with(cfg, widest=40.0)
    assert _plan(capped, own0, far).reach == 30.0
    assert _plan(capped, own0, far, min_reach=30.0).reach == 40.0
    assert _plan(capped, own0, far, min_reach=40.0).reach == 40.0
    assert _plan(_with(capped, steps=0), own0, far).reach == 40.0
    assert RefineConfig.shifted().gate.widest == float("inf")
    assert _plan(RefineConfig(), own0, far, min_reach=24.0).reach == 24.0  # the default
    # A near reading after a far one keeps the wider gate.
    assert _plan(cfg, own, [Click(1, (10, 9), 0)], min_reach=60.0).reach == 60.0
    # The plan names the contradicted marks.
    assert first.wrong_index.tolist() == [5 * 40 + 5] and first.wrong_labels.tolist() == [1]
    # Once global, a later local mark does not take it back.
    assert _plan(cfg, own, [Click(1, (10, 9), 0)], min_reach=float("inf")).is_global
    # Marks the network already honours leave its prediction alone.
    agreed = _plan(cfg, own, [Click(1, (15, 15), 0)])
    assert float(agreed.weights.abs().sum()) == 0.0
    assert _plan(RefineConfig(gate=GateConfig(kind="none")), own, [Click(1, (10, 9), 0)]).is_global


def test_apply_blends_adapted_into_base_by_the_gate() -> None:
    own = np.zeros((10, 10), np.int64)
    plan = _plan(
        RefineConfig(gate=GateConfig(kind="spatial", sigma=1.0)), own, [Click(1, (5, 5), 0)]
    )
    adapted = torch.full((2, 10, 10), 7.0)
    out = plan.apply(adapted)
    assert float(out[0, 5, 5]) == pytest.approx(7.0) and float(out[0, 0, 0]) == pytest.approx(1.0)


def test_kmeans_and_feature_gate_find_look_alikes() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(50, 3) * 0.1, torch.randn(50, 3) * 0.1 + 5])
    centres = kmeans(x, 2)
    assert sorted(round(float(c.mean())) for c in centres) == [0, 5]
    rows = torch.cat([torch.zeros(20, 4), torch.ones(20, 4) * 3]) + torch.randn(40, 4) * 0.05
    gate = FeatureGate((rows,))(np.array([0, 1]), tau=0.5, prototypes=2)
    assert gate[:20].min() > 0.5 and gate[20:].max() < 0.01


def test_feature_similarity_at_pixels_matches_the_full_gate() -> None:
    torch.manual_seed(1)
    rows = torch.cat([torch.zeros(30, 4), torch.ones(30, 4) * 3]) + torch.randn(60, 4) * 0.05
    fg = FeatureGate((rows,))
    marks = np.array([0, 1, 2])
    full = fg(marks, tau=0.5, prototypes=2)
    pixels = np.array([5, 40, 59])
    at = fg.similarity(pixels, fg.prototypes(marks, 2), tau=0.5)
    torch.testing.assert_close(at, full[torch.from_numpy(pixels)])
    assert float(at[0]) > 0.5 and float(at[1:].max()) < 0.01


def test_a_few_pixels_of_one_class_never_open_a_wide_gate() -> None:
    own = np.zeros((60, 60), np.int64)  # the network never predicts class 1
    cfg = RefineConfig(
        gate=GateConfig(
            sigma=2.0,
            factor=3.0,
            local_width=30.0,
            anchor_reach=12.0,
            fallback=7.0,
            widest=float("inf"),
        )
    )
    assert not enough_evidence(np.array([1, 1, 1]), 2)
    assert enough_evidence(np.array([0, 0, 1, 1]), 2)
    click = _plan(cfg, own, [Click(1, (5, 5), 0)], min_reach=30.0)
    assert not click.is_global and click.reach == 30.0  # the session's kept reach still holds
    assert _plan(cfg, own, [Click(1, (5, 5), 0)]).reach == 7.0  # the fallback width
    # Two classes contradicted with enough pixels each: the same far reading goes wide.
    own[:, 30:] = 1
    marks = [Scribble(1, [(5, 2), (5, 12)], 0), Scribble(0, [(50, 40), (50, 50)], 0)]
    wide = _plan(_with(cfg, evidence=5), own, marks)
    assert wide.reach is not None and wide.reach > 12.0


def _edge_image() -> tuple[np.ndarray, np.ndarray]:
    """A bright 10x10 square on a dark 40x40 image, and the network's mask: the square minus its
    two outer rings (an under-segmented boundary)."""
    image = np.zeros((1, 40, 40), np.float32)
    image[0, 10:20, 10:20] = 1.0
    own = np.zeros((40, 40), np.int64)
    own[12:18, 12:18] = 1
    return image, own


def test_a_local_gate_follows_the_edges_of_the_image() -> None:
    image = np.zeros((1, 40, 40), np.float32)
    image[0, 6:34, 6:34] = 1.0  # a bright square with its edge at row 6
    index = np.ravel_multi_index(([11], [20]), (40, 40))  # inside, 5 px below the edge
    plain = spatial_gate((40, 40), index, 4.0).reshape(40, 40)
    edged = spatial_gate((40, 40), index, 4.0, image, edges=1.0).reshape(40, 40)
    assert float(edged[11, 20]) == pytest.approx(1.0)
    # Inside the square the two agree; across its edge the geodesic gate falls away.
    assert float(edged[15, 20]) == pytest.approx(float(plain[15, 20]), abs=0.02)
    assert float(plain[3, 20]) > 0.1 and float(edged[3, 20]) < 0.5 * float(plain[3, 20])
    # Without edges to cross it is the Euclidean gate.
    same = spatial_gate((40, 40), index, 4.0, np.zeros_like(image), edges=1.0).reshape(40, 40)
    assert float(same[3, 20]) == pytest.approx(float(plain[3, 20]), abs=0.02)


def test_the_plan_follows_edges_only_while_the_gate_is_local() -> None:
    image, own = _edge_image()
    cfg = RefineConfig(gate=GateConfig(sigma=2.0, factor=3.0, local_width=12.0, evidence=0))
    ring = [Scribble(1, [(10, 12), (10, 17)], 0)]  # on the missed outer ring, 2 px from own
    local = _plan(cfg, own, ring, image=image).weights.reshape(40, 40)
    euclid = _plan(_with(cfg, edges=0.0), own, ring, image=image).weights.reshape(40, 40)
    assert float(local[7, 14]) < 0.5 * float(euclid[7, 14])  # outside the square, above the mark
    # A far reading widens the gate step by step; those steps spread past edges (Euclidean).
    own0 = np.zeros_like(own)
    far_edged = _plan(cfg, own0, ring, image=image)
    far_plain = _plan(_with(cfg, edges=0.0), own0, ring, image=image)
    assert far_edged.reach == 12.0
    torch.testing.assert_close(far_edged.weights, far_plain.weights)


def test_gate_distances_follow_the_spacing_of_an_anisotropic_volume() -> None:
    shape = (21, 21, 21)
    index = np.ravel_multi_index(([10], [10], [10]), shape)
    iso = spatial_gate(shape, index, 3.0).reshape(shape).numpy()
    aniso = spatial_gate(shape, index, 3.0, spacing=(3.0, 1.0, 1.0)).reshape(shape).numpy()
    # In plane the two agree; one slice away is 3 pixels away when slices are 3 times thicker.
    assert aniso[10, 10, 13] == pytest.approx(iso[10, 10, 13])
    assert iso[11, 10, 10] == pytest.approx(np.exp(-1 / 18), rel=1e-5)
    assert aniso[11, 10, 10] == pytest.approx(np.exp(-9 / 18), rel=1e-5)
    assert aniso[11, 10, 10] == pytest.approx(iso[10, 10, 13], rel=1e-5)
    assert aniso[15, 10, 10] == 0.0 and iso[15, 10, 10] > 0.0  # 15 px: outside the window
    # The edge-following (geodesic) gate reads the same spacing.
    flat = np.zeros((1, *shape), np.float32)
    geo = spatial_gate(shape, index, 3.0, flat, 1.0, (3.0, 1.0, 1.0)).reshape(shape).numpy()
    assert geo[11, 10, 10] == pytest.approx(np.exp(-9 / 18), rel=1e-3)
    assert geo[10, 10, 11] == pytest.approx(np.exp(-1 / 18), rel=1e-3)


def test_adaptive_width_measures_distances_with_the_spacing() -> None:
    mask = np.zeros((20, 20, 20), np.int64)
    mask[12:, :, :] = 1  # the network's structure starts 2 slices below the mark
    index = np.ravel_multi_index(([10], [10], [10]), mask.shape)
    labels = np.array([1])
    assert adaptive_sigma(mask, index, labels, 1.0, 3.0, 30.0) == 6.0
    assert adaptive_sigma(mask, index, labels, 1.0, 3.0, 30.0, (2.5, 1.0, 1.0)) == 15.0


def test_a_session_keeps_the_volumes_spacing_for_its_gate(model3d, case3d) -> None:
    image, _ = case3d
    cfg = mr.RefineConfig(
        loop=LoopConfig(max_iterations=300),
        marks=MarksConfig(write=False),
        gate=GateConfig(kind="spatial", sigma=2.0),
    )
    changed = {}
    for spacing in (None, (1.0, 1.0, 1.0), (3.0, 1.0, 1.0)):
        session = mr.Session(model3d, cfg)
        before = session.set_image(mr.Volume(image, spacing=spacing))
        session.add(mr.Scribble(2, [(9, 4, 8), (9, 16, 8)], radius=1))
        changed[spacing] = np.nonzero(session.refine().mask != before)
    iso, same, thick = changed[None], changed[(1.0, 1.0, 1.0)], changed[(3.0, 1.0, 1.0)]
    assert all(np.array_equal(a, b) for a, b in zip(iso, same, strict=True))

    # Slices 3 pixels thick: two slices from the scribble are 6 pixels away, where the gate
    # (sigma 2 px) is 1 % open, against 61 % on the isotropic volume; the window ends 3 slices
    # out. In plane the gate reaches as far as on the isotropic volume.
    def beyond_one_slice(changed: tuple[np.ndarray, ...]) -> int:
        return int((np.abs(changed[0] - 9) >= 2).sum())

    assert set(thick[0].tolist()) <= set(range(6, 13))
    assert 4 * beyond_one_slice(thick) < beyond_one_slice(iso)
    assert np.ptp(thick[2]) >= np.ptp(iso[2]) - 1


@pytest.mark.parametrize("rows", [1 << 16, 7])  # one call for the box, or many small chunks
def test_a_pointwise_head_is_evaluated_on_the_gate_s_box_only(rows: int, monkeypatch) -> None:
    from medrefine.engine.gate.plan import GatePlan
    from medrefine.engine.head import runner as head_module
    from medrefine.engine.head.runner import HeadRunner, channels_last

    monkeypatch.setattr(head_module, "_ROWS_PER_CHUNK", rows)
    torch.manual_seed(0)
    shape = (40, 36)
    head = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1), torch.nn.ReLU(), torch.nn.Conv2d(6, 3, 1))
    runner = HeadRunner(head.eval(), (channels_last(torch.randn(1, 4, *shape)),), shape)
    assert runner.mode == "pointwise"
    base = torch.randn(3, *shape)
    weights = spatial_gate(shape, np.ravel_multi_index(([12], [20]), shape), sigma=2.0)
    plan = GatePlan(base, weights.reshape(1, *shape))
    want = plan.apply(runner.predict())
    calls: list[int] = []
    row_head = runner._rows
    assert row_head is not None
    monkeypatch.setattr(runner, "_rows", lambda *x: calls.append(x[0].shape[0]) or row_head(*x))
    got = plan.refined(runner)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert 0 < sum(calls) <= 17 * 17  # the 4-sigma window around the mark, not 40 x 36
    assert max(calls) <= rows
    assert torch.equal(got[:, :2], base[:, :2])
