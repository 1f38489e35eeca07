"""What a session needs of a site (:class:`medrefine.Site`): a head to start from
(:class:`SiteStart`, :class:`SiteHead`), and where an accepted mask goes. The engine knows the
site only through :class:`SiteLike`, so the core does not depend on how a site samples, fits or
stores; :mod:`medrefine.site` builds on these types."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from medrefine.engine.config import PropagateConfig, RefineConfig
from medrefine.errors import InputError
from medrefine.models.split import SplitModel
from medrefine.records import SiteVersion, Validation


@dataclass(frozen=True)
class SiteHead:
    """The head a session starts from: a version's fitted weights and its classes.

    Attributes:
        version: the site version it was fitted in.
        class_names: its classes (the network's, then those the site learned).
        state: the network head's state dict, fitted (one output per class).
        validation: its held-out check.
        context: ``(K, P)`` float32 weights of its spatial-context term over the box means of
            the features (:mod:`medrefine.engine.head.context`), None for none.
        windows: the box sizes (pixels) of those means, window by window.
    """

    version: int
    class_names: tuple[str, ...]
    state: dict[str, torch.Tensor]
    validation: Validation
    context: torch.Tensor | None = None
    windows: tuple[int, ...] = ()


@dataclass(frozen=True)
class SiteStart:
    """How a new session starts at this site (:meth:`Site.start`).

    Attributes:
        head: the site head to start from, or None for the network's own.
        reason: why that head, in a sentence.
        wide: the site's evidence lets refinement reach wide (the adaptive gate may widen to
            global, as under :meth:`medrefine.RefineConfig.shifted`): its head passed its
            check, or the network's own masks disagreed with the accepted ones.
        wide_reason: why (or why not), in a sentence.
        version: the site version this start was read from (0: none, e.g. no accepted image);
            ``site.start(version)`` gives the same start again while that version is kept.
        fuse: the site head is right over most of an image (its held-out Dice) where the
            network is wrong in kind, so every refine fuses the adapted head with colour models
            seeded by the mask shown (:func:`fused`; :func:`medrefine.site.validate.fuses`).
    """

    head: SiteHead | None
    reason: str
    wide: bool = False
    wide_reason: str = ""
    version: int = 0
    fuse: bool = False


@runtime_checkable
class SiteLike(Protocol):
    """A site as a session uses it (:class:`medrefine.Site` is one)."""

    model: SplitModel

    def start(self) -> SiteStart: ...

    def accept(
        self,
        features: Sequence[torch.Tensor],
        accepted: np.ndarray,
        started: np.ndarray,
        class_names: Sequence[str],
        digest: str,
    ) -> SiteVersion: ...


def check_site(site: Any, model: SplitModel) -> SiteLike | None:
    """``site`` if it can serve a session of ``model`` (None passes through).

    Raises:
        InputError: not a site, or a site of another model.
    """
    if site is None:
        return None
    if not isinstance(site, SiteLike):
        raise InputError(f"site must be a medrefine.Site, got {type(site).__name__}")
    if site.model is not model and site.model.digest() != model.digest():
        raise InputError(
            f"the site belongs to model {site.model.name!r}, the session's is {model.name!r}"
        )
    return site


#: How a session started from a site head that is right over most of an image, where the
#: network is wrong in kind, fuses its refines (:mod:`medrefine.engine.gate.propagate`): every
#: refine, the geodesic distances weighing a nat per 1000 pixels, the colour models one nat per
#: nat, and 200 pixels' worth of the mask shown in each class's colour model (chosen on the
#: stained development series, ``docs/design/site-defaults.md``).
SITE_FUSION = PropagateConfig(kind="on", scale=1000.0, appearance=1.0, shown_prior=200.0)


def widened(config: RefineConfig) -> RefineConfig:
    """``config`` with its adaptive gate allowed to widen to global (the reach of
    :meth:`~medrefine.engine.config.RefineConfig.shifted`), what a site's evidence permits."""
    return replace(config, gate=replace(config.gate, widest=math.inf))


def fused(config: RefineConfig) -> RefineConfig:
    """What a session refines with when it started from a site head that is right over most of
    an image where the network is wrong in kind (:attr:`SiteStart.fuse`): :func:`widened`,
    and, unless ``config`` sets its own propagation, every refine fuses the adapted head's
    evidence with colour models of each class drawn from its marks and from the mask shown
    (:data:`SITE_FUSION`). That mask describes each class's colours better than a first stroke
    does, and a correction spreads by colour to the look-alikes of what was marked instead of
    by distance from the marks."""
    wide = widened(config)
    if config.propagate != PropagateConfig():
        return wide
    return replace(wide, propagate=SITE_FUSION)
