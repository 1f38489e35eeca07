"""Distance maps of the gates: Euclidean and geodesic; exact on small windows, coarse on big."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medrefine.engine.distance import edge_cost, euclidean_to, geodesic_to


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
