"""Trimmed stages of a cropped head: less computed, the same logits and gradients.

The reference is always the head over the whole image (``head(*features)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import fx, nn
from torch.utils.hooks import RemovableHandle

from medrefine.engine.head import crop_stages
from medrefine.engine.head.crop_eval import BatchedCrops
from medrefine.engine.head.crop_stages import Stages
from medrefine.engine.head.runner import HeadRunner, channels_last
from medrefine.engine.head.verdict import VERDICTS

from .crop_heads import Decoder, make_features


class Skip(nn.Module):
    """Features at 1/2 and full resolution joined by a concatenation, then a 3x3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 2, 2, 2)
        self.mix = nn.Conv2d(4, 3, 3, padding=1)
        self.out = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, f2: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.mix(torch.cat([self.up(f2), f1], 1))))


def _scribble(shape: tuple[int, ...], start: tuple[int, ...], length: int) -> np.ndarray:
    """Pixels ``(N, ndim)`` of a straight scribble along the last axis."""
    return np.asarray([(*start[:-1], start[-1] + d) for d in range(length)])


def _inputs_seen(module: nn.Module) -> tuple[list[tuple[int, ...]], RemovableHandle]:
    """Shapes of the first input of each call of ``module``, and the hook's handle."""
    seen: list[tuple[int, ...]] = []

    def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(tuple(args[0].shape))

    return seen, module.register_forward_pre_hook(hook)


def _traced_runner(
    shape: tuple[int, ...],
) -> tuple[fx.GraphModule, tuple[torch.Tensor, ...], HeadRunner]:
    """The traced decoder over features at 1/4 of ``shape`` (seeded) and its runner, which
    must have taken the crop mode with trimmed stages."""
    torch.manual_seed(0)
    head = fx.symbolic_trace(Decoder(len(shape)).eval())
    feats = make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    assert runner.grid is not None and runner._stages is not None
    return head, feats, runner


@pytest.mark.parametrize("dims", [2, 3])
def test_trimmed_stages_compute_less_and_give_the_whole_image_logits(dims: int) -> None:
    torch.manual_seed(0)
    shape = (48, 56, 64)[-dims:]
    head = fx.symbolic_trace(Decoder(dims).eval())
    feats = make_features(shape, 4)
    runner = HeadRunner(head, feats, shape)
    assert runner.mode == "crop" and runner.grid is not None
    stages = Stages.measure(head, Stages.capture(head, feats)[1], shape)
    assert stages is not None
    assert [name for name, _ in stages.cuts] == ["up1", "conv"]  # layers with weights
    pts = _scribble(shape, tuple(s // 2 + 1 for s in shape), 5)  # one pixel thick
    flat = np.ravel_multi_index(tuple(pts.T), shape)
    conv = head.get_submodule("conv")
    logits, sizes = [], []
    for use in (None, stages):
        seen, handle = _inputs_seen(conv)
        crops = BatchedCrops(head, feats, runner.grid, pts, [np.arange(len(pts))], True, use)
        with torch.no_grad():
            logits.append(crops())
        handle.remove()
        sizes.append(int(np.prod(seen[0][2:])))
    assert sizes[1] * 2 <= sizes[0]  # the 3x3 convolution sees at most half the pixels
    with torch.no_grad():
        whole = head(*feats)
    want = whole.reshape(whole.shape[1], -1)[:, torch.from_numpy(flat)].T
    for got in logits:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_trimmed_stages_give_the_whole_image_gradients() -> None:
    shape = (32, 40, 36)
    head, feats, runner = _traced_runner(shape)
    pts = np.concatenate([_scribble(shape, (5, 6, 3), 7), _scribble(shape, (25, 30, 20), 9)])
    flat = np.ravel_multi_index(tuple(pts.T), shape)
    grads = []
    for path in ("stages", "whole"):
        head.zero_grad()
        if path == "stages":
            logits = runner.evaluator(torch.from_numpy(flat))()
        else:
            out = head(*feats)
            logits = out.reshape(out.shape[1], -1)[:, torch.from_numpy(flat)].T
        logits.pow(2).sum().backward()  # type: ignore[no-untyped-call]
        grads.append([p.grad.clone() for p in head.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) == 6
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_single_sample_3d_convolution_runs_as_a_pair_and_transposed_ones_alone() -> None:
    shape = (32, 32, 32)
    head, _, runner = _traced_runner(shape)
    conv_seen, h1 = _inputs_seen(head.get_submodule("conv"))
    up_seen, h2 = _inputs_seen(head.get_submodule("up2"))
    flat = np.ravel_multi_index(tuple(_scribble(shape, (10, 12, 8), 6).T), shape)
    runner.evaluator(torch.from_numpy(flat))()
    h1.remove()
    h2.remove()
    assert conv_seen[-1][0] == 2 and up_seen[-1][0] == 1


def test_only_nodes_that_everything_later_reads_through_are_cuts() -> None:
    torch.manual_seed(0)
    shape = (40, 48)
    head = fx.symbolic_trace(Skip().eval())
    gen = torch.Generator().manual_seed(0)
    feats = (
        channels_last(torch.randn((1, 4, 20, 24), generator=gen)),
        channels_last(torch.randn((1, 2, 40, 48), generator=gen)),
    )
    values = Stages.capture(head, feats)[1]
    assert set(values) == {"mix"}  # "up": the full-resolution feature is still to be read
    stages = Stages.measure(head, values, shape)
    assert stages is not None and [name for name, _ in stages.cuts] == ["mix"]
    assert Stages.capture(Skip().eval(), feats)[1] == {}  # not a torch.fx module
    assert Stages.measure(Skip().eval(), values, shape) is None


@pytest.mark.usefixtures("fresh_verdicts")
def test_stages_that_miss_a_margin_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    shape = (40, 44)
    head = fx.symbolic_trace(Decoder(2).eval())
    feats = make_features(shape, 4)
    measured = Stages.measure(head, Stages.capture(head, feats)[1], shape)
    assert measured is not None
    wrong = dataclasses.replace(
        measured,
        cuts=tuple(
            (name, dataclasses.replace(grid, margins=((0, 0),))) for name, grid in measured.cuts
        ),
    )
    monkeypatch.setattr(crop_stages.Stages, "measure", classmethod(lambda *_: wrong))
    runner = HeadRunner(head, feats, shape)
    assert runner.mode == "crop" and runner._stages is None
    monkeypatch.setattr(crop_stages.Stages, "measure", classmethod(lambda *_: measured))
    assert HeadRunner(head, feats, shape)._stages is None  # the kept verdict: no stages
    VERDICTS.clear()
    assert HeadRunner(head, feats, shape)._stages is measured


def test_a_box_is_predicted_through_the_stages() -> None:
    shape = (40, 48, 44)
    head, feats, runner = _traced_runner(shape)
    lo, hi = np.asarray([9, 13, 2]), np.asarray([30, 31, 17])
    seen, handle = _inputs_seen(head.get_submodule("conv"))
    got = runner.predict_box(lo, hi)
    handle.remove()
    with torch.no_grad():
        whole = head(*feats)[0]
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    torch.testing.assert_close(got, whole[(slice(None), *box)], rtol=1e-5, atol=1e-5)
    assert runner.grid is not None
    windows = runner.grid.window(lo, hi)[1]
    crop = int(np.prod([2 * (w.stop - w.start) for w in windows[0]]))  # conv's untrimmed input
    assert int(np.prod(seen[0][2:])) < crop
