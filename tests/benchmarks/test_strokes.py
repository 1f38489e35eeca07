"""The stroke workload draws short strokes inside the network's errors, classes alternating."""

from __future__ import annotations

import numpy as np
import pytest

import medrefine as mr
from medrefine.engine.refine import constraints
from medrefine_lab.benchmarks.strokes import error_strokes, measure_strokes, stained_512


def _drawn(stroke: mr.Scribble, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out.reshape(-1)[constraints.rasterize(stroke, shape)] = True
    return out


def test_strokes_lie_in_distinct_wrong_regions_and_alternate() -> None:
    label = np.zeros((40, 60), dtype=np.uint8)
    label[5:15, 5:25] = 1  # missed by the "network"
    label[25:35, 40:55] = 1  # missed too, smaller
    mask = np.zeros_like(label)
    mask[20:30, 5:20] = 1  # invented by the "network"
    strokes = error_strokes(label, mask, 5)
    assert [s.label for s in strokes] == [1, 0, 1]  # the regions ran out after three
    for s in strokes:
        drawn = _drawn(s, label.shape)
        wrong = (label == s.label) & (mask != s.label)
        assert drawn.any() and wrong[drawn].all()
        length = np.hypot(*np.subtract(s.points[0], s.points[1]))
        assert 8 <= length <= 13  # short: about 12 pixels, along the region's long axis
    assert strokes[0].points[0][0] == strokes[0].points[1][0]  # the first region is wider
    first = _drawn(strokes[0], label.shape)
    third = _drawn(strokes[2], label.shape)
    assert first[5:15, 5:25].any() and third[25:35, 40:55].any()  # largest region first


@pytest.mark.slow
def test_workload_on_the_stained_crop_refines_once_per_stroke() -> None:
    case = stained_512()
    assert case.image.shape == (3, 512, 512) and case.label.shape == (512, 512)
    model = mr.load_model("nuclei-unet2d")
    mask = mr.Session(model).set_image(case.image)
    strokes = error_strokes(case.label, mask, 12)
    assert len(strokes) == 12 and [s.label for s in strokes] == [1, 0] * 6
    figures = measure_strokes(case, model, mr.RefineConfig(), 12)
    assert len(figures.refine_ms) == 12 and all(ms > 0 for ms in figures.refine_ms)
    assert any(i > 0 for i in figures.iterations)  # the strokes contradict the network
