"""The runner's checks run once per head and shape: a second image of the shape takes their
verdict; another shape, other weights, another structure (a class added) are checked again."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import fx, nn

import medrefine as mr
from medrefine.engine.head import checks as head_checks
from medrefine.engine.head import crop_stages
from medrefine.engine.head.runner import HeadRunner, channels_last, last_layer, resize_outputs
from medrefine.engine.head.verdict import VERDICTS, structure, verdict_key
from medrefine_lab.benchmarks.heads import deeplab_net

from .crop_heads import Decoder

Features = tuple[torch.Tensor, ...]


pytestmark = pytest.mark.usefixtures("fresh_verdicts")


class Checks:
    """Counts the runner's numerical checks: margins measured (the first crop-mode check,
    then one per cut of the stages) and pointwise rewrites verified."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.margins = self.rows = 0
        measure = head_checks.measure_margins
        verify = head_checks.verified_row_head

        def counted_measure(*args: Any, **kwargs: Any) -> Any:
            self.margins += 1
            return measure(*args, **kwargs)

        def counted_verify(*args: Any) -> Any:
            self.rows += 1
            return verify(*args)

        monkeypatch.setattr(head_checks, "measure_margins", counted_measure)
        monkeypatch.setattr(crop_stages, "measure_margins", counted_measure)  # each cut's
        monkeypatch.setattr(head_checks, "verified_row_head", counted_verify)

    def seen(self) -> tuple[int, int]:
        """(margins, rows) since the last call."""
        out = (self.margins, self.rows)
        self.margins = self.rows = 0
        return out


@pytest.fixture()
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    return Checks(monkeypatch)


def _decoder() -> fx.GraphModule:
    torch.manual_seed(0)
    return fx.symbolic_trace(Decoder(2).eval())


def _features(shape: tuple[int, ...], seed: int) -> Features:
    gen = torch.Generator().manual_seed(seed)
    size = tuple(-(-s // 4) for s in shape)
    return (channels_last(torch.randn((1, 6, *size), generator=gen)),)


def _same_runner(a: HeadRunner, b: HeadRunner, index: torch.Tensor) -> None:
    """Same mode, grid, batching and trims, and bit-identical logits and loop evaluation."""
    assert (a.mode, a.grid, a._batch) == (b.mode, b.grid, b._batch)
    assert (a._stages is None) == (b._stages is None)
    if a._stages is not None and b._stages is not None:
        assert a._stages.cuts == b._stages.cuts and b._stages.head is b.head
    assert torch.equal(a.predict(), b.predict())
    with torch.no_grad():
        assert torch.equal(a.evaluator(index)(), b.evaluator(index)())


def test_a_second_image_of_the_shape_takes_the_verdict(checks: Checks) -> None:
    head, shape = _decoder(), (40, 44)
    first = HeadRunner(copy.deepcopy(head), _features(shape, 0), shape)
    assert first.mode == "crop" and first._stages is not None
    assert checks.seen()[0] >= 2  # the features' margins, then each cut's
    feats = _features(shape, 1)  # another image: other values, same shape
    second = HeadRunner(copy.deepcopy(head), feats, shape)
    assert checks.seen() == (0, 0)
    VERDICTS.clear()
    checked = HeadRunner(copy.deepcopy(head), feats, shape)
    assert checks.seen()[0] >= 2
    index = torch.from_numpy(np.ravel_multi_index(([3, 4, 30, 31], [5, 5, 40, 2]), shape))
    _same_runner(checked, second, index)


def test_another_shape_dtype_or_training_mode_is_checked_again(checks: Checks) -> None:
    head, shape = _decoder(), (40, 44)
    HeadRunner(copy.deepcopy(head), _features(shape, 0), shape)
    assert checks.seen()[0] >= 1
    other = (48, 44)
    assert HeadRunner(copy.deepcopy(head), _features(other, 0), other).mode == "crop"
    assert checks.seen()[0] >= 1
    half = tuple(f.half() for f in _features(shape, 0))
    HeadRunner(copy.deepcopy(head), half, shape)
    assert checks.seen()[0] >= 1
    HeadRunner(copy.deepcopy(head).train(), _features(shape, 0), shape)
    assert checks.seen()[0] >= 1
    HeadRunner(copy.deepcopy(head), _features(shape, 2), shape)  # each of those was kept
    HeadRunner(copy.deepcopy(head), _features(other, 2), other)
    assert checks.seen() == (0, 0)


def _add_class(head: nn.Module) -> nn.Module:
    extended = copy.deepcopy(head)
    resize_outputs(last_layer(extended, 3), 4)
    return extended


def _perturbed(head: nn.Module) -> nn.Module:
    changed = copy.deepcopy(head)
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    return changed


@pytest.mark.parametrize("change", [_add_class, _perturbed], ids=["add_class", "weights"])
def test_a_changed_head_is_checked_again(
    checks: Checks, change: Callable[[nn.Module], nn.Module]
) -> None:
    """A class added (another weight shape) or other weights: the verdict is not reused."""
    head = nn.Sequential(
        nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=4), nn.Conv2d(5, 3, 1)
    ).eval()
    shape = (40, 44)
    HeadRunner(copy.deepcopy(head), _features(shape, 0), shape)
    assert checks.seen()[0] == 1
    changed = change(head)
    assert HeadRunner(changed, _features(shape, 1), shape).mode == "crop"
    assert checks.seen()[0] == 1
    HeadRunner(copy.deepcopy(changed), _features(shape, 2), shape)
    assert checks.seen() == (0, 0)


def test_a_pointwise_head_is_verified_once_per_shape(checks: Checks) -> None:
    head = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    gen = torch.Generator().manual_seed(0)

    def feats(shape: tuple[int, ...]) -> Features:
        return (channels_last(torch.randn((1, 6, *shape), generator=gen)),)

    modes = [
        HeadRunner(copy.deepcopy(head), feats(s), s).mode for s in [(20, 24), (20, 24), (21, 24)]
    ]
    assert modes == ["pointwise"] * 3
    assert checks.seen() == (0, 2)  # not for the second image of 20x24


def test_structure_is_settings_and_shapes_not_values() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1)
    wider = nn.Conv2d(2, 3, 3, padding=2)
    wider.load_state_dict(conv.state_dict())
    assert structure(copy.deepcopy(conv)) == structure(conv)
    assert structure(wider) != structure(conv)
    assert structure(_perturbed(conv)) == structure(conv)
    feats, shape = (torch.zeros(1, 2, 8, 8),), (8, 8)
    assert verdict_key(_perturbed(conv), feats, shape) != verdict_key(conv, feats, shape)
    assert verdict_key(copy.deepcopy(conv), feats, shape) == verdict_key(conv, feats, shape)


def _model() -> mr.SplitModel:
    torch.manual_seed(0)
    return mr.SplitModel.from_module(deeplab_net(2, width=8).eval(), ["head"], 2, 2)


def test_sessions_take_the_verdict_after_refine_and_add_class(checks: Checks) -> None:
    """The second image's runner takes the verdict although refine and add_class changed the
    first image's head (they change the session's copy; each image starts from the model's),
    and the session's masks are those of a session that checked."""
    model, shape = _model(), (64, 56)
    rng = np.random.default_rng(0)
    images = [rng.normal(size=shape).astype(np.float32) for _ in range(2)]
    session = mr.Session(model, mr.RefineConfig().with_overrides("loop.max_iterations=3"))
    session.set_image(images[0])
    assert session._require_image().runner.mode == "crop"
    assert checks.seen()[0] >= 1
    session.add(mr.Click(label=1, point=(20, 20), radius=2))
    session.refine()
    session.add_class("lesion")
    got = session.set_image(images[1])
    assert checks.seen() == (0, 0)
    session.add(mr.Click(label=1, point=(30, 40), radius=2))
    got_refined = session.refine().mask
    VERDICTS.clear()
    checked = mr.Session(model, mr.RefineConfig().with_overrides("loop.max_iterations=3"))
    want = checked.set_image(images[1])
    assert checks.seen()[0] >= 1
    checked.add(mr.Click(label=1, point=(30, 40), radius=2))
    assert np.array_equal(got, want)
    assert np.array_equal(got_refined, checked.refine().mask)
