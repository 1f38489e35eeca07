"""``medrefine bench heads``: its networks, workload and figures, on small images."""

from __future__ import annotations

import numpy as np
import torch

from medrefine.cli import build_parser
from medrefine.engine.config import RefineConfig
from medrefine_lab.benchmarks import heads


def test_scribbles_lie_in_wrongly_labelled_pixels_of_their_true_class() -> None:
    image, truth = heads.scene((64, 80))
    assert image.shape == (64, 80) and image.dtype == np.float32
    assert 0 < truth.mean() < 0.6
    mask = np.zeros_like(truth)  # everything background: the balls are wrong
    rng = np.random.default_rng(0)
    for _ in range(5):
        mark = heads.scribble_in_error(mask, truth, rng)
        (y0, x0), (y1, x1) = mark.points
        assert y0 == y1 and x0 <= x1
        assert mark.label == 1 and (truth[y0, x0 : x1 + 1] == 1).all()


def test_both_networks_split_into_a_crop_head_over_coarse_features() -> None:
    torch.manual_seed(0)
    for build, fraction in ((heads.decoder_net, 4), (heads.deeplab_net, 8)):
        model = heads.split_net(build(2, width=8), 2, seed=0)
        feats = model.backbone(torch.zeros(1, 1, 96, 64))
        assert [tuple(f.shape[2:]) for f in feats] == [(96 // fraction, 64 // fraction)]


def test_measure_reports_both_paths_and_memory() -> None:
    torch.manual_seed(0)
    f = heads.measure("decoder", heads.decoder_net(2, width=8), 2, (64, 64), 10, 2, RefineConfig())
    assert f.mode == "crop"
    assert len(f.crop_ms) == 10 and len(f.full_ms) == 2
    assert [at for at, _ in f.rss] == [10] and f.rss[0][1] > 0
    assert 0.9 <= f.agreement <= 1.0


def test_registered_on_the_command_line() -> None:
    args = build_parser().parse_args(["bench", "heads", "--refines", "3", "--dims", "2"])
    assert args.refines == 3 and args.func is heads.run
