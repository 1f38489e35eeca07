"""Inputs a Session takes only when typed: its config, class names and image layouts."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import medrefine as mr
from medrefine.errors import InputError

ONE_STEP = "loop.max_iterations=1,loop.wide_iterations=1"


@pytest.fixture()
def session(model2d: mr.SplitModel, case2d: tuple[np.ndarray, np.ndarray]) -> mr.Session:
    s = mr.Session(model2d, cache=mr.FeatureCache(max_bytes=0))
    s.set_image(case2d[0])
    return s


@pytest.mark.parametrize("bad", ["fast", None, {"loop": {"lr": 0.1}}, mr.SessionLimits()])
def test_config_set_to_anything_but_a_refine_config_is_refused(
    session: mr.Session, bad: object
) -> None:
    before = session.config
    with pytest.raises(InputError, match="config must be a RefineConfig"):
        session.config = bad  # type: ignore[assignment]
    assert session.config is before
    session.add(mr.Click(1, (10, 10), radius=1))
    assert session.refine().mask.shape == (40, 46)  # still usable


def test_config_set_to_a_refine_config_is_used(session: mr.Session) -> None:
    session.config = mr.RefineConfig().with_overrides(ONE_STEP)
    session.add(mr.Click(1, (10, 10), radius=1))
    assert session.refine().iterations <= 1


def test_config_setter_waits_for_a_call_in_progress(session: mr.Session) -> None:
    """The setter takes the session's lock: it cannot swap the settings under a running call."""
    swapped = threading.Event()
    new = mr.RefineConfig().with_overrides(ONE_STEP)

    def swap() -> None:
        session.config = new
        swapped.set()

    with session._lock:  # what every public call holds while it runs
        thread = threading.Thread(target=swap)
        thread.start()
        assert not swapped.wait(0.2)
        assert session.config is not new
    thread.join(5)
    assert swapped.is_set() and session.config is new


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "\u200b", "\u00a0\u3000", " \u200d "])
def test_class_name_without_a_visible_character_is_refused(session: mr.Session, name: str) -> None:
    names = session.class_names
    with pytest.raises(InputError, match="visible character"):
        session.add_class(name)
    assert session.class_names == names and not session.can_undo


@pytest.mark.parametrize("name", ["lesion", " lesion ", "é", "\u75c5\u53d8"])
def test_class_name_with_a_visible_character_is_taken(session: mr.Session, name: str) -> None:
    assert session.add_class(name) == 3 and session.class_names[-1] == name


def test_the_image_edges_are_read_on_is_z_scored_whatever_its_scale(
    model2d: mr.SplitModel, case2d: tuple[np.ndarray, np.ndarray]
) -> None:
    # A network fed the image as given (model2d) still has edges and region growing read a
    # z-scored copy; an absolute floor of 1e-6 on its std flattened an image scaled by 1e-8.
    session = mr.Session(model2d, cache=mr.FeatureCache(max_bytes=0))
    session.set_image(case2d[0])
    want = session._require_image().image
    session.set_image((case2d[0] * np.float32(1e-8)).astype(np.float32))
    np.testing.assert_allclose(session._require_image().image, want, atol=1e-5)
