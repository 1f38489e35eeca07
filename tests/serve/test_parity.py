"""Remote sessions give exactly what in-process sessions give (2D, 3D), with deltas and progress."""

from __future__ import annotations

import numpy as np
import pytest

import medrefine as mr
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache
from medrefine.types import RefineProgress

from .conftest import Served, marks_2d, marks_3d


def _same_result(a: mr.RefineResult, b: mr.RefineResult) -> None:
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.iterations, a.satisfied, a.wrong_marks, a.marked_pixels, a.mode) == (
        b.iterations,
        b.satisfied,
        b.wrong_marks,
        b.marked_pixels,
        b.mode,
    )
    np.testing.assert_array_equal(a.wrong_where, b.wrong_where)
    assert a.loss_trace == pytest.approx(b.loss_trace, rel=1e-5)  # float32 summation order
    assert (a.note, a.changes, a.unmarked) == (b.note, b.changes, b.unmarked)
    assert a.honoured_before == pytest.approx(b.honoured_before)
    assert sum(c.gained_inside + c.gained_outside for c in b.changes) > 0


def test_2d_session_matches_in_process(served: Served, nuclei: np.ndarray) -> None:
    local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
    events: list[RefineProgress] = []
    with RemoteSession(served.target, model="nuclei-unet2d", progress=events.append) as remote:
        np.testing.assert_array_equal(remote.set_image(nuclei), local.set_image(nuclei))
        assert remote.image_shape == local.image_shape == (96, 112)
        for mark in marks_2d()[:2]:
            local.add(mark)
            remote.add(mark)
        assert len(remote.pending) == 2
        first = remote.refine()
        _same_result(local.refine(), first)
        assert [e.iteration for e in events] == list(range(first.iterations))
        assert all(e.max_iterations >= first.iterations for e in events)
        for mark in marks_2d()[2:]:
            local.add(mark)
            remote.add(mark)
        _same_result(local.refine(), remote.refine())
        assert remote.add_class("lesion") == local.add_class("lesion") == 2
        assert remote.class_names == local.class_names
        local.add(mr.Scribble(2, [(60, 60), (62, 70)], 1))
        remote.add(mr.Scribble(2, [(60, 60), (62, 70)], 1))
        _same_result(local.refine(), remote.refine())
        for step in ("undo", "undo", "redo", "reset", "undo"):
            np.testing.assert_array_equal(getattr(remote, step)(), getattr(local, step)())
            assert (remote.can_undo, remote.can_redo) == (local.can_undo, local.can_redo)
            np.testing.assert_array_equal(remote.mask, remote.get_mask())
        assert [i.kind for i in remote.history] == [i.kind for i in local.history]
        assert [len(i.marks) for i in remote.history] == [len(i.marks) for i in local.history]
        assert remote.num_classes == local.num_classes


def test_3d_chunked_upload_matches_in_process(served: Served, hippo: np.ndarray) -> None:
    volume = mr.Volume(hippo, spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    local = mr.Session(mr.load_model("hippocampus-unet3d"), cache=FeatureCache())
    # 64 KiB pieces: the 255 KiB volume arrives in four chunks the server must reassemble
    with RemoteSession(served.target, "hippocampus-unet3d", chunk_bytes=1 << 16) as remote:
        np.testing.assert_array_equal(remote.set_image(volume), local.set_image(volume))
        assert remote.uploaded
        for mark in marks_3d():
            local.add(mark)
            remote.add(mark)
        _same_result(local.refine(), remote.refine())
        np.testing.assert_array_equal(remote.mask, remote.get_mask())


def test_known_digest_skips_the_upload(served: Served, nuclei: np.ndarray) -> None:
    image = np.ascontiguousarray(nuclei[:, :64, :80])
    with RemoteSession(served.target, "nuclei-unet2d") as first:
        mask = first.set_image(image)
        assert first.uploaded
    with RemoteSession(served.target, "nuclei-unet2d") as second:
        np.testing.assert_array_equal(second.set_image(image), mask)
        assert not second.uploaded
        assert second.session_id != first.session_id
    changed = image.copy()
    changed[0, 0, 0] ^= 1  # one bit: another digest, so the pixels must travel
    with RemoteSession(served.target, "nuclei-unet2d") as third:
        third.set_image(changed)
        assert third.uploaded


def test_deltas_applied_client_side_equal_get_mask(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        versions = [remote.mask_version]
        for i, mark in enumerate(marks_2d()):
            remote.add(mark)
            remote.refine()
            versions.append(remote.mask_version)
            np.testing.assert_array_equal(remote.mask, remote.get_mask(), err_msg=f"step {i}")
        remote.undo()
        remote.undo()
        remote.redo()
        np.testing.assert_array_equal(remote.mask, remote.get_mask())
        assert versions == sorted(set(versions))
        # a client holding an old version (or none) gets what turns that into the current mask
        other = RemoteSession(served.target, "nuclei-unet2d", session_id=remote.session_id)
        np.testing.assert_array_equal(other.set_image(nuclei), remote.mask)
        assert other.resumed
        other.close()


def test_a_second_set_image_starts_a_new_session(served: Served, nuclei: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        remote.add(marks_2d()[0])
        remote.refine()
        first = remote.session_id
        remote.set_image(np.ascontiguousarray(nuclei[:, ::-1]))
        assert remote.session_id != first
        assert remote.history == ()
        assert not remote.can_undo
