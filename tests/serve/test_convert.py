"""Label packing, mask deltas and mark conversion round-trip exactly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import medrefine as mr
from medrefine import errors
from medrefine.serve import convert


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_pack_unpack_round_trip(data: st.DataObject, bits: int) -> None:
    top = min((1 << bits) - 1, 2**31 - 1)
    labels = data.draw(hnp.arrays(np.int64, st.integers(0, 41), elements=st.integers(0, top)))
    packed = convert.pack(labels, bits)
    assert len(packed) == -(-labels.size * bits // 8)
    np.testing.assert_array_equal(convert.unpack(packed, bits, labels.size), labels)


def test_packing_layout_is_lsb_first() -> None:
    # pixels 1, 2, 3, 0 at 2 bits: 0b00_11_10_01 = 0x39; 1, 0, 1 at 1 bit: 0b101
    assert convert.pack(np.array([1, 2, 3, 0]), 2) == bytes([0x39])
    assert convert.pack(np.array([1, 0, 1]), 1) == bytes([0b101])
    assert convert.pack(np.array([258]), 16) == bytes([2, 1])
    assert convert.bits_for(2) == 1 and convert.bits_for(3) == 2 and convert.bits_for(257) == 16


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(2, 3), st.integers(2, 9))
def test_delta_turns_old_into_new(data: st.DataObject, ndim: int, classes: int) -> None:
    shape = data.draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    labels = st.integers(0, classes - 1)
    old = data.draw(hnp.arrays(np.uint8, shape, elements=labels))
    new = old.copy()
    if data.draw(st.booleans()):
        where = tuple(slice(data.draw(st.integers(0, s - 1)), None) for s in shape)
        new[where] = data.draw(labels)
    delta = convert.encode_delta(old, 7, new, classes)
    assert delta.base_version == 7
    out = convert.apply_delta(old, delta, shape)
    np.testing.assert_array_equal(out, new)
    assert out.dtype == np.uint8
    changed = np.argwhere(old != new)
    if changed.size:
        assert list(delta.box_start) == changed.min(0).tolist()
        assert list(delta.box_stop) == (changed.max(0) + 1).tolist()
    else:
        assert delta.data == b""
    whole = convert.encode_delta(None, 7, new, classes)
    assert whole.base_version == 0
    np.testing.assert_array_equal(convert.apply_delta(None, whole, shape), new)


def test_delta_of_a_small_change_is_small() -> None:
    old = np.zeros((128, 128, 128), np.uint8)
    new = old.copy()
    new[60:64, 60:70, 60:66] = 2
    delta = convert.encode_delta(old, 1, new, 3)
    assert len(zlib.decompress(delta.data)) == 4 * 10 * 6 * 2 // 8
    assert len(delta.data) < 100


def test_mark_round_trip() -> None:
    marks = [
        mr.Scribble(1, [(1, 2, 3), (4, 5, 6)], 2),
        mr.Click(2, (7, 8, 9), 3),
        mr.Box(1, (0, 1, 2), (3, 4, 5)),
    ]
    for mark in marks:
        assert convert.mark_from_proto(convert.mark_to_proto(mark), 3, 10) == mark
    paint = mr.Paint(1, np.array([[1, 2], [3, 4]]))
    back = convert.mark_from_proto(convert.mark_to_proto(paint), 2, 10)
    assert isinstance(back, mr.Paint)
    np.testing.assert_array_equal(back.pixels, paint.pixels)


def test_marks_checked_against_dimensions_and_bounds() -> None:
    msg = convert.mark_to_proto(mr.Scribble(1, [(1, 2, 3), (4, 5, 6)], 2))
    odd = convert.pb.Mark(click=convert.pb.Click(label=1, point=[1, 2, 3], radius=1))
    with pytest.raises(errors.InputError, match="multiple of 2 coordinates, got 3"):
        convert.mark_from_proto(odd, 2, 10)
    with pytest.raises(errors.ResourceError, match="2 points, more than the limit 1"):
        convert.mark_from_proto(msg, 3, 1)
    with pytest.raises(errors.InputError, match="no kind"):
        convert.mark_from_proto(convert.pb.Mark(), 2, 10)
