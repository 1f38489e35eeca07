"""``medrefine bench conformance --size full``: its full-size scenes, networks of fixed input
size rebuilt for them, the per-network budget, and one network timed end to end."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
import torch.fx
from torch import nn

from medrefine.cli import build_parser
from medrefine.samples import load_sample
from medrefine_lab.benchmarks import conformance
from medrefine_lab.benchmarks.architectures import by_name

_MODULE_CALL = nn.Module.__call__  # as torch defines it, before any test traces


def test_size_option_defaults_to_the_small_scenes() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "conformance"]).size == "small"
    args = parser.parse_args(["bench", "conformance", "--size", "full", "--budget", "60"])
    assert args.size == "full" and args.budget == 60.0
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "conformance", "--size", "huge"])


def test_full_2d_scene_is_the_sample_mirrored_out_to_512_px() -> None:
    arch = by_name("monai-segresnet-2d")
    sc = conformance.scene(arch, full=True)
    truth = load_sample("nuclei-stained").label  # (256, 320)
    assert sc.image.shape == (1, 512, 512) and sc.image.dtype == np.float32
    assert sc.label.shape == (512, 512)
    np.testing.assert_array_equal(sc.label[:256, :320], truth)
    np.testing.assert_array_equal(sc.label[:256, 320:], truth[:, ::-1][:, :192])
    np.testing.assert_array_equal(sc.label[256:, :320], truth[::-1])
    assert abs(float(sc.image.mean())) < 1e-3 and abs(float(sc.image.std()) - 1) < 1e-3


def test_full_3d_scene_is_the_volume_zoomed_to_128_cubed_with_its_classes_kept() -> None:
    arch = by_name("dna-plainconvunet-3d")  # 3 classes: both hippocampus parts
    sc = conformance.scene(arch, full=True)
    truth = load_sample("hippocampus-007").label
    assert sc.image.shape == (1, 128, 128, 128) and sc.label.shape == (128, 128, 128)
    assert set(np.unique(sc.label)) == set(np.unique(truth))  # order 0: no new classes
    for c in (1, 2):  # each class keeps its share of the volume
        assert abs(float((sc.label == c).mean()) / float((truth == c).mean()) - 1) < 0.1


def test_a_fixed_size_network_is_rebuilt_for_the_full_size() -> None:
    unetr = by_name("monai-unetr-2d").at_size((32, 48))
    assert unetr.fixed_size == (32, 48)
    with torch.no_grad():
        out = unetr.build()(torch.zeros(1, 1, 32, 48))
    assert out.shape == (1, 2, 32, 48)
    segresnet = by_name("monai-segresnet-2d")
    assert segresnet.at_size((512, 512)) is segresnet  # takes any multiple of 4 as it is


def test_a_deadline_raises_at_the_first_check_past_its_budget() -> None:
    deadline = conformance.Deadline(0.2)
    deadline.check()  # within the budget: nothing
    start = time.perf_counter()
    with pytest.raises(conformance.OverBudgetError, match=r"over the 0\.2 s budget"):
        while True:
            deadline.check()
            time.sleep(0.01)
    assert 0.1 < time.perf_counter() - start < 1.5
    unlimited = conformance.Deadline(0)
    time.sleep(0.01)
    unlimited.check()  # no limit


def test_a_network_past_the_budget_is_skipped_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(
        ["bench", "conformance", "--size", "full", "--only", "monai-unet-3d", "--budget", "0.5"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| monai-unet-3d \| - \| skipped after \d+ s: over the 0\.5 s budget", out)
    assert "| monai-unet-3d | module | ok |" not in out
    # skipped between steps, never inside a torch.fx trace (which patches nn.Module.__call__
    # for its duration): every later network still runs and traces
    assert nn.Module.__call__ is _MODULE_CALL
    net = nn.Sequential(nn.Conv2d(1, 2, 1))
    assert torch.fx.symbolic_trace(net)(torch.zeros(1, 1, 2, 2)).shape == (1, 2, 2, 2)


@pytest.mark.slow
def test_full_size_run_times_one_network_at_512_px(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["bench", "conformance", "--size", "full", "--only", "monai-segresnet-2d", "--repeats", "2"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "512x512 px (2D)" in out
    row = re.search(r"\| monai-segresnet-2d \| module \| ok \|.*", out)
    assert row is not None, out
    cells = [c.strip() for c in row.group(0).strip("|").split("|")]
    p50, p95 = (float(v) for v in cells[7].split(" / "))
    assert 0 < p50 <= p95
    assert float(cells[6]) > 0  # set_image ms
