"""Image-led propagation: the fused score, the held-out folds and the choice they make."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engine.config import PropagateConfig
from medrefine.engine.gate.propagate import class_distances, fuse, propagates
from medrefine.errors import InputError


def _two_regions() -> np.ndarray:
    """A (1, 20, 30) image: dark left half, bright right half, a strong edge at x = 15."""
    image = np.zeros((1, 20, 30), np.float32)
    image[0, :, 15:] = 10.0
    return image


def test_distances_stop_at_the_image_edge_and_unmarked_classes_take_the_farthest() -> None:
    image = _two_regions()
    shape = image.shape[1:]
    index = np.ravel_multi_index(([10, 10], [2, 27]), shape)
    d = class_distances(index, np.array([0, 1]), 3, image, edge_weight=10.0)
    assert d.shape == (3, 20, 30) and d.dtype == np.float32
    assert d[0, 10, 2] == 0 and d[1, 10, 27] == 0
    # Same Euclidean gap (4 px) to each seed's side, but class 1's path crosses the edge.
    assert d[1, 10, 12] > 3 * d[0, 10, 12]
    np.testing.assert_array_equal(d[2], np.maximum(d[0], d[1]))


def test_with_one_class_marked_and_no_margin_limit_the_others_are_unreachable() -> None:
    image = _two_regions()
    index = np.ravel_multi_index(([10], [2]), image.shape[1:])
    d = class_distances(index, np.array([1]), 2, image, edge_weight=10.0)
    assert np.isinf(d[0]).all() and np.isfinite(d[1]).all()
    logits = torch.zeros(2, *image.shape[1:])
    logits[0] = 5.0  # the network is sure of class 0 everywhere
    assert (fuse(logits, torch.from_numpy(d), 4.0).argmax(0) == 1).all()  # a flood


def test_with_one_class_marked_the_others_stand_a_margin_behind_it() -> None:
    image = _two_regions()
    index = np.ravel_multi_index(([10], [2]), image.shape[1:])
    d = class_distances(index, np.array([1]), 3, image, edge_weight=10.0, lone_margin=8.0)
    np.testing.assert_allclose(d[0], d[1] + 8.0)
    np.testing.assert_array_equal(d[2], d[0])
    logits = torch.zeros(2, *image.shape[1:])
    logits[0, :, 20:] = 5.0  # the network is sure of class 0 on the far side only
    fused = fuse(logits, torch.from_numpy(d[:2]), 4.0).argmax(0)
    # the margin (2 nats) takes what the network leaves open, not what it is sure of
    assert (fused[:, :20] == 1).all() and (fused[:, 20:] == 0).all()


def test_long_scale_keeps_the_network_short_scale_follows_the_marks() -> None:
    logits = torch.tensor([[2.0, 2.0], [0.0, 0.0]])  # (K=2, 2 pixels): class 0 at both
    distances = torch.tensor([[30.0, 0.0], [0.0, 30.0]])  # pixel 0 near class 1's mark
    assert fuse(logits, distances, 1e6).argmax(0).tolist() == [0, 0]
    assert fuse(logits, distances, 1.0).argmax(0).tolist() == [1, 0]


def test_an_unreachable_class_loses_unless_no_class_is_reachable() -> None:
    logits = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    inf = float("inf")
    distances = torch.tensor([[3.0, inf], [inf, inf]])
    scores = fuse(logits, distances, 1.0)
    assert scores.argmax(0).tolist() == [0, 1]  # pixel 1: nobody reachable, the network
    assert torch.isfinite(scores).all()


def test_by_default_only_marks_of_an_added_class_propagate() -> None:
    labels = np.array([0, 1, 1])
    assert not propagates(PropagateConfig(), labels, added_from=2)
    assert propagates(PropagateConfig(), np.append(labels, 2), added_from=2)
    assert propagates(PropagateConfig(kind="on"), labels, added_from=2)
    assert not propagates(PropagateConfig(kind="off"), np.append(labels, 2), added_from=2)


@pytest.mark.parametrize("field", ["scale=0", "edge_weight=-1", "kind=always"])
def test_bad_propagate_settings_are_refused_by_name(field: str) -> None:
    from medrefine.engine.config import RefineConfig

    with pytest.raises(InputError, match=f"propagate.{field.split('=')[0]}"):
        RefineConfig().with_overrides(f"propagate.{field}")


def _plateau_scene() -> tuple[np.ndarray, np.ndarray]:
    """A (120, 120) image with a large plateau of a brightness the network never saw (rows and
    columns 20-99) and its mask."""
    rng = np.random.default_rng(3)
    inside = np.zeros((120, 120), bool)
    inside[20:100, 20:100] = True
    image = np.where(inside, 2.5, 0.0) + rng.normal(0, 0.1, inside.shape)
    return image.astype(np.float32), inside


@pytest.mark.parametrize("kind", ["new_classes", "off"])
def test_a_new_class_spreads_over_its_structure_from_one_stroke(model2d, kind: str) -> None:
    import medrefine as mr

    image, inside = _plateau_scene()
    config = mr.RefineConfig().with_overrides(f"propagate.kind={kind}")
    session = mr.Session(model2d, config)
    session.set_image(image)
    new = session.add_class("plateau")
    session.add(mr.Scribble(new, [(28, 28), (28, 40)]))  # one corner of the plateau
    session.add(mr.Scribble(0, [(110, 10), (110, 60)]))
    result = session.refine()
    covered = float((result.mask[inside] == new).mean())
    outside = float((result.mask[~inside] == new).mean())
    if kind == "off":  # the head alone reaches about its gate's width around the stroke
        assert result.propagation is None and covered < 0.5
    else:
        assert result.propagation == config.propagate.scale
        assert covered > 0.9 and outside < 0.05  # a band along the edge at most


def test_marks_of_the_network_s_own_classes_do_not_propagate(model2d, case2d) -> None:
    import medrefine as mr

    image, _ = case2d
    session = mr.Session(model2d)
    session.set_image(image)
    session.add(mr.Scribble(1, [(5, 5), (5, 12)]))
    session.add(mr.Scribble(0, [(30, 30), (30, 40)]))
    off = mr.Session(model2d, mr.RefineConfig().with_overrides("propagate.kind=off"))
    off.set_image(image)
    for m in session.pending:
        off.add(m)
    result = session.refine()
    assert result.propagation is None
    np.testing.assert_array_equal(result.mask, off.refine().mask)


def _two_plateaus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (120, 120) textured image with two separate plateaus of a brightness the network never
    saw (rows and columns 15-44, and 75-104); the first and the second plateau's masks."""
    rng = np.random.default_rng(5)
    first = np.zeros((120, 120), bool)
    first[15:45, 15:45] = True
    second = np.zeros_like(first)
    second[75:105, 75:105] = True
    image = np.where(first | second, 2.5, 0.0) + rng.normal(0, 0.6, first.shape)
    return image.astype(np.float32), first, second


@pytest.mark.parametrize("appearance", [0.0, PropagateConfig().appearance])
def test_a_new_class_reaches_an_unmarked_look_alike_by_its_colour(
    model2d, appearance: float
) -> None:
    import medrefine as mr

    image, first, second = _two_plateaus()
    config = mr.RefineConfig().with_overrides(f"propagate.appearance={appearance}")
    session = mr.Session(model2d, config)
    session.set_image(image)
    new = session.add_class("plateau")
    session.add(mr.Scribble(new, [(25, 20), (25, 40)]))  # the first plateau only
    session.add(mr.Scribble(0, [(8, 60), (8, 115)]))  # background, as far from either
    mask = session.refine().mask
    reached = float((mask[second] == new).mean())
    background = float((mask[~(first | second)] == new).mean())
    if appearance == 0:  # distances alone: the second plateau lies beyond two edges
        assert reached < 0.2
    else:
        assert reached > 0.8 and background < 0.1
    # Both share the rest: the marked plateau is the new class, the network's own classes
    # keep the background.
    assert float((mask[first] == new).mean()) > 0.8


def test_an_image_s_colour_cells_are_binned_once(model2d, monkeypatch: pytest.MonkeyPatch) -> None:
    import medrefine as mr
    from medrefine.engine.session import image as image_state

    binned = []
    original = image_state.bin_index

    def counted(image: np.ndarray, bins: int) -> np.ndarray:
        binned.append(bins)
        return original(image, bins)

    monkeypatch.setattr(image_state, "bin_index", counted)
    image, first, _ = _two_plateaus()
    session = mr.Session(model2d)
    session.set_image(image)
    new = session.add_class("plateau")
    session.add(mr.Scribble(new, [(25, 20), (25, 40)]))
    session.refine()
    session.add(mr.Scribble(0, [(8, 60), (8, 115)]))
    mask = session.refine().mask
    assert binned == [mr.RefineConfig().propagate.bins]  # two refines, one binning
    assert float((mask[first] == new).mean()) > 0.8
