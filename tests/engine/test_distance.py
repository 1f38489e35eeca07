"""Distance maps of the gates: Euclidean and geodesic; exact on small windows, coarse on big."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medrefine.engine.gate.distance import (
    edge_cost,
    euclidean_map,
    euclidean_to,
    geodesic_map,
    geodesic_to,
)
from medrefine.errors import InputError
from medrefine.types import relative_spacing


def test_euclidean_is_exact_below_the_stride_threshold_and_close_above() -> None:
    rng = np.random.default_rng(0)
    small = rng.random((60, 70)) > 0.99
    np.testing.assert_allclose(euclidean_to(small), ndimage.distance_transform_edt(~small))
    big = rng.random((80, 80, 80)) > 0.999  # 512k pixels: computed on a stride-2 grid
    err = np.abs(euclidean_to(big) - ndimage.distance_transform_edt(~big))
    assert err.max() <= 2 * np.sqrt(3)
    assert np.isinf(euclidean_to(np.zeros((4, 4), bool))).all()


def test_edge_cost_is_one_on_flat_ground_and_scale_free() -> None:
    image = np.zeros((1, 30, 30), np.float32)
    image[0, :, 15:] = 1.0
    cost = edge_cost(image, 2.0)
    assert cost[15, 2] == 1.0 and cost[15, 14] > 3.0  # far from / at the step
    np.testing.assert_allclose(edge_cost(image * 1000.0, 2.0), cost, rtol=1e-4)
    np.testing.assert_allclose(edge_cost(image, 0.0), np.ones((30, 30)))


def test_geodesic_equals_chamfer_on_a_flat_image_and_grows_across_an_edge() -> None:
    targets = np.zeros((30, 30), bool)
    targets[15, 5] = True
    flat = np.zeros((1, 30, 30), np.float32)
    d = geodesic_to(targets, flat, 1.0, limit=100.0)
    assert d[15, 25] == 20.0 and abs(d[25, 15] - 10 * np.sqrt(2)) < 1e-4
    step = flat.copy()
    step[0, :, 15:] = 1.0
    across = geodesic_to(targets, step, 1.0, limit=100.0)
    assert across[15, 10] == d[15, 10]  # before the edge: unchanged
    assert across[15, 25] > d[15, 25] + 2.0  # past it: longer
    assert np.isinf(geodesic_to(targets, flat, 1.0, limit=5.0)[15, 25])


def test_geodesic_on_a_big_window_is_coarse_but_close() -> None:
    targets = np.zeros((48, 48, 48), bool)  # 110k pixels: computed on a stride-2 grid
    targets[24, 24, 24] = True
    image = np.zeros((1, 48, 48, 48), np.float32)
    d = geodesic_to(targets, image, 1.0, limit=100.0)
    exact = ndimage.distance_transform_edt(~targets)
    assert d.shape == targets.shape
    assert np.abs(d - exact)[exact < 20].max() <= 2 * 2 * np.sqrt(3)


def test_relative_spacing_is_in_units_of_the_finest_axis_and_none_when_isotropic() -> None:
    assert relative_spacing(None, 3) is None
    assert relative_spacing((0.7, 0.7, 0.7), 3) is None
    assert relative_spacing((3.0, 1.5, 1.5), 3) == (2.0, 1.0, 1.0)
    for bad in ((1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0)):
        with pytest.raises(InputError, match="spacing"):
            relative_spacing(bad, 3)


def test_distances_along_a_coarse_axis_are_as_long_as_the_spacing_says() -> None:
    targets = np.zeros((11, 11, 11), bool)
    targets[5, 5, 5] = True
    flat = np.zeros((1, 11, 11, 11), np.float32)
    spacing = (3.0, 1.0, 1.0)
    e, g = euclidean_to(targets, spacing), geodesic_to(targets, flat, 1.0, 100.0, spacing)
    for d in (e, g):
        assert d[6, 5, 5] == pytest.approx(3.0) and d[8, 5, 5] == pytest.approx(9.0)
        assert d[5, 5, 6] == pytest.approx(1.0) and d[5, 5, 9] == pytest.approx(4.0)
    np.testing.assert_allclose(e, ndimage.distance_transform_edt(~targets, sampling=spacing))
    # Isotropic: exactly the maps without a spacing.
    assert np.array_equal(
        geodesic_to(targets, flat, 1.0, 100.0), geodesic_to(targets, flat, 1.0, 100.0, None)
    )
    # The edge-following distance still stops at an edge across the thick slices.
    wall = flat.copy()
    wall[0, 7:, :, :] = 10.0
    assert geodesic_to(targets, wall, 1.0, 100.0, spacing)[8, 5, 5] > 9.0


def test_read_only_inputs_are_pooled_without_warnings() -> None:
    targets = np.zeros((300, 300, 4), bool)
    targets[150, 150, 2] = True
    image = np.ones((1, 300, 300, 4), np.float32)
    image.setflags(write=False)  # a session keeps its image read-only
    targets.setflags(write=False)
    assert np.isfinite(geodesic_to(targets, image, 1.0, 10.0)).any()


@pytest.mark.parametrize("shape", [(81, 77, 83), (30, 40)])  # stride 2 in 3D (odd sides), 1 in 2D
def test_a_coarse_map_reads_and_maps_as_its_upsampled_map(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    targets = rng.random(shape) > 0.999
    targets[(0,) * len(shape)] = True
    image = rng.normal(size=(1, *shape)).astype(np.float32)
    points = np.stack([rng.integers(0, n, 500) for n in shape], 1)
    for m, full in (
        (euclidean_map(targets), euclidean_to(targets)),
        (geodesic_map(targets, image, 2.0, 40.0), geodesic_to(targets, image, 2.0, 40.0)),
    ):
        assert np.array_equal(m.full(), full)
        assert np.array_equal(m.at(points), full[tuple(points.T)])
        gate = m.map(lambda d: np.exp(-(d**2) / 50.0))
        assert np.array_equal(gate.full(), np.exp(-(full**2) / 50.0))
    assert euclidean_map(targets).stride == (2 if len(shape) == 3 else 1)
