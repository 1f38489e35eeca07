"""Seed-based baselines on synthetic images with known answers (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrefine_lab.eval.baselines import BASELINES, SeedMethod, get_baseline

NAMES = sorted(BASELINES)
NAMES_3D = [name for name in NAMES if 3 in BASELINES[name]().spatial_dims]
NAMES_2D_ONLY = [name for name in NAMES if BASELINES[name]().spatial_dims == (2,)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    offsets = [axis - c for axis, c in zip(grid, centre, strict=True)]
    return np.sqrt(sum(o**2 for o in offsets)) < radius


def noisy(clean: np.ndarray, sigma: float = 0.08, seed: int = 0) -> np.ndarray:
    return clean + np.random.default_rng(seed).normal(0.0, sigma, clean.shape)


def disk_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64^2 bright disk on dark noise; a short fg scribble and one bg scribble (y, x)."""
    truth = ball((64, 64), (32, 30), 15)
    image = noisy(0.15 + 0.7 * truth)
    seeds = np.zeros((64, 64), dtype=np.int32)
    seeds[28:36, 30] = 2
    seeds[3:60, 4] = 1
    return image, seeds, truth


def ball_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """24^3 bright ball (z, y, x); a short fg scribble and bg scribbles in two corners."""
    truth = ball((24, 24, 24), (12, 12, 12), 8)
    image = noisy(0.15 + 0.7 * truth, sigma=0.03)
    seeds = np.zeros(truth.shape, dtype=np.int32)
    seeds[12, 10:15, 12] = 2
    seeds[1, 1:23, 1] = 1
    seeds[22, 1:23, 22] = 1
    return image, seeds, truth


def three_class_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64^2: class 1 = mid-grey disk, class 2 = bright square, class 0 = dark background."""
    truth = np.zeros((64, 64), dtype=np.int32)
    truth[ball((64, 64), (20, 20), 11)] = 1
    truth[36:56, 34:56] = 2
    image = noisy(np.array([0.1, 0.5, 0.9])[truth], sigma=0.05)
    seeds = np.zeros_like(truth)
    seeds[2:62, 2] = 1
    seeds[2, 2:62] = 1
    seeds[17:24, 20] = 2
    seeds[46, 40:50] = 3
    return image, seeds, truth


@pytest.mark.parametrize("name", NAMES)
def test_disk_2d(name: str) -> None:
    image, seeds, truth = disk_case()
    mask = get_baseline(name).segment(image, seeds, num_classes=2)
    assert mask.dtype == np.int32
    assert mask.shape == truth.shape
    assert dice(mask == 1, truth) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_disk_rgb_channel_first(name: str) -> None:
    image, seeds, truth = disk_case()
    rgb = np.stack([image, 1.0 - image, 0.5 * image]).astype(np.float32)  # (3, H, W)
    mask = get_baseline(name).segment(rgb, seeds, num_classes=2)
    assert mask.shape == truth.shape
    assert dice(mask == 1, truth) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_integer_image_dtype(name: str) -> None:
    image, seeds, truth = disk_case()
    as_uint16 = np.round(np.clip(image, 0, 1) * 4000).astype(np.uint16)
    mask = get_baseline(name).segment(as_uint16, seeds, num_classes=2)
    assert dice(mask == 1, truth) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_single_channel_axis_is_accepted(name: str) -> None:
    image, seeds, _ = disk_case()
    expected = get_baseline(name).segment(image, seeds, num_classes=2)
    np.testing.assert_array_equal(get_baseline(name).segment(image[None], seeds, 2), expected)


@pytest.mark.parametrize("name", NAMES_3D)
def test_ball_3d(name: str) -> None:
    image, seeds, truth = ball_case()
    mask = get_baseline(name).segment(image, seeds, num_classes=2)
    assert mask.dtype == np.int32
    assert mask.shape == truth.shape
    assert dice(mask == 1, truth) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_three_classes(name: str) -> None:
    image, seeds, truth = three_class_case()
    mask = get_baseline(name).segment(image, seeds, num_classes=3)
    for cls in (1, 2):
        assert dice(mask == cls, truth == cls) >= 0.9, f"class {cls}"


@pytest.mark.parametrize("name", NAMES)
def test_seeded_pixels_keep_their_class(name: str) -> None:
    image, seeds, _ = disk_case()
    seeds[32, 40] = 1  # a background seed inside the bright disk, against the evidence
    seeds[5, 50] = 2  # and a foreground seed in the background
    mask = get_baseline(name).segment(image, seeds, num_classes=2)
    marked = seeds > 0
    np.testing.assert_array_equal(mask[marked], seeds[marked] - 1)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    image, seeds, _ = three_class_case()
    first = get_baseline(name).segment(image, seeds, num_classes=3)
    second = get_baseline(name).segment(image, seeds, num_classes=3)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_unseeded_class_never_appears(name: str) -> None:
    image, seeds, _ = disk_case()
    shifted = np.where(seeds > 0, seeds + 1, 0).astype(np.int32)  # classes 1 and 2, no 0
    mask = get_baseline(name).segment(image, shifted, num_classes=5)
    assert set(np.unique(mask)) <= {1, 2}


@pytest.mark.parametrize("name", NAMES)
def test_only_one_class_seeded_gives_that_class(name: str) -> None:
    image, _, _ = disk_case()
    seeds = np.zeros(image.shape, dtype=np.int32)
    seeds[30, 30] = 3
    mask = get_baseline(name).segment(image, seeds, num_classes=3)
    assert mask.dtype == np.int32
    assert np.all(mask == 2)


@pytest.mark.parametrize("name", NAMES)
def test_all_pixels_seeded_returns_seeds(name: str) -> None:
    image, _, truth = disk_case()
    seeds = truth.astype(np.int32) + 1
    np.testing.assert_array_equal(get_baseline(name).segment(image, seeds, 2), truth)


@pytest.mark.parametrize("name", NAMES)
def test_empty_seeds_raise(name: str) -> None:
    image, seeds, _ = disk_case()
    with pytest.raises(ValueError, match="no seeds"):
        get_baseline(name).segment(image, np.zeros_like(seeds), num_classes=2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("seed_values", "num_classes", "message"),
    [
        (np.array([0, 3]), 2, "0..2"),
        (np.array([0, -1]), 2, "0..2"),
        (np.array([0.0, 1.0]), 2, "integer"),
        (np.array([0, 1]), 0, "num_classes"),
    ],
)
def test_bad_seeds_raise(
    name: str, seed_values: np.ndarray, num_classes: int, message: str
) -> None:
    image, _, _ = disk_case()
    seeds = np.zeros(image.shape, dtype=seed_values.dtype)
    seeds[10, 10], seeds[20, 20] = seed_values[0], seed_values[1]
    seeds[30, 30] = 1
    with pytest.raises(ValueError, match=message):
        get_baseline(name).segment(image, seeds, num_classes=num_classes)


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_raises(name: str) -> None:
    image, seeds, _ = disk_case()
    with pytest.raises(ValueError, match="does not match"):
        get_baseline(name).segment(image[:, :50], seeds, num_classes=2)


@pytest.mark.parametrize("name", NAMES)
def test_nan_image_raises(name: str) -> None:
    image, seeds, _ = disk_case()
    image[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        get_baseline(name).segment(image, seeds, num_classes=2)


@pytest.mark.parametrize("name", NAMES_2D_ONLY)
def test_3d_input_to_2d_method_raises(name: str) -> None:
    image, seeds, _ = ball_case()
    with pytest.raises(ValueError, match=rf"{name} supports spatial dims \(2,\), got a 3D"):
        get_baseline(name).segment(image, seeds, num_classes=2)


@pytest.mark.parametrize("name", NAMES)
def test_1d_input_raises(name: str) -> None:
    with pytest.raises(ValueError, match="2D"):
        get_baseline(name).segment(np.zeros(10), np.ones(10, dtype=np.int32), num_classes=2)


def test_registry_names_and_dims() -> None:
    assert set(BASELINES) == {"grabcut", "geodesic", "graphcut", "random_walker", "watershed"}
    for name, factory in BASELINES.items():
        method: SeedMethod = factory()
        assert method.name == name
        assert set(method.spatial_dims) <= {2, 3}
    assert NAMES_2D_ONLY == ["grabcut"]


def test_unknown_baseline_names_the_choices() -> None:
    with pytest.raises(KeyError, match="grabcut, graphcut, random_walker, watershed"):
        get_baseline("snakes")


def check_keeps_seeds_and_seeded_classes(
    name: str, shape: tuple[int, ...], num_classes: int, data_seed: int
) -> None:
    rng = np.random.default_rng(data_seed)
    image = rng.random(shape)
    seeds = rng.integers(0, num_classes + 1, shape) * (rng.random(shape) < 0.2)
    seeds.flat[0] = 1
    seeds = seeds.astype(np.int32)
    mask = get_baseline(name).segment(image, seeds, num_classes=num_classes)
    assert mask.dtype == np.int32
    assert mask.shape == shape
    marked = seeds > 0
    np.testing.assert_array_equal(mask[marked], seeds[marked] - 1)
    assert set(np.unique(mask)) <= set(np.unique(seeds[marked]) - 1)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(
    shape=st.tuples(st.integers(6, 18), st.integers(6, 18)),
    num_classes=st.integers(2, 4),
    data_seed=st.integers(0, 2**31 - 1),
)
def test_any_2d_input_keeps_seeds_and_seeded_classes(
    name: str, shape: tuple[int, int], num_classes: int, data_seed: int
) -> None:
    check_keeps_seeds_and_seeded_classes(name, shape, num_classes, data_seed)


@pytest.mark.parametrize("name", NAMES_3D)
@settings(max_examples=10, deadline=None)
@given(
    shape=st.tuples(st.integers(3, 8), st.integers(3, 8), st.integers(3, 8)),
    num_classes=st.integers(2, 4),
    data_seed=st.integers(0, 2**31 - 1),
)
def test_any_3d_input_keeps_seeds_and_seeded_classes(
    name: str, shape: tuple[int, int, int], num_classes: int, data_seed: int
) -> None:
    check_keeps_seeds_and_seeded_classes(name, shape, num_classes, data_seed)
