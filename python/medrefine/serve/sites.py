"""A server's sites (``medrefine serve --site-dir DIR``): one per model, and how sessions use them.

Each served model whose head is pointwise gets the site ``DIR/<model name>.site`` (SQLite, shared
by every server process on the same directory: :mod:`medrefine.site.store`). A session opened with
that model starts as the site says at that moment (:meth:`medrefine.Site.start`), and the site
version it started from is journaled with the session, so a session rebuilt from the journal (a
restart, another replica) starts from the same head: :func:`session_start`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

import medrefine as mr
from medrefine.errors import InputError, NotFoundError, StateError, UnsupportedModelError
from medrefine.site import SiteStart, SiteVersion

log = logging.getLogger("medrefine.serve")

#: What a site file of model ``name`` is called inside the site directory.
SUFFIX = ".site"


class Sites:
    """The sites of a server's models (none without a site directory).

    Args:
        directory: where the site files live (created if missing), or None for no sites.
        models: the served models by name.

    Raises:
        InputError: a file in ``directory`` holds another model's site, another format, or is
            no site at all (the server does not start: move the file or pick another folder).
    """

    def __init__(self, directory: Path | None, models: Mapping[str, mr.SplitModel]) -> None:
        self.directory = directory
        self._sites: dict[str, mr.Site] = {}
        self._refused: dict[str, str] = {}
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the site directory {directory}: {exc}") from exc
        for name, model in models.items():
            self.add(name, model)

    def add(self, name: str, model: mr.SplitModel) -> None:
        """Open the site of model ``name`` (a server loading its models one by one)."""
        if self.directory is None:
            return
        try:
            self._sites[name] = mr.Site.open(self.directory / f"{name}{SUFFIX}", model)
        except UnsupportedModelError as exc:
            self._refused[name] = str(exc)
            log.warning("model %s keeps no site: %s", name, exc)

    def get(self, name: str) -> mr.Site | None:
        """The site of model ``name``, or None."""
        return self._sites.get(name)

    def require(self, name: str) -> mr.Site:
        """The site of model ``name``.

        Raises:
            StateError: the server keeps none for it (no ``--site-dir``, or a head that is not
                pointwise), naming why.
        """
        site = self._sites.get(name)
        if site is not None:
            return site
        if name in self._refused:
            raise StateError(f"model {name!r} keeps no site on this server: {self._refused[name]}")
        raise StateError(
            f"this server keeps no site for model {name!r}: start it with `medrefine serve "
            "--site-dir DIR` (one site file per model in DIR) to accept masks"
        )


class PinnedSite:
    """A site as one session sees it: its start fixed when the session opened, accepts going to
    the site itself (a :class:`medrefine.engine.session.sites.SiteLike`).

    ``site`` may be None when the journal says the session started from a site this server does
    not keep: it starts from the network's head, and an accept raises StateError.
    """

    def __init__(self, model: mr.SplitModel, site: mr.Site | None, start: SiteStart) -> None:
        self.model = model
        self._site = site
        self._start = start

    def start(self) -> SiteStart:
        return self._start

    def accept(
        self,
        features: Sequence[torch.Tensor],
        accepted: np.ndarray,
        started: np.ndarray,
        class_names: Sequence[str],
        digest: str,
    ) -> SiteVersion:
        if self._site is None:
            raise StateError("this server keeps no site for the session's model (--site-dir)")
        return self._site.accept(features, accepted, started, class_names, digest)


def session_start(
    name: str, site: mr.Site | None, journaled: int | None
) -> tuple[SiteStart | None, int]:
    """How a session of model ``name`` starts, and the site version to journal with it.

    Args:
        name: the model's name.
        site: the model's site on this server, or None.
        journaled: None for a new session; for one rebuilt from the journal, the site version
            it started from (0: none).

    Returns:
        ``(start, version)``: the start to pin (None: no site, the session runs without one) and
        the version it was read from (0: none). A journaled version no longer kept (the site
        keeps its last ``SiteConfig.history`` versions), or a site this server does not keep,
        starts the rebuilt session from the network's head, and the start's reason says so: its
        marks are replayed on that head, so its masks may differ from before.
    """
    if journaled is None:
        start = None if site is None else site.start()
        return start, 0 if start is None else start.version
    if journaled == 0:
        if site is None:
            return None, 0
        return SiteStart(None, "no accepted image when the session opened"), 0
    if site is None:
        why = f"this server keeps no site for model {name!r} (--site-dir)"
    else:
        try:
            return site.start(journaled), journaled
        except NotFoundError:
            why = f"the site no longer keeps it ({site.config.history} versions are kept)"
    reason = (
        f"the session started from site v{journaled} and {why}: it was rebuilt from the "
        "network's head, so its masks may differ from before"
    )
    return SiteStart(None, reason), 0


def describe(start: SiteStart | None) -> tuple[str, str]:
    """``(head_source, head_reason)`` of a session started by ``start``, worded as
    :attr:`medrefine.Session.head_source`."""
    if start is None:
        return "network", "no site"
    source = "network" if start.head is None else f"site v{start.head.version}"
    reach = "reaches wide" if start.wide else "stays local"
    return source, f"{start.reason}; refinement {reach}: {start.wide_reason}"
