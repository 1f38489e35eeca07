"""Inputs a Session takes only when typed: its config, class names and image layouts."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import medrefine as mr
from medrefine.engine.budget.cache import FeatureCache
from medrefine.errors import InputError

ONE_STEP = "loop.max_iterations=1,loop.wide_iterations=1"


@pytest.fixture()
def session(model2d: mr.SplitModel, case2d: tuple[np.ndarray, np.ndarray]) -> mr.Session:
    s = mr.Session(model2d, cache=FeatureCache(max_bytes=0))
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
    session = mr.Session(model2d, cache=FeatureCache(max_bytes=0))
    session.set_image(case2d[0])
    want = session._require_image().image
    session.set_image((case2d[0] * np.float32(1e-8)).astype(np.float32))
    np.testing.assert_allclose(session._require_image().image, want, atol=1e-5)


@pytest.fixture(scope="module")
def rgb() -> mr.Session:
    return mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache(max_bytes=0))


@pytest.fixture(scope="module")
def volume3d() -> mr.Session:
    return mr.Session(mr.load_model("hippocampus-unet3d"), cache=FeatureCache(max_bytes=0))


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(0).random(shape) * 255).astype(np.float32)


def test_channels_last_rgb_that_also_reads_channel_first_is_refused(rgb: mr.Session) -> None:
    image = _noise((3, 256, 3))  # a 3x256 RGB strip, channels last
    with pytest.raises(InputError, match=r"\(256, 3\).*\(3, 256\).*channels_last") as info:
        rgb.set_image(image)
    assert "channels_last=True" in str(info.value) and "channels_last=False" in str(info.value)
    assert rgb.set_image(image, channels_last=True).shape == (3, 256)
    assert rgb.set_image(image, channels_last=False).shape == (256, 3)


def test_an_rgb_picture_given_to_the_3d_model_is_refused(volume3d: mr.Session) -> None:
    picture = _noise((47, 40, 3))
    with pytest.raises(InputError, match=r"volume of \(47, 40, 3\).*2D picture of \(47, 40\)"):
        volume3d.set_image(picture)
    with pytest.raises(InputError, match="2 spatial axes"):
        volume3d.set_image(picture, channels_last=True)
    assert volume3d.set_image(picture, channels_last=False).shape == (47, 40, 3)


def test_a_stack_of_four_slices_is_not_taken_as_rgba(rgb: mr.Session) -> None:
    stack = _noise((4, 64, 64))  # four different slices: the 4th is no alpha channel
    with pytest.raises(InputError, match=r"4 channels and the 4th varies.*image\[:3\]"):
        rgb.set_image(stack)
    with pytest.raises(InputError, match="4th varies"):
        rgb.set_image(stack, channels_last=False)
    assert rgb.set_image(stack[:3]).shape == (64, 64)
    opaque = stack.copy()
    opaque[3] = 255  # a real alpha channel, fully opaque: dropping it loses nothing
    np.testing.assert_array_equal(rgb.set_image(opaque), rgb.set_image(stack[:3]))


def test_unambiguous_layouts_are_taken_as_before(rgb: mr.Session, volume3d: mr.Session) -> None:
    assert rgb.set_image(_noise((3, 64, 48))).shape == (64, 48)
    assert rgb.set_image(_noise((64, 48))).shape == (64, 48)
    assert rgb.set_image(_noise((64, 48, 3)), channels_last=True).shape == (64, 48)
    assert volume3d.set_image(_noise((20, 24, 16))).shape == (20, 24, 16)
    assert volume3d.set_image(_noise((1, 20, 24, 16))).shape == (20, 24, 16)


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_channels_last_that_is_not_a_bool_is_refused(rgb: mr.Session, bad: object) -> None:
    with pytest.raises(InputError, match="channels_last must be"):
        rgb.set_image(_noise((3, 64, 48)), channels_last=bad)  # type: ignore[arg-type]
