"""The check a site head must pass before a session starts from it.

Each of the newest ``check_images`` accepted images is held out once: they are dealt into
``folds`` groups (one image a group while there are no more images than folds:
leave-one-image-out), a head is fitted on every other image of the version, and both it and the
network's own head predict the held-out image's kept rows. Older images train every head but are
no longer checked: a site follows its newest cases, and one mask accepted unfinished long ago
(the network's own errors signed off) does not veto the site for good. Dice on
those rows, each weighted by the pixels it stands for (:mod:`medrefine.site.samples`), estimates
each head's Dice on the whole accepted mask. The site head is used only when

- at least ``min_images`` images were accepted,
- its mean estimated Dice over the held-out images is above the network's, and
- no held-out image loses more than ``tolerance`` against the network's head.

Where the network is wrong in kind at the site (:func:`wrong_in_kind`: its own head's estimated
Dice on the held-out images has a median below ``wide_below``), the last rule becomes "the mean is
above the network's by more than ``tolerance``". There, a mask the network wins on is one its
own answer survived in: one the user could not finish with corrections around the marks (the
network's errors signed off), and a veto from it would keep the site from ever helping. Where
the network is right in kind, every image keeps its veto.

Otherwise the network's head stands, and :attr:`Validation.reason` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from medrefine.records import Validation
from medrefine.site.config import SiteConfig
from medrefine.site.fit import SiteModel, fit_head, predict_rows, stacked, with_classes
from medrefine.site.samples import ImageSample


def wrong_in_kind(
    agreements: Sequence[float],
    below: float,
    what: str = "the masks sessions started from agreed",
) -> tuple[bool, str]:
    """Whether the network is wrong in kind at a site, and why: the median Dice of its masks
    against the accepted ones (``agreements``, the newest images, at least one; ``what`` names
    them in the reason) is below ``below``. The median, not the mean: one image on which a
    network that is right in kind failed (or one mask accepted unfinished) moves neither way."""
    median = float(np.median(agreements))
    wide = median < below
    return wide, (
        f"{what} with the last {len(agreements)} accepted ones at median Dice {median:.2f}, "
        f"{'below' if wide else 'not below'} {below:g}"
    )


def fuses(check: Validation, config: SiteConfig) -> bool:
    """Whether sessions started from the head that passed ``check`` fuse every refine by colour
    (:attr:`medrefine.engine.session.sites.SiteStart.fuse`): held out, the head's Dice averages
    at least ``config.fuse_above`` and the network's own head is wrong in kind (its median
    below ``config.wide_below``). Where the network is right in kind, corrections stay local,
    as in distribution."""
    if not check.site or float(np.mean(check.site)) < config.fuse_above:
        return False
    return bool(check.network) and wrong_in_kind(check.network, config.wide_below)[0]


def sample_dice(predicted: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Mean Dice over the foreground classes (``>= 1``) present in ``labels`` or ``predicted``,
    each row counted ``weights`` times; 1.0 when neither holds any."""
    classes = np.union1d(np.unique(labels), np.unique(predicted))
    scores = []
    for c in classes[classes > 0]:
        truth, guess = labels == c, predicted == c
        both = float(weights[truth & guess].sum())
        total = float(weights[truth].sum() + weights[guess].sum())
        scores.append(2 * both / total if total > 0 else 1.0)
    return float(np.mean(scores)) if scores else 1.0


def validate(
    head: nn.Module,
    samples: Sequence[ImageSample],
    class_names: Sequence[str],
    config: SiteConfig,
) -> Validation:
    """Hold out every image of ``samples`` once (see the module docstring) and decide;
    ``head`` is the network's own, ``class_names`` the site's classes."""
    n = len(samples)
    if n < config.min_images:
        return Validation(
            n, (), (), False, f"{n} accepted image(s); a site head needs {config.min_images}"
        )
    network = SiteModel(with_classes(head, len(class_names)))
    splits = samples[0].splits
    checked = list(range(max(0, n - config.check_images), n))  # the newest images
    folds = min(config.folds, len(checked))
    ours, theirs = [0.0] * len(checked), [0.0] * len(checked)

    def fitted(fold: int) -> SiteModel:
        held = set(checked[fold::folds])
        kept = [s for i, s in enumerate(samples) if i not in held]
        return fit_head(head, kept, class_names, config)

    # Each fit runs on one thread (medrefine.engine.head.threads); the folds' fits share the
    # threads torch may use, two at a time on two cores: an accept's check in about half the time.
    with ThreadPoolExecutor(max(1, min(folds, torch.get_num_threads()))) as pool:
        heads = list(pool.map(fitted, range(folds)))
    for fold, trained in enumerate(heads):
        for k in range(fold, len(checked), folds):
            x, y, w = stacked([samples[checked[k]]], class_names)
            truth, weights = y.numpy(), w.numpy()
            ours[k] = sample_dice(predict_rows(trained, x, splits).numpy(), truth, weights)
            theirs[k] = sample_dice(predict_rows(network, x, splits).numpy(), truth, weights)
    wrong, why = wrong_in_kind(theirs, config.wide_below, "the network's own head agreed")
    return decide(theirs, ours, config.tolerance, checked[0], why if wrong else "")


def decide(
    network: Sequence[float],
    site: Sequence[float],
    tolerance: float,
    offset: int = 0,
    wrong_why: str = "",
) -> Validation:
    """The rule of the module docstring on held-out estimated Dice per image (the images
    checked are the version's from number ``offset + 1`` on). ``wrong_why``: why the
    network is wrong in kind at the site ("" where it is not): the mean must then gain more
    than ``tolerance`` and no single image vetoes."""
    n = len(site)
    worst = int(np.argmin(np.subtract(site, network)))
    loss = network[worst] - site[worst]
    mean_site, mean_network = float(np.mean(site)), float(np.mean(network))
    if wrong_why:
        passed = mean_site > mean_network + tolerance
        reason = (
            f"held out over the {n} newest images, mean Dice {mean_site:.3f} against the "
            f"network's {mean_network:.3f}, {'more' if passed else 'not more'} than "
            f"{tolerance:g} above it; no single image vetoes, the network being wrong in kind "
            f"here ({wrong_why})"
        )
    elif mean_site <= mean_network:
        passed = False
        reason = (
            f"held out, the site head's mean Dice {mean_site:.3f} is not above the network's "
            f"{mean_network:.3f} over the {n} newest images"
        )
    elif loss > tolerance:
        passed = False
        reason = (
            f"held out, image {offset + worst + 1} loses {loss:.3f} Dice with the site head "
            f"({site[worst]:.3f} against the network's {network[worst]:.3f}; at most "
            f"{tolerance:g} allowed)"
        )
    else:
        passed = True
        reason = (
            f"held out over the {n} newest images, mean Dice {mean_site:.3f} against the network's "
            f"{mean_network:.3f}; no image loses more than {tolerance:g}"
        )
    return Validation(n, tuple(network), tuple(site), passed, reason)
