"""A Session a server can trust: serialised across threads, atomic on failure, returns no
stored array, rolls a diverging step back, keeps bounded history, bounds every size, and answers
bad input with typed errors."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.budget.limits import SessionLimits
from medrefine.engine.head.runner import HeadRunner, label_argmax
from medrefine.engine.refine.loop import Refiner
from medrefine.engine.session.image import labels_and_top
from medrefine.errors import InputError, MedrefineError, NumericalError, ResourceError, StateError
from medrefine.packed import PackedMask
from medrefine.records import Interaction


def _head(session: mr.Session) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in session._head.state_dict().items()}


def _same_head(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _clicks(shape: tuple[int, ...], n: int, seed: int) -> list[mr.Click]:
    rng = np.random.default_rng(seed)
    return [
        mr.Click(int(i % 3), tuple(int(rng.integers(0, s)) for s in shape), radius=1)
        for i in range(n)
    ]


def _snapshot(s: mr.Session) -> tuple[object, ...]:
    """Everything a caller can observe about a session, plus its head's weights."""
    return (
        s.image_shape,
        s.mask.tobytes(),
        s.marks,
        s.pending,
        s.history,
        s.class_names,
        s.can_undo,
        s.can_redo,
        _head(s),
    )


def _assert_unchanged(before: tuple[object, ...], s: mr.Session) -> None:
    after = _snapshot(s)
    assert after[:-1] == before[:-1]
    assert _same_head(before[-1], after[-1])  # type: ignore[arg-type]


def _session(model: mr.SplitModel, image: np.ndarray, marks: int = 2) -> mr.Session:
    s = mr.Session(model)
    s.set_image(image)
    for mark in _clicks(image.shape, marks, seed=1):
        s.add(mark)
    s.refine()
    s.add(_clicks(image.shape, 1, seed=2)[0])
    return s


# --------------------------------------------------------------- 1. threads
def test_two_threads_refining_one_session_lose_nothing(model2d, case2d) -> None:
    image, _ = case2d
    s = mr.Session(model2d)
    s.set_image(image)
    errors: list[BaseException] = []
    per_thread = 12

    def work(seed: int) -> None:
        try:
            for mark in _clicks(image.shape, per_thread, seed):
                s.add(mark)
                with s._lock:  # the documented lock: refine and its shape read as one
                    result = s.refine()
                    assert result.mask.shape == s.image_shape
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (10, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Every mark went into exactly one committed refine (a refine that found its thread's mark
    # already fitted by the other thread's refine adds no entry).
    assert sum(len(i.marks) for i in s.history) == 2 * per_thread
    assert all(i.marks for i in s.history)
    added = _clicks(image.shape, per_thread, 10) + _clicks(image.shape, per_thread, 11)
    assert sorted(map(repr, s.marks)) == sorted(map(repr, added))  # no mark lost or doubled


def test_refine_racing_set_image_and_undo_only_raises_typed_errors(model2d, case2d) -> None:
    image, _ = case2d
    small = image[:32, :40].copy()
    s = mr.Session(model2d)
    s.set_image(image)
    untyped: list[BaseException] = []
    shapes: list[bool] = []
    stop = threading.Event()

    def refiner() -> None:
        for i, mark in enumerate(_clicks(small.shape, 30, 3)):
            try:
                s.add(mark)
                with s._lock:
                    r = s.refine()
                    shapes.append(r.mask.shape == s.image_shape == s.mask.shape)
            except MedrefineError:
                pass  # e.g. no marks left after a set_image: typed, expected
            except BaseException as exc:
                untyped.append(exc)
            if i % 7 == 0:
                with contextlib.suppress(StateError):
                    s.undo()
        stop.set()

    def loader() -> None:
        k = 0
        while not stop.is_set():
            try:
                mask = s.set_image(small if k % 2 else image)
                shapes.append(mask.shape == (small if k % 2 else image).shape)
            except BaseException as exc:
                untyped.append(exc)
            k += 1
            time.sleep(0.001)  # let the refiner take the lock in between

    threads = [threading.Thread(target=refiner), threading.Thread(target=loader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert untyped == []
    assert shapes and all(shapes)


# -------------------------------------------------------------- 2. atomic
def _fail_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> Callable[[], int]:
    """Make ``owner.name`` raise MemoryError on its next call only; returns a call counter."""
    original = getattr(owner, name)
    calls = [0]

    def faulty(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 1:
            raise MemoryError("injected")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, faulty)
    return lambda: calls[0]


def test_failed_set_image_leaves_the_session_as_before(model2d, case2d, monkeypatch) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    before = _snapshot(s)
    calls = _fail_once(monkeypatch, HeadRunner, "predict")
    with pytest.raises(MemoryError, match="injected"):
        s.set_image(image[:30, :30].copy())
    assert calls() == 1
    _assert_unchanged(before, s)
    # Still usable: the pending mark refines as in a session that never failed.
    expected = _session(model2d, image).refine().mask
    np.testing.assert_array_equal(s.refine().mask, expected)


def test_failed_refine_leaves_the_session_as_before(model2d, case2d, monkeypatch) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    before = _snapshot(s)
    _fail_once(monkeypatch, HeadRunner, "predict")  # the whole-image prediction after the loop
    with pytest.raises(MemoryError, match="injected"):
        s.refine()
    _assert_unchanged(before, s)
    np.testing.assert_array_equal(s.refine().mask, _session(model2d, image).refine().mask)


def test_failed_add_class_leaves_the_session_as_before(model2d, case2d, monkeypatch) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    before = _snapshot(s)
    _fail_once(monkeypatch, Interaction, "__init__")  # after the head's last layer has grown
    with pytest.raises(MemoryError, match="injected"):
        s.add_class("lesion")
    _assert_unchanged(before, s)
    assert s.add_class("lesion") == 3 and s.num_classes == 4


@pytest.mark.parametrize("call", ["undo", "redo", "reset"])
def test_failed_undo_redo_reset_leave_the_session_as_before(
    call: str, model2d, case2d, monkeypatch
) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    s.add_class("lesion")
    if call == "redo":
        s.undo()
    before = _snapshot(s)
    _fail_once(monkeypatch, torch.nn.Module, "load_state_dict")
    with pytest.raises(MemoryError, match="injected"):
        getattr(s, call)()
    _assert_unchanged(before, s)
    getattr(s, call)()  # and then it works


# ------------------------------------------------------- 3. copies only
def test_returned_arrays_never_alias_the_session(model2d, case2d) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    result = s.refine()
    kept = s.mask.copy()
    result.mask[:] = 2
    assert np.array_equal(s.mask, kept)
    entry = s.history[-1].result
    assert entry is not None and np.array_equal(entry.mask, kept)
    entry.mask[:] = 1
    assert np.array_equal(s.history[-1].result.mask, kept)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="read-only"):
        result.wrong_where[...] = 0
    for get in (s.undo, s.redo, s.reset, lambda: s.set_image(image), lambda: s.mask):
        mask = get()
        shown = s.mask.copy()
        mask[:] = 2
        assert np.array_equal(s.mask, shown)


# ------------------------------------------------------ 4. divergence
def test_non_finite_head_rolls_the_step_back(model2d, case2d, monkeypatch) -> None:
    image, _ = case2d
    s = _session(model2d, image)
    before = _snapshot(s)
    run = Refiner.run

    def diverging(self: Refiner, runner: HeadRunner, *args: object, **kwargs: object) -> object:
        out = run(self, runner, *args, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            next(runner.head.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(Refiner, "run", diverging)
    with pytest.raises(NumericalError, match="not finite") as info:
        s.refine()
    assert isinstance(info.value, InputError)  # INVALID_ARGUMENT over gRPC, never INTERNAL
    _assert_unchanged(before, s)
    monkeypatch.setattr(Refiner, "run", run)
    np.testing.assert_array_equal(s.refine().mask, _session(model2d, image).refine().mask)


# ------------------------------------------------------ 5. bounded history
def test_history_depth_bounds_undo_and_round_trips_exactly(model2d, case2d) -> None:
    image, _ = case2d
    s = mr.Session(model2d, limits=SessionLimits(history_depth=3))
    s.set_image(image)
    states = []
    for i, mark in enumerate(_clicks(image.shape, 6, seed=5)):
        s.add(mark)
        s.refine()
        if i == 2:
            s.add_class("lesion")
        states.append((s.mask, s.marks, s.class_names, _head(s)))
    for mask, marks, names, head in reversed(states[-4:-1]):
        np.testing.assert_array_equal(s.undo(), mask)
        assert s.marks == marks and s.class_names == names and _same_head(_head(s), head)
    assert not s.can_undo
    with pytest.raises(StateError, match="nothing to undo"):
        s.undo()
    for mask, marks, names, head in states[-3:]:
        np.testing.assert_array_equal(s.redo(), mask)
        assert s.marks == marks and s.class_names == names and _same_head(_head(s), head)
    np.testing.assert_array_equal(s.reset(), mr.Session(model2d).set_image(image))
    assert s.marks == () and s.class_names == model2d.class_names
    np.testing.assert_array_equal(s.undo(), states[-1][0])


def test_packed_masks_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    for mask in (
        rng.integers(0, 3, (7, 9, 5)).astype(np.uint8),
        np.zeros((4, 6), np.uint8),
        np.full((3, 3), 300, np.int32),
        np.arange(12, dtype=np.int32).reshape(3, 4),
    ):
        packed = PackedMask.pack(mask)
        out = packed.unpack()
        assert out.dtype == mask.dtype and np.array_equal(out, mask)
        out[...] = 1  # a new array: the packed one is untouched
        assert np.array_equal(packed.unpack(), mask)


def test_labels_and_top_match_label_argmax() -> None:
    logits = torch.randn(4, 6, 7)
    logits[2, 0, :3] = logits[1, 0, :3]  # ties: the first maximum wins
    labels, low, high = labels_and_top(logits)
    assert np.array_equal(labels, label_argmax(logits))
    assert low == float(logits.max(0).values.min()) and high == float(logits.max())
    logits[3, 2, 2] = float("nan")
    assert math.isnan(labels_and_top(logits)[1])


def test_history_keeps_no_logits_and_compressed_masks(model3d, case3d) -> None:
    image, _ = case3d
    s = mr.Session(model3d)
    s.set_image(image)
    for mark in _clicks(image.shape, 8, seed=6):
        s.add(mark)
        s.refine()
    img = s._img
    assert img is not None
    states = [*img.history._undo, img.history.current]
    assert len(states) == 9
    for state in states:
        assert isinstance(state.mask, PackedMask)
        assert state.mask.nbytes < image.size  # fewer bytes than the uint8 mask itself
        assert not any(isinstance(v, torch.Tensor) for v in vars(state).values())


# ------------------------------------------------------------- 6. bounds
def test_sizes_radii_classes_and_marks_are_bounded(model2d, case2d) -> None:
    image, _ = case2d
    with pytest.raises(ResourceError, match=r"400,000,000 pixels.*134,217,728"):
        mr.Session(model2d).set_image(np.zeros((20000, 20000), np.uint8))
    limits = SessionLimits(max_classes=4, max_marks=3, max_points=50, max_voxels=40 * 46)
    s = mr.Session(model2d, limits=limits)
    with pytest.raises(ResourceError, match="1,920 pixels"):
        s.set_image(np.zeros((40, 48), np.float32))
    s.set_image(image)
    for radius in (4000, 10**6):
        with pytest.raises(ResourceError, match=f"radius {radius} px exceeds the limit of 256"):
            s.add(mr.Click(1, (5, 5), radius=radius))
    with pytest.raises(ResourceError, match="60 points, more than the limit of 50"):
        s.add(mr.Paint(1, np.stack([np.arange(60) % 40, np.arange(60) % 46], 1)))
    with pytest.raises(ResourceError, match="would cover about"):
        s.add(mr.Scribble(1, [(0, 0), (39, 45), (0, 0), (39, 45)] * 5, radius=200))
    s.add_class("a")
    with pytest.raises(ResourceError, match="5 classes exceed this session's limit of 4"):
        s.add_class("b")
    for mark in _clicks(image.shape, 3, seed=0):
        s.add(mark)
    with pytest.raises(ResourceError, match="at most 3 marks"):
        s.add(mr.Click(1, (1, 1)))
    with pytest.raises(InputError):
        SessionLimits(history_depth=-1)


# ------------------------------------------------------- 7. typed errors
def test_plain_bad_input_raises_typed_errors(model2d, case2d) -> None:
    image, _ = case2d
    with pytest.raises(InputError, match="must be a SplitModel"):
        mr.Session(None)  # type: ignore[arg-type]
    s = mr.Session(model2d)
    with pytest.raises(InputError, match="too small"):
        s.set_image(np.zeros((1, 5), np.float32))
    # A backbone failure becomes a typed error: the nuclei network without its own padding
    # (multiple 1) reaches a single pixel on a 3x3 image (with it, the image is padded enough).
    nuclei = mr.load_model("nuclei-unet2d")
    unpadded = replace(nuclei, preprocessing=mr.Preprocessing(2, channels=3, multiple=1))
    with pytest.raises(InputError, match="cannot process an input"):
        mr.Session(unpadded).set_image(np.zeros((3, 3), np.float32))
    s.set_image(image)
    with pytest.raises(InputError, match="must be a Scribble, Click, Box or Paint"):
        s.add(None)  # type: ignore[arg-type]
    for point in ((float("inf"), 2), (2**63, 2), (float("nan"), 1)):
        with pytest.raises(InputError, match="click point"):
            s.add(mr.Click(1, point))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="outside the image"):
        s.add(mr.Click(1, (40, 2)))
    with pytest.raises(InputError, match="non-empty string"):
        s.add_class(None)  # type: ignore[arg-type]


def test_memory_layout_does_not_change_the_mask() -> None:
    """A channel-last RGB image viewed channel-first (as Pillow arrays usually arrive) gives the
    mask of its C-order copy; a strided view once flipped a pixel of the network's mask."""
    hwc = np.moveaxis(mr.load_sample("nuclei-stained").image, 0, -1).copy()
    view = hwc.transpose(2, 0, 1)
    assert not view.flags.c_contiguous
    model = mr.load_model("nuclei-unet2d")
    strided = mr.Session(model, cache=FeatureCache(0)).set_image(view)
    packed = mr.Session(model, cache=FeatureCache(0)).set_image(np.ascontiguousarray(view))
    np.testing.assert_array_equal(strided, packed)
