"""The site head's fit: its context term starts at nothing, joins only with enough images that
all carry the box means, and learns what a pixel's own features cannot tell."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import torch

import medrefine as mr
from medrefine.site.fit import SiteModel, context_of, fit_head, predict_rows, with_classes
from medrefine.site.samples import ImageSample, image_sample

NAMES = ("background", "nucleus")
WINDOWS = (68, 196)


def _image(rng: np.random.Generator, side: float) -> ImageSample:
    """A made-up accepted image: 300 rows of 96 feature channels and their box means over two
    windows; the label is which side of the image a pixel is on (``side`` of the pixels),
    which only the box means (channel 0 of the first window) tell."""
    features = rng.normal(size=(300, 96)).astype(np.float32)
    means = rng.normal(scale=0.1, size=(300, 192)).astype(np.float32)
    labels = (rng.random(300) < side).astype(np.int64)
    means[:, 0] = np.where(labels == 1, 1.0, -1.0)
    rows = np.concatenate([features, means], 1)
    return image_sample(rows, (96,), labels, NAMES, np.ones(300, np.float32), "d", (40, 40),
                        1.0, WINDOWS)  # fmt: skip


def test_the_context_term_joins_with_enough_images_that_all_carry_it() -> None:
    rng = np.random.default_rng(0)
    samples = [_image(rng, 0.4) for _ in range(4)]
    config = mr.SiteConfig(context_windows=WINDOWS, context_images=4)
    assert context_of(samples[:3], config) == ()  # too few images
    assert context_of(samples, config) == WINDOWS
    older = replace(samples[0], rows=samples[0].rows[:, :96], windows=())
    assert context_of([older, *samples[1:]], config) == ()  # one kept before context
    assert context_of(samples, replace(config, context_windows=(68,))) == ()  # other windows


def test_the_context_term_learns_what_the_features_alone_cannot() -> None:
    rng = np.random.default_rng(1)
    head = mr.load_model("nuclei-fluo-unet2d").head
    train, test = [_image(rng, 0.4) for _ in range(4)], _image(rng, 0.4)
    x = torch.from_numpy(test.rows.astype(np.float32))
    truth = test.labels.astype(np.int64)
    scores = {}
    for windows in ((), WINDOWS):
        config = mr.SiteConfig(context_windows=windows, context_images=4, fit_steps=100)
        model = fit_head(head, train, NAMES, config)
        assert (model.context is None) == (windows == ())
        scores[windows] = float((predict_rows(model, x, (96,)).numpy() == truth).mean())
    # features alone: about chance (.6 by the classes' sizes); with the box means, .91
    assert scores[WINDOWS] > 0.85 and scores[()] < 0.7


def test_a_site_model_starts_as_its_head_and_stores_what_start_reads() -> None:
    head = with_classes(mr.load_model("nuclei-fluo-unet2d").head, 2)
    model = SiteModel(head, WINDOWS, 192)
    x = torch.randn(10, 288, generator=torch.Generator().manual_seed(2))
    rows = x[:, :96].reshape(10, 96, 1, 1)
    torch.testing.assert_close(model(x, (96,)), head(rows).reshape(10, 2))  # zero context
    buffer = io.BytesIO()
    torch.save(model.blob(), buffer)
    blob = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert blob["windows"] == list(WINDOWS) and blob["context"].shape == (2, 192)
    assert set(blob["head"]) == set(head.state_dict())
    assert SiteModel(head).blob()["windows"] == []
