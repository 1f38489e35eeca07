"""``Site``: accepted masks of one model's images, the head they teach, and its record.

>>> import medrefine as mr
>>> model = mr.load_model("nuclei-unet2d")
>>> site = mr.Site(model)                       # in memory; mr.Site.open(path, model) on disk
>>> session = mr.Session(model, site=site)
>>> _ = session.set_image(mr.load_sample("nuclei-stained").image)
>>> version = session.accept()                  # the shown mask is this image's answer
>>> version.version, version.images, version.in_use  # one image: too few to validate
(1, 1, False)

Each accept appends a version (:mod:`medrefine.site.store`), fits the site head on the images
it holds and checks it held out (:mod:`medrefine.site.validate`). New sessions start from the
newest version's head when that check passed, else from the network's own head
(:meth:`Site.start`, which says why). Thread-safe: accepts within one process run one at a time;
processes sharing a file are serialised by SQLite.

Bounds: ``rows_per_image`` rows of a few hundred bytes each per image; a version holds at most
``max_images`` images (past it, the oldest leaves: the site follows its newest cases); the last
``history`` versions are kept for rollback, and images no kept version holds are deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medrefine.engine.head.context import coarse_context, context_rows
from medrefine.engine.head.rows import rows as feature_rows
from medrefine.engine.session.sites import SiteHead, SiteStart
from medrefine.errors import InputError, StateError, UnsupportedModelError
from medrefine.models.split import SplitModel
from medrefine.records import SiteReport, SiteVersion, Validation
from medrefine.site.config import SiteConfig
from medrefine.site.fit import fit_head, row_head
from medrefine.site.samples import ImageSample, agreement, draw, image_sample, seed_of
from medrefine.site.store import FORMAT, MemoryStore, SiteStore, SqliteStore, VersionRecord
from medrefine.site.validate import fuses, validate, wrong_in_kind


def model_key(model: SplitModel) -> str:
    """Identity of a model for a site: its backbone digest, head weights and classes."""
    h = hashlib.sha256(model.digest().encode())
    for key, value in model.head.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(list(model.class_names)).encode())
    return h.hexdigest()[:16]


def _site_head(record: VersionRecord, check: Validation) -> SiteHead:
    """The head a version stored (:meth:`SiteModel.blob`; a version fitted before sites had
    context stored the head's state alone)."""
    assert record.head is not None
    blob = torch.load(io.BytesIO(record.head), weights_only=True)
    if not isinstance(blob.get("head"), dict):  # the head's state alone
        return SiteHead(record.version, record.class_names, blob, check)
    weight = blob["context"]
    context = weight if weight.ndim == 2 else None
    windows = tuple(int(w) for w in blob["windows"]) if context is not None else ()
    return SiteHead(record.version, record.class_names, blob["head"], check, context, windows)


def _version(record: VersionRecord) -> SiteVersion:
    check = None if record.validation is None else Validation.from_json(record.validation)
    return SiteVersion(
        record.version,
        record.kind,
        len(record.images),
        record.class_names,
        record.created_at,
        check,
    )


class Site:
    """Accepted masks of one model's images and the head they teach (module docstring).

    Args:
        model: the split network; its head must be pointwise (a chain of 1x1 convolutions and
            per-pixel operations), since a site keeps per-pixel feature rows.
        config: how the site samples, fits and checks (:class:`SiteConfig`).
        store: where it lives (in memory if None; :meth:`open` for a file).

    Raises:
        UnsupportedModelError: the head is not pointwise.
        InputError: the store holds another model's site or another format.
    """

    def __init__(
        self,
        model: SplitModel,
        config: SiteConfig | None = None,
        *,
        store: SiteStore | None = None,
    ) -> None:
        if not isinstance(model, SplitModel):
            raise InputError(f"model must be a SplitModel, got {type(model).__name__}")
        if config is not None and not isinstance(config, SiteConfig):
            raise InputError(f"config must be a SiteConfig, got {type(config).__name__}")
        row_head(model.head)  # refuses a head that is not pointwise
        self.model = model
        self.config = config or SiteConfig()
        self._store: SiteStore = store if store is not None else MemoryStore()
        self._key = model_key(model)
        wanted = {"format": str(FORMAT), "model": self._key}
        stored = self._store.init(wanted)
        if stored.get("format") != str(FORMAT):
            raise InputError(
                f"site {self._store.where} has format {stored.get('format')!r}; this medrefine "
                f"reads format {FORMAT}"
            )
        if stored.get("model") != self._key:
            raise InputError(
                f"site {self._store.where} was made for another model (key "
                f"{stored.get('model')}, this one {self._key}): a site belongs to one network"
            )
        self._lock = threading.RLock()
        self._heads: dict[int, SiteHead] = {}
        self._decoded: dict[int, ImageSample] = {}
        self._deleted = False

    @classmethod
    def open(cls, path: str | Path, model: SplitModel, config: SiteConfig | None = None) -> Site:
        """The site stored in the SQLite file ``path`` (created if missing), for ``model``; or,
        for a ``postgresql://`` URL, in that database (:mod:`medrefine.site.pg_store`)."""
        if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
            from medrefine.site.pg_store import PgStore

            return cls(model, config, store=PgStore(path))
        return cls(model, config, store=SqliteStore(path))

    @property
    def where(self) -> str:
        """``"memory"`` or the file the site lives in."""
        return self._store.where

    def _live(self) -> SiteStore:
        if self._deleted:
            raise StateError(f"site {self._store.where} was deleted")
        return self._store

    # ------------------------------------------------------------------------------ learning
    def accept(
        self,
        features: Sequence[torch.Tensor],
        accepted: np.ndarray,
        started: np.ndarray,
        class_names: Sequence[str],
        digest: str,
    ) -> SiteVersion:
        """Keep a sample of one accepted image and refit (what :meth:`Session.accept` calls).

        Args:
            features: the image's cached features, each ``(1, C_i, *shape)``, channels-last.
            accepted: the accepted label mask ``shape`` (labels index ``class_names``).
            started: the mask the session started from (same shape).
            class_names: the session's classes.
            digest: the image's digest.

        Returns:
            The new version, fitted and checked.
        """
        store = self._live()
        shape = tuple(accepted.shape)
        if any(tuple(f.shape[2:]) != shape for f in features):
            raise UnsupportedModelError(
                "a site keeps per-pixel feature rows, and this network's head reads features "
                f"at other resolutions ({[tuple(f.shape[2:]) for f in features]} for an image "
                f"of {shape}); cut it where every feature has the image's resolution"
            )
        index, weight = draw(accepted, started, self.config, seed_of(digest, self.config.seed))
        picked = torch.from_numpy(index)
        blocks = [feature_rows(f)[picked].float() for f in features]
        windows = self.config.context_windows
        if windows:  # the features' box means at the drawn pixels
            blocks.append(context_rows(coarse_context(features, shape, windows), picked, shape))
        splits = tuple(int(f.shape[1]) for f in features)
        labels = accepted.reshape(-1)[index]
        sample = image_sample(
            torch.cat(blocks, 1).numpy(), splits, labels, tuple(class_names), weight, digest,
            shape, agreement(started, accepted), windows,
        )  # fmt: skip
        with self._lock:
            limit = self.config.max_images

            def make(
                latest: VersionRecord | None, image_id: int | None
            ) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
                held = () if latest is None else latest.images
                names = self.model.class_names if latest is None else latest.class_names
                names = names + tuple(n for n in class_names if n not in names)
                return "accept", (*held, int(image_id or 0))[-limit:], names

            record = store.append(sample.to_bytes(), make)
            self._fit(store, record)
            store.purge(self.config.history)
            return _version(store.get(record.version))

    def _samples(self, store: SiteStore, ids: Sequence[int]) -> list[ImageSample]:
        """The stored samples ``ids``, decoded once per process (checksums checked on read)."""
        with self._lock:
            cache = self._decoded
            out = []
            for i in ids:
                if i not in cache:
                    cache[i] = ImageSample.from_bytes(store.image(i))
                out.append(cache[i])
            self._decoded = {i: cache[i] for i in ids}  # only what this version holds
            return out

    def _fit(self, store: SiteStore, record: VersionRecord) -> None:
        samples = self._samples(store, record.images)
        check = validate(self.model.head, samples, record.class_names, self.config)
        head = None
        if samples:
            fitted = fit_head(self.model.head, samples, record.class_names, self.config)
            buffer = io.BytesIO()
            torch.save(fitted.blob(), buffer)
            head = buffer.getvalue()
        store.set_head(record.version, head, check.to_json())

    # ------------------------------------------------------------------------------ starting
    def start(self, version: int | None = None) -> SiteStart:
        """How a new session starts: from the newest checked version's head if its check
        passed, else from the network's own; and whether refinement may reach wide
        (:class:`SiteStart`). ``version``: as that kept version decided it instead (a session
        rebuilt later starts as it first did); NotFoundError if it is no longer kept."""
        store = self._live()
        record = store.latest() if version is None else store.get(version)
        if record is None:
            return SiteStart(None, "no accepted image yet", False, "no accepted image yet")
        if record.validation is None and version is not None:
            return SiteStart(None, f"site v{version} is being fitted")
        if record.validation is None:  # fitting in another process: the last checked one
            checked = [r for r in store.versions() if r.validation is not None]
            if not checked:
                return SiteStart(None, f"site v{record.version} is being fitted")
            record = checked[-1]
        check = Validation.from_json(record.validation or {})
        head = None
        if check.passed and record.head is not None:
            with self._lock:
                head = self._heads.get(record.version)
                if head is None:
                    head = _site_head(record, check)
                    self._heads = {record.version: head}
        if head is not None:
            why = f"site v{record.version}: {check.reason}"
            wide_why, fuse = "the site head passed its check", fuses(check, self.config)
            if fuse:
                wide_why += (
                    "; its mask seeds each refine's colour models (held-out Dice "
                    f"{float(np.mean(check.site)):.2f}, at least {self.config.fuse_above:g}, "
                    "where the network is wrong in kind)"
                )
            return SiteStart(head, why, True, wide_why, record.version, fuse)
        why = f"site v{record.version} not used: {check.reason}"
        if check.network:  # one reading with the check's: the network's own head, held out
            wide, wide_why = wrong_in_kind(
                check.network, self.config.wide_below, "the network's own head agreed"
            )
            return SiteStart(None, why, wide, wide_why, record.version)
        # too few images for a check: the masks sessions started from (the network's own)
        recent = self._samples(store, record.images)[-self.config.wide_images :]
        if not recent:
            return SiteStart(None, why, False, "no accepted image", record.version)
        wide, wide_why = wrong_in_kind([r.agreement for r in recent], self.config.wide_below)
        return SiteStart(None, why, wide, wide_why, record.version)

    # ------------------------------------------------------------------------------ record
    def report(self) -> SiteReport:
        """Every kept version, oldest first (``print(site.report())`` shows a table)."""
        versions = tuple(_version(r) for r in self._live().versions())
        return SiteReport(self._store.where, self.model.name or self._key, versions)

    def rollback(self, version: int) -> SiteVersion:
        """Make a kept version's images, classes and head the site's again (as a new version,
        so the rollback itself can be rolled back)."""
        store = self._live()
        with self._lock:
            target = store.get(version)
            record = store.append(None, lambda _latest, _id: ("rollback", target.images,
                                                              target.class_names))  # fmt: skip
            store.set_head(record.version, target.head, target.validation or {})
            return _version(store.get(record.version))

    def reset(self) -> SiteVersion:
        """Forget every accepted image (as a new version: roll back to undo it)."""
        store = self._live()
        with self._lock:
            record = store.append(None, lambda _l, _i: ("reset", (), self.model.class_names))
            check = Validation(0, (), (), False, "reset: no accepted image")
            store.set_head(record.version, None, check.to_json())
            return _version(store.get(record.version))

    def delete(self) -> None:
        """Delete the site and everything it stored (its file too); the object is then
        unusable (StateError)."""
        with self._lock:
            self._live().delete()
            self._deleted = True
