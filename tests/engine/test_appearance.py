"""Colour models of the marked classes, and the look-alikes they let a new class reach."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engine.gate.appearance import bin_index, class_log_likelihoods
from medrefine.engine.gate.propagate import fuse


def _two_colours(ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A ``(2, *shape)`` image, blue-ish where ``inside`` (two separate blobs), red-ish
    elsewhere, with a little noise; and ``inside``."""
    shape = (40, 60) if ndim == 2 else (12, 40, 60)
    inside = np.zeros(shape, bool)
    inside[..., 5:15, 5:15] = True
    inside[..., 25:35, 40:50] = True
    rng = np.random.default_rng(0)
    image = np.stack([np.where(inside, 0.2, 0.8), np.where(inside, 0.9, 0.1)]).astype(np.float32)
    return image + rng.normal(0, 0.03, image.shape).astype(np.float32), inside


def test_an_outlier_does_not_squeeze_the_other_values_into_one_bin() -> None:
    image = np.linspace(0, 1, 1000, dtype=np.float32).reshape(1, 10, 100)
    image[0, 0, 0] = 1e6
    cells = bin_index(image, 16)
    assert cells.shape == (10, 100) and cells.min() == 0 and cells.max() == 15
    assert len(np.unique(cells)) == 16


def test_joint_bins_of_several_channels_are_distinct_cells() -> None:
    image = np.zeros((2, 2, 2), np.float32)
    image[0, 0, 1] = image[1, 1, 0] = 1.0  # (1, 0) and (0, 1) share each channel's values
    image[:, 1, 1] = 1.0
    cells = bin_index(image, 4)
    assert len(np.unique(cells)) == 4


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_marked_class_is_likelier_where_it_looks_like_its_marks(ndim: int) -> None:
    image, inside = _two_colours(ndim)
    shape = inside.shape
    first_blob = np.zeros(shape, bool)
    first_blob[..., 8:12, 8:12] = True  # marks in one blob only
    index = np.flatnonzero(first_blob)
    q = class_log_likelihoods(image, index, np.full(index.size, 1), 3, bins=16)
    assert q.shape == (3, *shape) and q.dtype == np.float32
    other_blob = np.zeros(shape, bool)
    other_blob[..., 27:33, 42:48] = True
    # The unmarked blob looks like the marks: likelier under class 1 than under the image's
    # histogram (classes 0 and 2, unmarked); the background is not.
    assert (q[1][other_blob] > q[0][other_blob] + 1).all()
    assert (q[1][~inside] < q[0][~inside]).all()
    np.testing.assert_array_equal(q[0], q[2])


def test_appearance_carries_a_class_to_a_look_alike_the_distances_do_not_reach() -> None:
    image, inside = _two_colours()
    shape = inside.shape
    marks = np.zeros(shape, np.int64) - 1
    marks[8:12, 8:12] = 1  # in the first blob
    marks[20, 20:30] = 0  # background, nearer the second blob than the first blob's marks
    index = np.flatnonzero(marks >= 0)
    label = marks.reshape(-1)[index]
    q = torch.from_numpy(class_log_likelihoods(image, index, label, 2, bins=16))
    logits = torch.zeros(2, *shape)  # the network knows nothing
    distances = torch.zeros(2, *shape)
    distances[1][25:35, 40:50] = 40.0  # the second blob is far from class 1's marks
    without = fuse(logits, distances, 16.0).argmax(0)
    with_colour = fuse(logits, distances, 16.0, likelihoods=q, weight=3.0).argmax(0)
    assert (without[25:35, 40:50] == 0).all()
    assert (with_colour[27:33, 42:48] == 1).all()
    assert (
        fuse(logits, distances, 16.0, likelihoods=q, weight=0.0) == fuse(logits, distances, 16.0)
    ).all()


def test_the_shown_mask_describes_a_class_that_one_thin_stroke_does_not() -> None:
    """Nuclei of two stains, one of them stroked: the strokes alone say nothing of the other
    stain; the mask shown (which holds both) as a prior makes it nucleus."""
    shape = (40, 60)
    rng = np.random.default_rng(1)
    value = np.zeros(shape, np.float32)  # background 0
    light, dark = np.zeros(shape, bool), np.zeros(shape, bool)
    light[5:15, 5:15] = True
    dark[25:35, 40:50] = True
    value[light], value[dark] = 0.5, 1.0
    image = (value + rng.normal(0, 0.02, shape)).astype(np.float32)[None]
    shown = (light | dark).astype(np.int64)
    marks = np.zeros(shape, np.int64) - 1
    marks[10, 6:14] = 1  # one stroke, on the light nucleus
    marks[20, 20:40] = 0  # one on the background
    index = np.flatnonzero(marks >= 0)
    label = marks.reshape(-1)[index]
    alone = class_log_likelihoods(image, index, label, 2, bins=16)
    seeded = class_log_likelihoods(image, index, label, 2, 16, None, shown, 200.0)
    assert np.abs(alone[1][dark] - alone[0][dark]).max() < 1.0  # no stroke has its colour
    assert (seeded[1][dark] - seeded[0][dark]).min() > 3.0
    assert (seeded[0][~shown.astype(bool)] > seeded[1][~shown.astype(bool)]).all()
    # no prior: the shown mask is ignored
    np.testing.assert_array_equal(
        class_log_likelihoods(image, index, label, 2, 16, None, shown, 0.0), alone
    )
