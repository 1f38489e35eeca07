"""``medrefine bench set-image``: both set_image paths timed on the same images, small sizes."""

from __future__ import annotations

import pytest
import torch

from medrefine.cli import build_parser
from medrefine.engine.head import checks as head_checks
from medrefine_lab.benchmarks import set_image


def test_measure_times_the_checked_and_the_kept_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    measure = head_checks.measure_margins

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return measure(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(head_checks, "measure_margins", counted)
    torch.manual_seed(0)
    f = set_image.measure("deeplab-like", set_image.deeplab_net(2, width=8), 2, (64, 56), 3)
    assert f.case == "deeplab-like 2D 64x56" and f.mode == "crop" and f.same_masks
    assert len(f.checked_ms) == len(f.kept_ms) == 3 and min(f.kept_ms) > 0
    # the first scene checks (the second, of its shape, takes the verdict); then each checked run
    assert len(calls) == 1 + 3


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["bench", "set-image", "--runs", "2", "--dims", "3"])
    assert args.func is set_image.run and args.runs == 2 and args.dims == "3"
