"""What a session needs of a site (:class:`medrefine.Site`): a head to start from, and where an
accepted mask goes. The engine knows the site only through :class:`SiteLike`, so the core does
not depend on how a site samples, fits or stores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from medrefine.engine.config import RefineConfig
from medrefine.errors import InputError, StateError

if TYPE_CHECKING:
    from medrefine.engine.step import ImageState
    from medrefine.models.split import SplitModel
    from medrefine.site import SiteStart, SiteVersion
    from medrefine.types import Mark


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


def accept_step(img: ImageState, pending: tuple[Mark, ...], site: SiteLike | None) -> SiteVersion:
    """Give ``site`` the current mask of ``img`` as the clinician's answer for it.

    Raises:
        StateError: no site, or marks added since the last refine (the mask shown does not
            answer them yet: refine or undo first).
    """
    if site is None:
        raise StateError(
            "no site: open the session with mr.Session(model, site=mr.Site(model)) to accept"
        )
    if pending:
        raise StateError(
            f"{len(pending)} mark(s) added since the last refine: refine() (or undo) before "
            "accept(), so that the accepted mask is the one shown"
        )
    state = img.history.current
    return site.accept(
        img.runner.features, state.mask.unpack(), img.network_mask, state.class_names, img.digest
    )


def widened(config: RefineConfig) -> RefineConfig:
    """``config`` with its adaptive gate allowed to widen to global (the reach of
    :meth:`~medrefine.engine.config.RefineConfig.shifted`), what a site's evidence permits."""
    return replace(config, gate=replace(config.gate, widest=math.inf))
