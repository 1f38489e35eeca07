"""What a site keeps of an accepted image: strata, weights, bounds, storage round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.site import SiteConfig
from medrefine.site.samples import ImageSample, boundary, draw, image_sample


def _masks() -> tuple[np.ndarray, np.ndarray]:
    accepted = np.zeros((60, 80), np.uint8)
    accepted[10:50, 10:70] = 1
    started = accepted.copy()
    started[10:30, 60:70] = 0  # the user corrected a 20x10 strip
    return accepted, started


def test_boundary_marks_both_sides_of_every_label_change() -> None:
    mask = np.zeros((5, 6), np.uint8)
    mask[1:4, 2:4] = 1
    edge = boundary(mask)
    assert edge[1:4, 2:4].all()  # the 3x2 block is all edge
    assert edge[2, 1] and edge[2, 4] and edge[0, 2] and edge[4, 3]
    assert not edge[0, 0] and not edge[2, 0]


def test_draw_fills_each_stratum_by_its_share_and_weights_sum_to_the_image() -> None:
    accepted, started = _masks()
    config = SiteConfig(rows_per_image=1000, corrected_share=0.4, boundary_share=0.3)
    index, weight = draw(accepted, started, config, seed=1)
    assert index.size == 1000 and np.all(np.diff(index) > 0)
    corrected = (accepted != started).reshape(-1)[index]
    assert corrected.sum() == 200  # the strip has only 200 pixels: all of them
    assert np.isclose(weight.sum(), accepted.size)  # every pixel stood for exactly once
    assert np.allclose(weight[corrected], 1.0)
    edge = boundary(accepted).reshape(-1)[index] & ~corrected
    # its share (300) and half the strip's leftover (200, shared with the rest by their equal
    # shares) is more than the boundary holds: all 367 of its pixels
    assert edge.sum() == (boundary(accepted) & (accepted == started)).sum() == 367
    again, _ = draw(accepted, started, config, seed=1)
    np.testing.assert_array_equal(index, again)


def test_a_small_image_gives_all_its_pixels() -> None:
    accepted, started = np.ones((4, 5), np.uint8), np.zeros((4, 5), np.uint8)
    index, weight = draw(accepted, started, SiteConfig(rows_per_image=64), seed=0)
    assert index.tolist() == list(range(20)) and np.allclose(weight, 1.0)


def test_samples_survive_storage_and_refuse_damage() -> None:
    rng = np.random.default_rng(0)
    sample = image_sample(
        rng.normal(size=(50, 7)).astype(np.float32),
        (3, 4),
        rng.integers(0, 3, 50),
        ("background", "a", "b"),
        np.full(50, 2.0, np.float32),
        "abc",
        (10, 10),
    )
    back = ImageSample.from_bytes(sample.to_bytes())
    assert (back.digest, back.shape, back.splits, back.class_names) == (
        "abc",
        (10, 10),
        (3, 4),
        ("background", "a", "b"),
    )
    np.testing.assert_array_equal(back.rows, sample.rows)
    np.testing.assert_array_equal(back.labels, sample.labels)
    assert back.rows.dtype == np.float16 and not back.rows.flags.writeable
    with pytest.raises(InputError, match="not a stored image sample"):
        ImageSample.from_bytes(b"not an npz")
    with pytest.raises(InputError, match="labels must lie"):
        image_sample(np.zeros((2, 7)), (7,), np.array([0, 3]), ("a", "b"), np.ones(2), "d", (2,))


def test_rows_carry_box_means_after_the_features_and_older_samples_have_none() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(20, 21)).astype(np.float32)  # 7 feature channels, 2 windows
    args = (rng.integers(0, 2, 20), ("background", "a"), np.ones(20, np.float32), "d", (5, 4))
    sample = image_sample(rows, (3, 4), *args, 1.0, (68, 196))
    back = ImageSample.from_bytes(sample.to_bytes())
    assert back.windows == (68, 196) and back.feature_channels == 7
    with pytest.raises(InputError, match="not features of 7 channels and their means over 1"):
        image_sample(rows, (3, 4), *args, 1.0, (68,))
    older = image_sample(rows[:, :7], (3, 4), *args)
    buffer = io.BytesIO()  # as samples were stored before rows had box means
    with np.load(io.BytesIO(older.to_bytes())) as z:
        np.savez(buffer, **{k: z[k] for k in z.files if k != "windows"})
    assert ImageSample.from_bytes(buffer.getvalue()).windows == ()


def test_site_config_checks_its_fields() -> None:
    with pytest.raises(InputError, match=r"SiteConfig\.lr"):
        SiteConfig(lr=0.0)
    with pytest.raises(InputError, match="at most 1"):
        SiteConfig(corrected_share=0.8, boundary_share=0.5)
    for bad in ((2,), (68, 196, 300, 400, 500), [68], (68.0,), (True,)):
        with pytest.raises(InputError, match=r"SiteConfig\.context_windows"):
            SiteConfig(context_windows=bad)  # type: ignore[arg-type]
