"""``medrefine demo``'s site part: what was accepted on the first images of the shipped series
opens the last one right, where the network alone finds almost nothing."""

from __future__ import annotations

from pathlib import Path

import medrefine as mr
from medrefine.samples import SERIES
from medrefine_lab.demo import run_site_demo


def test_the_series_last_image_opens_from_the_site(tmp_path: Path) -> None:
    firsts = run_site_demo(tmp_path / "site.png")
    assert len(firsts) == len(SERIES) == 3
    assert max(firsts[:-1]) < 0.1  # the network alone, before anything was accepted
    assert firsts[-1] > 0.7
    last = mr.load_sample(SERIES[-1])
    alone = mr.Session(mr.load_model("nuclei-fluo-unet2d")).set_image(last.image)
    truth = last.label > 0
    assert 2 * ((alone == 1) & truth).sum() / ((alone == 1).sum() + truth.sum()) < 0.1
