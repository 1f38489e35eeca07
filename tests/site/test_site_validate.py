"""The held-out check: its rule on per-image Dice, Dice on weighted rows, and the newest-images
window that lets an old unfinished accept stop vetoing the site, and no veto where the
network is wrong in kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medrefine as mr
from medrefine.records import Validation
from medrefine.site.fit import SiteModel, predict_rows, with_classes
from medrefine.site.samples import image_sample
from medrefine.site.validate import decide, fuses, sample_dice, validate

NAMES = ("background", "nucleus")


def test_sample_dice_weights_rows_by_the_pixels_they_stand_for() -> None:
    labels = np.array([1, 1, 0, 0])
    guess = np.array([1, 0, 0, 1])
    assert sample_dice(guess, labels, np.ones(4)) == pytest.approx(0.5)
    # the missed row stands for 3 pixels: 2*1 / (4 + 2)
    assert sample_dice(guess, labels, np.array([1.0, 3.0, 1.0, 1.0])) == pytest.approx(1 / 3)
    assert sample_dice(np.zeros(3, int), np.zeros(3, int), np.ones(3)) == 1.0  # nothing to find


def test_the_rule_wants_a_higher_mean_and_no_image_much_worse() -> None:
    assert decide([0.5, 0.5], [0.9, 0.49], 0.02).passed
    worse = decide([0.5, 0.5], [0.9, 0.4], 0.02, offset=3)
    assert not worse.passed and "image 5 loses 0.100" in worse.reason
    flat = decide([0.5, 0.5], [0.5, 0.5], 0.02)
    assert not flat.passed and "not above" in flat.reason
    assert decide([0.1], [0.8], 0.02).gain == pytest.approx(0.7)


def _image(rng: np.random.Generator, lazy: bool, network: torch.nn.Module) -> object:
    """A made-up accepted image whose label is the sign of feature 0 (learnable), or, for a
    lazy accept, the network head's own answer signed off unchanged."""
    rows = rng.normal(size=(400, 96)).astype(np.float32)
    labels = (rows[:, 0] > 0).astype(np.int64)
    if lazy:
        labels = predict_rows(network, torch.from_numpy(rows), (96,)).numpy()
    return image_sample(rows, (96,), labels, NAMES, np.ones(400, np.float32), "d", (20, 20))


def test_an_old_unfinished_accept_stops_vetoing_once_newer_images_are_checked() -> None:
    head = mr.load_model("nuclei-unet2d").head
    network = SiteModel(with_classes(head, 2))
    rng = np.random.default_rng(0)
    samples = [_image(rng, True, network)] + [_image(rng, False, network) for _ in range(4)]
    # the network agrees with the four learnable masks at about .5: not wrong in kind below .3
    every = mr.SiteConfig(check_images=5, fit_steps=60, wide_below=0.3)
    blocked = validate(head, samples, NAMES, every)  # type: ignore[arg-type]
    assert not blocked.passed and "image 1 loses" in blocked.reason
    newest = mr.SiteConfig(check_images=4, fit_steps=60, wide_below=0.3)
    passed = validate(head, samples, NAMES, newest)  # type: ignore[arg-type]
    assert passed.passed and passed.images == 4 and passed.gain > 0.1


def test_where_the_network_is_wrong_in_kind_a_mask_it_survived_in_does_not_veto() -> None:
    head = mr.load_model("nuclei-unet2d").head
    network = SiteModel(with_classes(head, 2))
    rng = np.random.default_rng(0)
    samples = [_image(rng, True, network)] + [_image(rng, False, network) for _ in range(4)]
    check = validate(head, samples, NAMES, mr.SiteConfig(check_images=5, fit_steps=60))  # type: ignore[arg-type]
    assert check.passed and check.images == 5 and check.network[0] == pytest.approx(1.0)
    assert "no single image vetoes" in check.reason and "median Dice 0.49" in check.reason


def test_wrong_in_kind_the_mean_must_gain_more_than_the_tolerance() -> None:
    why = "wrong in kind"
    network, site = [0.64, 0.02, 0.03, 0.01], [0.20, 0.80, 0.85, 0.80]
    assert not decide(network, site, 0.02).passed  # image 1 vetoes
    assert decide(network, site, 0.02, wrong_why=why).passed
    close = decide([0.30, 0.30], [0.31, 0.31], 0.02, wrong_why=why)
    assert not close.passed and "not more than 0.02 above" in close.reason


def test_only_a_head_right_over_most_of_an_image_where_the_network_is_wrong_fuses() -> None:
    config = mr.SiteConfig()  # fuse_above 0.75, wide_below 0.75

    def check(network: list[float], site: list[float]) -> Validation:
        return Validation(len(site), tuple(network), tuple(site), True, "")

    assert fuses(check([0.02, 0.05, 0.01], [0.86, 0.80, 0.83]), config)  # the shift
    assert not fuses(check([0.86, 0.85, 0.88], [0.91, 0.90, 0.92]), config)  # right in kind
    assert not fuses(check([0.02, 0.05, 0.01], [0.30, 0.35, 0.29]), config)  # a weak head
    assert not fuses(check([0.02], [0.9]), mr.SiteConfig(fuse_above=1.0))  # never
    assert not fuses(check([], []), config)
