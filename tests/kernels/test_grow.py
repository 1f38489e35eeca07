"""medrefine.kernels.region_grow: the kernel against a slow reference, properties, errors,
edge cases."""

from __future__ import annotations

import itertools
import math
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import medrefine
from medrefine.kernels import _native
from medrefine.kernels import grow as grow_module
from medrefine.kernels.grow import region_grow
from medrefine_lab.benchmarks import grow as grow_bench

DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)

# --------------------------------------------------------------------------------------------------
# Reference implementation: the documented rules, written for reading, not for speed.


def reference_grow(
    image: np.ndarray,
    seeds: np.ndarray,
    threshold: float,
    criterion: str = "neighbour",
    connectivity: int = 1,
    max_distance: float | None = None,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    shape = seeds.shape
    channels = image.astype(np.float64).reshape((-1, *shape))  # (C, *shape)
    pixels = list(np.ndindex(shape))  # C order
    value = {p: [float(c[p]) for c in channels] for p in pixels}
    is_nan = {p: any(math.isnan(v) for v in value[p]) for p in pixels}
    label = {p: int(seeds[p]) for p in pixels}
    offsets = [
        o
        for o in itertools.product((-1, 0, 1), repeat=len(shape))
        if 0 < sum(map(abs, o)) <= connectivity
    ]

    def neighbours(p: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        found = []
        for o in offsets:
            n = tuple(a + b for a, b in zip(p, o, strict=True))
            if all(0 <= a < s for a, s in zip(n, shape, strict=True)):
                found.append((o, n))
        return found

    def step_length(o: tuple[int, ...]) -> float:
        assert spacing is not None
        return math.sqrt(sum((d * s) * (d * s) for d, s in zip(o, spacing, strict=True)))

    def difference(a: list[float], b: list[float]) -> float:
        if len(a) == 1:
            return abs(a[0] - b[0])
        return math.sqrt(sum((x - y) * (x - y) for x, y in zip(a, b, strict=True)))

    # Strokes: same-class connected seed components, numbered by their first pixel in C order.
    stroke: dict[tuple[int, ...], int] = {}
    for p in pixels:
        if label[p] < 0 or p in stroke:
            continue
        k = len(set(stroke.values()))
        stroke[p] = k
        todo = [p]
        while todo:
            q = todo.pop()
            for _, n in neighbours(q):
                if label[n] == label[p] and n not in stroke:
                    stroke[n] = k
                    todo.append(n)
    means = {}
    for k in set(stroke.values()):
        members = [p for p in pixels if stroke.get(p) == k and not is_nan[p]]
        totals = [0.0] * len(channels)
        for p in members:
            totals = [t + v for t, v in zip(totals, value[p], strict=True)]
        means[k] = [t / len(members) if members else math.nan for t in totals]

    dist = {p: 0.0 for p in pixels if label[p] >= 0}
    frontier = [p for p in pixels if label[p] >= 0 and not is_nan[p]]
    blocked: set[tuple[int, ...]] = set()
    ring = 0
    while frontier:
        ring += 1
        if spacing is None and max_distance is not None and ring > max_distance:
            break
        offers: dict[tuple[int, ...], list[tuple[int, float, int]]] = {}
        for p in frontier:
            ref = value[p] if criterion == "neighbour" else means[stroke[p]]
            for o, n in neighbours(p):
                if label[n] != -1 or n in blocked:
                    continue
                if not difference(value[n], ref) < threshold:
                    continue
                d = dist[p] + step_length(o) if spacing is not None else float(ring)
                if max_distance is not None and not d <= max_distance:
                    continue
                offers.setdefault(n, []).append((label[p], d, stroke[p]))
        frontier = []
        for n, offered in offers.items():
            if len({cls for cls, _, _ in offered}) > 1:
                blocked.add(n)
                continue
            label[n] = offered[0][0]
            dist[n], stroke[n] = min((d, s) for _, d, s in offered)
            frontier.append(n)
    out = np.empty(shape, np.int32)
    for p in pixels:
        out[p] = label[p]
    return out


# --------------------------------------------------------------------------------------------------
# Kernel == reference on random small cases.


@st.composite
def grow_cases(draw: st.DrawFn) -> dict[str, Any]:
    ndim = draw(st.sampled_from((2, 3)))
    shape = tuple(
        draw(st.lists(st.integers(1, 6 if ndim == 2 else 4), min_size=ndim, max_size=ndim))
    )
    channels = draw(st.sampled_from((None, 1, 2, 3)))
    dtype = draw(st.sampled_from(DTYPES))
    full = shape if channels is None else (channels, *shape)
    lo = -3 if np.issubdtype(dtype, np.signedinteger) or dtype in (np.float32, np.float64) else 0
    image = np.array(
        draw(st.lists(st.integers(lo, 6), min_size=math.prod(full), max_size=math.prod(full)))
    )
    image = image.reshape(full).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        if draw(st.booleans()):
            image = image * np.asarray(draw(st.floats(0.1, 3.0)), dtype)
        nans = np.array(draw(st.lists(st.booleans(), min_size=image.size, max_size=image.size)))
        if draw(st.booleans()):
            image[nans.reshape(full) & (np.arange(image.size).reshape(full) % 5 == 0)] = np.nan
    labels = st.sampled_from((-1, -1, -1, -1, 0, 1, 2))
    seeds = np.array(draw(st.lists(labels, min_size=math.prod(shape), max_size=math.prod(shape))))
    spacing = draw(
        st.none() | st.tuples(*[st.sampled_from((0.3, 0.5, 1.0, 1.5, 2.0))] * ndim)  # type: ignore[arg-type]
    )
    return {
        "image": image,
        "seeds": seeds.reshape(shape).astype(np.int32),
        "threshold": draw(st.sampled_from((0.0, 0.5, 1.0, 1.5, 2.0, 3.5, math.inf))),
        "criterion": draw(st.sampled_from(("neighbour", "seed_mean"))),
        "connectivity": draw(st.integers(1, ndim)),
        "max_distance": draw(st.sampled_from((None, 0.0, 1.0, 2.0, 2.5, 4.0, math.inf))),
        "spacing": spacing,
    }


@settings(max_examples=600, deadline=None)
@given(grow_cases())
def test_kernel_matches_reference(case: dict[str, Any]) -> None:
    expected = reference_grow(**case)
    image, seeds = case.pop("image"), case.pop("seeds")
    got = region_grow(image, seeds, case.pop("threshold"), **case)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(((37, 45), (8, 70), (9, 21, 22), (5, 17, 9))),
    st.sampled_from(DTYPES),
    st.sampled_from(("neighbour", "seed_mean")),
    st.integers(1, 3),
    st.sampled_from((None, 3.0)),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_kernel_matches_reference_across_many_bricks(
    shape: tuple[int, ...],
    dtype: type[np.generic],
    criterion: str,
    connectivity: int,
    max_distance: float | None,
    with_spacing: bool,
    seed: int,
) -> None:
    # Shapes that span several bricks (64-pixel blocks) and end in partial ones.
    rng = np.random.default_rng(seed)
    case: dict[str, Any] = {
        "image": rng.integers(0, 10, size=shape).astype(dtype),
        "seeds": np.where(rng.random(shape) < 0.01, rng.integers(0, 3, size=shape), -1),
        "threshold": 4.5,
        "criterion": criterion,
        "connectivity": min(connectivity, len(shape)),
        "max_distance": max_distance,
        "spacing": tuple(rng.choice([0.5, 1.0, 2.0], len(shape))) if with_spacing else None,
    }
    case["seeds"] = case["seeds"].astype(np.int32)
    expected = reference_grow(**case)
    got = region_grow(case.pop("image"), case.pop("seeds"), case.pop("threshold"), **case)
    np.testing.assert_array_equal(got, expected)


def test_reference_agrees_with_a_hand_worked_example() -> None:
    # Two classes meet in the middle of a ramp: the anti-diagonal is contested.
    image = np.arange(25, dtype=np.float32).reshape(5, 5)
    seeds = np.full((5, 5), -1, np.int32)
    seeds[0, 0], seeds[4, 4] = 1, 2
    expected = np.array(
        [
            [1, 1, 1, 1, -1],
            [1, 1, 1, -1, 2],
            [1, 1, -1, 2, 2],
            [1, -1, 2, 2, 2],
            [-1, 2, 2, 2, 2],
        ]
    )
    np.testing.assert_array_equal(reference_grow(image, seeds, 5.5), expected)
    np.testing.assert_array_equal(region_grow(image, seeds, 5.5), expected)
    # seed_mean: class 1 (mean 0) takes 0..5, class 2 (mean 24) takes 19..24.
    got = region_grow(image, seeds, 5.5, criterion="seed_mean")
    np.testing.assert_array_equal(got.ravel() == 1, np.arange(25) <= 5)
    np.testing.assert_array_equal(got.ravel() == 2, np.arange(25) >= 19)


def test_spacing_measures_max_distance_in_mm() -> None:
    image = np.zeros((9, 9), np.float32)
    seeds = np.full((9, 9), -1, np.int32)
    seeds[4, 4] = 0
    got = region_grow(image, seeds, 1.0, max_distance=4.0, spacing=(2.0, 1.0))
    ys, xs = np.nonzero(got == 0)
    assert set(np.abs(ys - 4)) == {0, 1, 2} and set(np.abs(xs - 4)) == {0, 1, 2, 3, 4}
    assert got[6, 4] == 0 and got[4, 8] == 0 and got[6, 7] == -1  # 2*2 + 3 = 7 > 4


def test_a_pixel_reached_by_two_strokes_inherits_the_first_numbered() -> None:
    # (0, 1) is reached in ring 1 by stroke 0 (mean 0) and stroke 1 (mean 10). Only if it takes
    # stroke 0's mean can (1, 1) (value 1) join from it; the NaNs keep (1, 1) from other paths.
    image = np.array([[0.0, 5.0, 10.0], [np.nan, 1.0, np.nan]])
    seeds = np.array([[1, -1, 1], [-1, -1, -1]], np.int32)
    expected = [[1, 1, 1], [-1, 1, -1]]
    np.testing.assert_array_equal(region_grow(image, seeds, 6.0, criterion="seed_mean"), expected)
    np.testing.assert_array_equal(reference_grow(image, seeds, 6.0, "seed_mean"), expected)
    # Mirrored: now the stroke numbered first has mean 10, and (1, 1) must stay unmarked.
    mirrored = image.copy()
    mirrored[0] = mirrored[0, ::-1]
    got = region_grow(mirrored, seeds, 6.0, criterion="seed_mean")
    np.testing.assert_array_equal(got, [[1, 1, 1], [-1, -1, -1]])


def test_a_pixel_reached_twice_in_a_ring_keeps_the_shorter_path() -> None:
    # (1, 1) is reached from (0, 0) diagonally (sqrt(1 + 9) mm) and from (0, 1) straight down
    # (1 mm); only with 1 mm can (2, 1) join within 2.5 mm.
    image = np.zeros((3, 3), np.float32)
    seeds = np.full((3, 3), -1, np.int32)
    seeds[0, :2] = 0
    for criterion in ("neighbour", "seed_mean"):
        got = region_grow(
            image,
            seeds,
            1.0,
            criterion=criterion,
            connectivity=2,
            max_distance=2.5,
            spacing=(1.0, 3.0),
        )
        np.testing.assert_array_equal(got, [[0, 0, -1], [0, 0, -1], [0, 0, -1]])


def test_no_overflow_at_dtype_extremes() -> None:
    for dtype in DTYPES:
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
        image = np.array([[info.min, info.max, info.max]], dtype)
        seeds = np.array([[-1, 0, -1]], np.int32)
        got = region_grow(image, seeds, 1.0)
        np.testing.assert_array_equal(got, [[-1, 0, 0]])  # no wrap-around makes min look close


# --------------------------------------------------------------------------------------------------
# Properties.


@st.composite
def single_class_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    ndim = draw(st.sampled_from((2, 3)))
    shape = tuple(
        draw(st.lists(st.integers(1, 7 if ndim == 2 else 5), min_size=ndim, max_size=ndim))
    )
    values = draw(st.lists(st.integers(0, 9), min_size=math.prod(shape), max_size=math.prod(shape)))
    marks = draw(st.lists(st.booleans(), min_size=math.prod(shape), max_size=math.prod(shape)))
    seeds = np.where(
        np.array(marks).reshape(shape) & (np.arange(math.prod(shape)).reshape(shape) % 4 == 0),
        1,
        -1,
    )
    return (
        np.array(values, np.float64).reshape(shape),
        seeds.astype(np.int32),
        draw(st.integers(1, ndim)),
    )


@settings(max_examples=200, deadline=None)
@given(grow_cases())
def test_seeds_kept_and_grown_pixels_connected_to_their_class(case: dict[str, Any]) -> None:
    image, seeds = case.pop("image"), case.pop("seeds")
    got = region_grow(image, seeds, case.pop("threshold"), **case)
    np.testing.assert_array_equal(got[seeds >= 0], seeds[seeds >= 0])
    structure = ndimage.generate_binary_structure(seeds.ndim, case["connectivity"])
    for k in np.unique(got[got >= 0]):
        components, count = ndimage.label(got == k, structure)
        seeded = set(np.unique(components[seeds == k]))
        assert set(range(1, count + 1)) <= seeded


@settings(max_examples=200, deadline=None)
@given(single_class_cases(), st.floats(0, 5), st.floats(0, 5))
def test_single_class_growth_is_monotone(
    case: tuple[np.ndarray, np.ndarray, int], t1: float, t2: float
) -> None:
    image, seeds, connectivity = case
    low, high = sorted((t1, t2))
    small = region_grow(image, seeds, low, connectivity=connectivity) >= 0
    large = region_grow(image, seeds, high, connectivity=connectivity) >= 0
    assert not np.any(small & ~large)
    near = region_grow(image, seeds, high, connectivity=connectivity, max_distance=2) >= 0
    assert not np.any(near & ~large)


def test_infinite_threshold_fills_everything_reachable() -> None:
    image = np.random.default_rng(0).normal(size=(6, 7, 8))
    seeds = np.full(image.shape, -1, np.int32)
    seeds[0, 0, 0] = 3
    assert np.all(region_grow(image, seeds, math.inf) == 3)


# --------------------------------------------------------------------------------------------------
# Edge cases.


@pytest.mark.parametrize(
    "shape", [(0, 5), (4, 0), (0, 0), (0, 3, 3), (2, 0, 2), (1, 1), (1, 1, 1), (1, 9), (1, 1, 9)]
)
def test_tiny_and_empty_shapes(shape: tuple[int, ...]) -> None:
    image = np.zeros(shape, np.float32)
    for fill in (-1, 0):
        seeds = np.full(shape, fill, np.int32)
        got = region_grow(image, seeds, math.inf, connectivity=len(shape))
        assert got.shape == shape and got.dtype == np.int32
        np.testing.assert_array_equal(got, fill if fill >= 0 or min(shape) == 0 else -1)
    channel_first = np.zeros((2, *shape), np.uint8)
    assert region_grow(channel_first, np.full(shape, -1, np.int32), 1.0).shape == shape


def test_returns_a_new_array_and_keeps_the_inputs() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    seeds = np.full((3, 4), -1, np.int32)
    seeds[1, 1] = 0
    image_before, seeds_before = image.copy(), seeds.copy()
    got = region_grow(image, seeds, math.inf)
    assert not np.shares_memory(got, seeds) and not np.shares_memory(got, image)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(seeds, seeds_before)


def test_nan_pixels_never_join_and_nan_seeds_do_not_grow() -> None:
    image = np.zeros((1, 5), np.float64)
    image[0, 1] = image[0, 4] = np.nan
    seeds = np.array([[-1, 0, -1, -1, 1]], np.int32)
    np.testing.assert_array_equal(region_grow(image, seeds, math.inf), [[-1, 0, -1, -1, 1]])
    seeds = np.array([[0, -1, -1, -1, -1]], np.int32)
    np.testing.assert_array_equal(region_grow(image, seeds, math.inf), [[0, -1, -1, -1, -1]])
    # seed_mean: the mean skips the NaN seed pixel; the other seed pixel grows.
    image = np.array([[np.nan, 1.0, 1.2, 9.0]])
    seeds = np.array([[0, 0, -1, -1]], np.int32)
    got = region_grow(image, seeds, 0.5, criterion="seed_mean")
    np.testing.assert_array_equal(got, [[0, 0, 0, -1]])


# --------------------------------------------------------------------------------------------------
# Errors: raised by the facade, naming the argument.


def _ok() -> dict[str, Any]:
    return {"image": np.zeros((3, 4), np.float32), "seeds": np.full((3, 4), -1, np.int32)}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"image": [[0.0]]}, TypeError, "image must be a numpy.ndarray"),
        ({"seeds": [[0]]}, TypeError, "seeds must be a numpy.ndarray"),
        ({"image": np.zeros((3, 4), np.int64)}, TypeError, "image dtype"),
        ({"image": np.zeros((3, 4), np.bool_)}, TypeError, "image dtype"),
        ({"image": np.zeros((3, 4), np.float16)}, TypeError, "image dtype"),
        ({"seeds": np.full((3, 4), -1, np.int64)}, TypeError, "seeds dtype must be int32"),
        ({"seeds": np.full((4,), -1, np.int32)}, ValueError, "seeds must be 2D"),
        ({"image": np.zeros((3, 5), np.float32)}, ValueError, "image shape"),
        ({"image": np.zeros((2, 2, 3, 4), np.float32)}, ValueError, "image shape"),
        ({"image": np.zeros((0, 3, 4), np.float32)}, ValueError, "channel axis of length 0"),
        ({"seeds": np.full((3, 4), -2, np.int32)}, ValueError, "seeds labels must be -1"),
        ({"threshold": -1.0}, ValueError, "threshold must be >= 0"),
        ({"threshold": math.nan}, ValueError, "threshold must be >= 0"),
        ({"threshold": "1"}, TypeError, "threshold must be a real number"),
        ({"threshold": True}, TypeError, "threshold must be a real number"),
        ({"criterion": "mean"}, ValueError, "criterion must be one of"),
        ({"connectivity": 0}, ValueError, "connectivity must be 1..2"),
        ({"connectivity": 3}, ValueError, "connectivity must be 1..2"),
        ({"connectivity": 1.0}, TypeError, "connectivity must be an int"),
        ({"max_distance": -0.5}, ValueError, "max_distance must be None or >= 0"),
        ({"max_distance": math.nan}, ValueError, "max_distance must be None or >= 0"),
        ({"spacing": (1.0,)}, ValueError, "spacing must have 2 entries"),
        ({"spacing": (1.0, 0.0)}, ValueError, "spacing entries must be positive and finite"),
        ({"spacing": (1.0, math.inf)}, ValueError, "spacing entries must be positive and finite"),
        ({"spacing": (1.0, -2.0)}, ValueError, "spacing entries must be positive and finite"),
        ({"spacing": "ab"}, TypeError, "spacing must be a sequence"),
        ({"spacing": (1.0, "a")}, TypeError, "spacing entry must be a real number"),
    ],
)
def test_bad_arguments_raise_before_the_kernel(
    change: dict[str, Any], error: type[Exception], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grow_module, "_native", None)  # reaching the kernel would fail otherwise
    args = {**_ok(), "threshold": 1.0, **change}
    image, seeds, threshold = args.pop("image"), args.pop("seeds"), args.pop("threshold")
    with pytest.raises(error, match=message):
        region_grow(image, seeds, threshold, **args)


def test_connectivity_three_is_for_3d_only() -> None:
    seeds = np.full((2, 2, 2), -1, np.int32)
    assert region_grow(np.zeros((2, 2, 2), np.uint8), seeds, 1.0, connectivity=3).shape == (2, 2, 2)


# --------------------------------------------------------------------------------------------------
# The C++ boundary: no copies of C-contiguous inputs, and the GIL is released.


class _Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def region_grow(self, *args: Any) -> Any:
        self.calls.append(args)
        return _native.region_grow(*args)


def test_c_contiguous_inputs_reach_the_kernel_uncopied(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(grow_module, "_native", spy)
    image = np.random.default_rng(1).random((2, 5, 6)).astype(np.float32)
    seeds = np.full((5, 6), -1, np.int32)
    seeds[2, 3] = 1
    expected = region_grow(image, seeds, 0.3)
    passed_image, passed_seeds = spy.calls[-1][:2]
    assert np.shares_memory(passed_image, image) and np.shares_memory(passed_seeds, seeds)
    region_grow(image[0], seeds, 0.3)  # single channel: a (1, H, W) view, still no copy
    assert np.shares_memory(spy.calls[-1][0], image)
    # Fortran order and non-native byte order are made contiguous by the facade, same result.
    fortran = np.asfortranarray(image)
    swapped = image.astype(image.dtype.newbyteorder(">"))
    for other in (fortran, swapped):
        np.testing.assert_array_equal(region_grow(other, np.asfortranarray(seeds), 0.3), expected)
        assert not np.shares_memory(spy.calls[-1][0], other)
        assert spy.calls[-1][0].flags.c_contiguous and spy.calls[-1][1].flags.c_contiguous


def test_binding_refuses_what_it_would_have_to_copy() -> None:
    image = np.zeros((1, 4, 6), np.float32)
    seeds = np.full((4, 6), -1, np.int32)
    args = (1.0, "neighbour", 1, math.inf, [])
    assert _native.region_grow(image, seeds, *args).shape == (4, 6)
    bad_inputs = [
        (image[:, :, ::2], seeds[:, ::2]),  # not contiguous
        (np.asfortranarray(np.zeros((1, 4, 6), np.float32)), seeds),  # Fortran order
        (image.astype(np.int64), seeds),  # unsupported dtype
        (image.astype(">f4"), seeds),  # non-native byte order
        (image, seeds.astype(np.int64)),  # wrong seeds dtype
    ]
    for bad_image, bad_seeds in bad_inputs:
        with pytest.raises(TypeError, match="incompatible function arguments"):
            _native.region_grow(bad_image, bad_seeds, *args)
    with pytest.raises(ValueError, match="criterion"):
        _native.region_grow(image, seeds, 1.0, "nope", 1, math.inf, [])
    with pytest.raises(ValueError, match="image spatial shape"):
        _native.region_grow(image, seeds[:3], *args)


def test_kernel_releases_the_gil() -> None:
    # While the kernel floods a volume in a worker thread, this thread must keep running Python.
    image = np.zeros((192, 192, 192), np.float32)
    seeds = np.full(image.shape, -1, np.int32)
    seeds[96, 96, 96] = 0
    inside = threading.Event()
    done = threading.Event()

    def work() -> None:  # spacing and a cap: the pixel-by-pixel grower, the slower one
        args = (image[None], seeds, math.inf, "neighbour", 1, 1e9, [1.0, 1.0, 1.0])
        inside.set()
        _native.region_grow(*args)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    inside.wait()
    start = last = time.perf_counter()
    longest_gap = 0.0
    while not done.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
    duration = time.perf_counter() - start
    worker.join()
    assert duration > 0.05, "the call must be long enough for the check to mean something"
    assert longest_gap < duration / 3, (longest_gap, duration)


# --------------------------------------------------------------------------------------------------
# Package surface and benchmark.


def test_exported_from_the_kernels_package_not_the_top_level() -> None:
    assert medrefine.kernels.region_grow is region_grow
    assert "region_grow" in medrefine.kernels.__all__
    assert "region_grow" not in medrefine.__all__


def test_benchmark_runs_on_small_cases(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a table wide enough not to wrap its cells
    args = SimpleNamespace(size2d=64, size3d=24, repeats=2, seed=0)
    assert grow_bench.run(args) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "neighbour" in out and "seed_mean" in out and "flood" in out


def test_benchmark_scene_grows_strokes_into_their_structures() -> None:
    scene = grow_bench.make_scene((256, 256), np.random.default_rng(0))
    assert len(scene.strokes) == 12 and all(len(s) > 20 for s in scene.strokes)
    for criterion, threshold in (
        ("neighbour", scene.threshold),
        ("seed_mean", scene.mean_threshold),
    ):
        grown = region_grow(scene.image, scene.seeds, threshold, criterion=criterion)
        for cls in range(4):
            assert np.mean(grown[scene.truth == cls] == cls) > 0.9, (criterion, cls)
