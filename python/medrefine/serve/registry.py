"""Live sessions of a server: each with its own lock, mask versions and journal id, all bounded.

A session is opened from an image (uploaded, or kept by digest in the :class:`ImageStore`); a
session the journal knows is rebuilt by replaying its interactions on the same image and model,
from the same site head (:mod:`medrefine.serve.sites`).
Sessions idle longer than the TTL are dropped (their journal stays, so they can be reopened).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

import medrefine as mr
from medrefine.backends.base import FeatureExtractor
from medrefine.engine.budget import admission
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.session.backend import resolve_backend
from medrefine.errors import InputError, NotFoundError, ResourceError
from medrefine.serve import convert
from medrefine.serve.config import ServerConfig
from medrefine.serve.journal import ConflictError, EventKind, SessionJournal, SessionRecord
from medrefine.serve.sites import PinnedSite, Sites, session_start
from medrefine.serve.status import SessionClosedError, SessionNotLiveError, UnavailableError
from medrefine.site import SiteStart, SiteVersion
from medrefine.v1 import refine_pb2 as pb

log = logging.getLogger("medrefine.serve")

PRESETS: dict[int, Callable[[], mr.RefineConfig]] = {
    pb.PRESET_DEFAULT: mr.RefineConfig,
    pb.PRESET_SHIFTED: mr.RefineConfig.shifted,
    pb.PRESET_PAPER: mr.RefineConfig.paper,
}


class TrackingCache(FeatureCache):
    """A feature cache that remembers, per thread, whether its last ``get`` was a hit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._local = threading.local()

    def get(self, key: tuple[str, str, str]) -> tuple[object, ...] | None:  # type: ignore[override]
        value = super().get(key)
        self._local.hit = value is not None
        return value

    @property
    def last_hit(self) -> bool:
        """Whether this thread's last lookup found the features."""
        return bool(getattr(self._local, "hit", False))


class ImageStore:
    """Uploaded images by SHA-256 digest, least recently used dropped beyond a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> np.ndarray | None:
        with self._lock:
            image = self._images.get(digest)
            if image is not None:
                self._images.move_to_end(digest)
            return image

    def put(self, digest: str, image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes:
            return
        with self._lock:
            if digest in self._images:
                self._images.move_to_end(digest)
                return
            while self._images and self._bytes + image.nbytes > self.max_bytes:
                self._bytes -= self._images.popitem(last=False)[1].nbytes
            self._images[digest] = image
            self._bytes += image.nbytes


@dataclass
class Entry:
    """One live session.

    Attributes:
        id, model, digest: as journaled. session: the in-process session.
        lock: serialises every call on this session.
        version: the current mask's version. masks: recent versions' masks (for deltas).
        last_used: ``time.monotonic()`` of the last call.
        held: memory the session keeps, bytes, as admission estimated it at open.
        seq: the journal's sequence number of the last event this copy reflects (every call
            checks it against the journal, every append expects it: one owner at a time).
        start: how it started at its model's site (None: no site).
        accepted: the last mask version accepted and the site version that made.
    """

    id: str
    model: str
    digest: str
    session: mr.Session
    keep: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 0
    masks: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    held: float = 0.0
    seq: int = 0
    start: SiteStart | None = None
    accepted: tuple[int, SiteVersion] | None = None

    def new_version(self, mask: np.ndarray) -> None:
        """Record ``mask`` as the next version (keeps the last ``keep`` masks)."""
        self.version += 1
        self.masks[self.version] = mask
        while len(self.masks) > self.keep:
            self.masks.popitem(last=False)

    def update(self, known_version: int) -> pb.MaskUpdate:
        """The current mask as a delta against ``known_version`` (the whole mask if unknown)."""
        mask = self.masks[self.version]
        base = self.masks.get(known_version) if known_version else None
        delta = convert.encode_delta(base, known_version, mask, self.session.num_classes)
        if delta.ByteSize() > 3 << 20:
            return pb.MaskUpdate(version=self.version, fetch_required=True)
        return pb.MaskUpdate(version=self.version, delta=delta)

    def status(self) -> pb.SessionStatus:
        s = self.session
        return pb.SessionStatus(
            class_names=s.class_names,
            pending_marks=len(s.pending),
            history_length=len(s.history),
            can_undo=s.can_undo,
            can_redo=s.can_redo,
            mask_version=self.version,
        )


@dataclass(frozen=True)
class Opened:
    """Outcome of :meth:`Registry.open`."""

    entry: Entry
    resumed: bool
    features_cached: bool


def _memory_budget(config: ServerConfig) -> float | None:
    """The server-wide budget: the configured one, else 3/4 of the machine's memory (None
    where that is unknown: no server-wide bound)."""
    if config.memory_budget_bytes is not None:
        return float(config.memory_budget_bytes)
    total = admission.total_bytes()
    return None if total is None else 0.75 * total


class Registry:
    """The server's sessions, models, feature cache, image store and journal."""

    def __init__(
        self,
        config: ServerConfig,
        journal: SessionJournal | None,
        on_loaded: Callable[[str, bool], None] | None = None,
    ) -> None:
        """Models load in a background thread, in order (a restarted server answers at once);
        ``on_loaded(name, ok)`` is called as each is ready (or failed), from that thread."""
        self.config = config
        self.journal = journal
        self.names: tuple[str, ...] = config.models or tuple(mr.list_models())
        self.models: dict[str, mr.SplitModel] = {}
        self.backends: dict[str, FeatureExtractor] = {}
        self.sites = Sites(config.site_dir, {})
        self._loaded = {name: threading.Event() for name in self.names}
        self._all_loaded = threading.Event()
        self._load_errors: dict[str, str] = {}
        self.cache = TrackingCache(config.feature_cache_bytes)
        self.images = ImageStore(config.image_store_bytes)
        self.compute = threading.BoundedSemaphore(config.workers)
        self.limits = config.session_limits()
        self.memory_budget = _memory_budget(config)
        self._sessions: dict[str, Entry] = {}
        self._opening: set[str] = set()
        self._claims: dict[str, float] = {}  # set_image peaks in progress, by session id
        self._lock = threading.Lock()
        loader = threading.Thread(
            target=self._load, args=(on_loaded,), name="model-loader", daemon=True
        )
        loader.start()

    def _load(self, on_loaded: Callable[[str, bool], None] | None) -> None:
        """Load every model, resolve its backend and open its site, one after the other."""
        for name in self.names:
            start = time.perf_counter()
            try:
                model = mr.load_model(name)
                self.backends[name] = resolve_backend(model, self.config.backend)
                self.sites.add(name, model)
                self.models[name] = model
                log.info("model %s ready in %.1f s", name, time.perf_counter() - start)
            except Exception as exc:  # the model's calls say why; the others are served
                self._load_errors[name] = f"{type(exc).__name__}: {exc}"
                log.error("model %s could not be loaded: %s", name, self._load_errors[name])
            finally:
                if on_loaded is not None:
                    on_loaded(name, name in self.models)
                self._loaded[name].set()
        self._all_loaded.set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until every model has loaded (or failed); whether they all did in time."""
        return self._all_loaded.wait(timeout)

    def ready_models(self) -> list[tuple[str, mr.SplitModel]]:
        """The served models in order, each waited for (at most ``model_wait_s``); those
        still loading or failed are left out."""
        out = []
        for name in self.names:
            try:
                out.append((name, self.model(name)))
            except (UnavailableError, InputError):
                continue
        return out

    # ------------------------------------------------------------------ lookup
    def model(self, name: str) -> mr.SplitModel:
        """Model ``name``, once loaded: a call during a restart waits for it, at most
        ``model_wait_s`` (then UnavailableError, reason MODEL_LOADING).

        Raises:
            NotFoundError: not served here. InputError: it failed to load (the log says why).
        """
        if name not in self._loaded:
            raise NotFoundError(f"model {name!r} is not served here; served: {sorted(self.names)}")
        if not self._loaded[name].wait(self.config.model_wait_s):
            raise UnavailableError(
                f"model {name!r} is still loading (the server started moments ago): call again "
                "shortly"
            )
        if name in self._load_errors:
            raise InputError(f"model {name!r} failed to load here: {self._load_errors[name]}")
        return self.models[name]

    def get(self, session_id: str) -> Entry:
        """The live session ``session_id`` (NotFoundError if none, or idle past the TTL:
        :class:`SessionClosedError` if it was closed, else :class:`SessionNotLiveError`)."""
        self.sweep()
        with self._lock:
            entry = self._sessions.get(session_id)
        if entry is None:
            head = self.journal.head(session_id) if self.journal and session_id else None
            if head is not None and head.closed:
                raise SessionClosedError(
                    f"session {session_id!r} was closed and cannot be reopened; open a new one"
                )
            raise SessionNotLiveError(
                f"no open session {session_id!r} here (open it again by its id)"
            )
        entry.last_used = time.monotonic()
        return entry

    def check(self, entry: Entry) -> None:
        """Refuse a copy of a session that the journal has moved past (the caller holds
        ``entry.lock``): another server changed or closed it. The stale copy is dropped, so the
        next open by id replays the journal (:class:`SessionNotLiveError`)."""
        if entry.closed:
            raise SessionNotLiveError(f"session {entry.id!r} is not open here any more")
        if self.journal is None:
            return
        head = self.journal.head(entry.id)
        if head is None or (head.seq == entry.seq and not head.closed):
            return
        self.drop(entry.id)
        if head.closed:
            raise SessionClosedError(f"session {entry.id!r} was closed through another server")
        log.info("session %s changed through another server: dropped here", entry.id)
        raise SessionNotLiveError(
            f"session {entry.id!r} was changed through another server (event {head.seq}, this "
            f"copy {entry.seq}): open it again by its id"
        )

    @contextlib.contextmanager
    def hold(self, session_id: str) -> Iterator[Entry]:
        """The live session ``session_id``, locked and checked against the journal."""
        entry = self.get(session_id)
        with entry.lock:
            self.check(entry)
            yield entry

    def journal_event(self, entry: Entry, kind: EventKind, payload: bytes = b"") -> None:
        """Journal one interaction of ``entry`` (its lock held), expecting the journal where
        this copy left it; a copy another server has moved past is dropped and refused."""
        if self.journal is None:
            return
        try:
            entry.seq = self.journal.append(entry.id, kind, payload, expect=entry.seq)
        except ConflictError as exc:
            self.drop(entry.id)
            raise SessionNotLiveError(
                f"session {entry.id!r} was changed through another server: open it again by its id"
            ) from exc
        except Exception:
            self.drop(entry.id)  # the journal, not memory, is what a reopen rebuilds
            raise

    def live(self, session_id: str) -> Entry | None:
        with self._lock:
            return self._sessions.get(session_id)

    def sweep(self) -> None:
        """Drop sessions idle for longer than the TTL (their journal remains)."""
        if not self.config.idle_ttl_s:
            return
        now = time.monotonic()
        with self._lock:
            idle = [
                k
                for k, e in self._sessions.items()
                if now - e.last_used > self.config.idle_ttl_s and not e.lock.locked()
            ]
            for key in idle:
                self._sessions.pop(key).closed = True
        for key in idle:
            log.info("session %s dropped after %.0f s idle", key, self.config.idle_ttl_s)

    def drop(self, session_id: str) -> None:
        """Forget a live session (its journal remains)."""
        with self._lock:
            entry = self._sessions.pop(session_id, None)
        if entry is not None:
            entry.closed = True

    def close(self, session_id: str) -> None:
        """CloseSession: forget it and mark it closed in the journal."""
        entry = self.get(session_id)
        with entry.lock:
            if self.journal is not None:
                self.journal.close_session(session_id)
            self.drop(session_id)

    # --------------------------------------------------------------- admission
    def admit(self, name: str, shape: tuple[int, ...]) -> admission.Estimate | None:
        """The estimate of set_image for model ``name`` on an image of spatial ``shape``, if it
        is admitted: within each session's budget (ResourceError as ``Session.set_image``
        raises it) and, with what the live sessions hold, within the server's
        ``memory_budget_bytes`` (ResourceError naming both)."""
        model, backend = self.model(name), self.backends[name]
        limits = admission.admit(model, backend, shape, self.limits)
        found = admission.estimate(model, backend, shape, limits)
        if found is not None:
            with self._lock:
                self._check_total(found)
        return found

    def _check_total(self, found: admission.Estimate) -> None:
        """Raise if ``found``'s peak does not fit beside what the server holds (lock held)."""
        if self.memory_budget is None:
            return
        held = sum(e.held for e in self._sessions.values()) + sum(self._claims.values())
        if held + found.peak_bytes > self.memory_budget:
            raise ResourceError(
                f"the server holds about {admission.size(held)} for {len(self._sessions)} open "
                f"sessions and set_image of an image of spatial shape {found.shape} would add "
                f"{found.describe()}, over the server's memory budget of "
                f"{admission.size(self.memory_budget)} (memory_budget_bytes): close a session or "
                "wait for idle ones to expire"
            )

    def _claim(self, session_id: str, found: admission.Estimate | None) -> None:
        """Hold ``found``'s peak for the set_image of ``session_id`` (ResourceError if it does
        not fit)."""
        if found is None:
            return
        with self._lock:
            self._check_total(found)
            self._claims[session_id] = found.peak_bytes

    def _unclaim(self, session_id: str) -> None:
        with self._lock:
            self._claims.pop(session_id, None)

    # -------------------------------------------------------------------- open
    def new_id(self, wanted: str) -> str:
        return wanted or uuid.uuid4().hex

    def reserve(self, session_id: str) -> None:
        """Claim a session slot for ``session_id`` (ResourceError when the server is full)."""
        self.sweep()
        with self._lock:
            if session_id in self._opening:
                raise ResourceError(f"session {session_id!r} is being opened by another call")
            if len(self._sessions) + len(self._opening) >= self.config.max_sessions:
                raise ResourceError(
                    f"{self.config.max_sessions} sessions are open, the server's limit; "
                    "close one or wait for idle ones to expire"
                )
            self._opening.add(session_id)

    def release(self, session_id: str) -> None:
        with self._lock:
            self._opening.discard(session_id)

    def create(
        self,
        record: SessionRecord,
        image: np.ndarray | mr.Volume,
        replay: bool,
    ) -> Opened:
        """Build the session of ``record`` on ``image`` (a reserved slot), replaying if asked.

        The caller holds the reservation for ``record.id`` and releases it afterwards.
        """
        model = self.model(record.model)
        site = self.sites.get(record.model)
        start, site_version = session_start(
            record.model, site, record.site_version if replay else None
        )
        session = mr.Session(
            model,
            PRESETS[record.preset](),
            cache=self.cache,
            backend=self.backends[record.model],
            limits=self.limits,
            site=None if start is None else PinnedSite(model, site, start),
        )
        array = image.array if isinstance(image, mr.Volume) else image
        layout = record.geometry.get("channels_last")
        channels_last = layout if isinstance(layout, bool) else None
        if channels_last and array.ndim == model.spatial_dims + 1:  # (y, x, C): spatial first
            spatial = tuple(int(n) for n in array.shape[:-1])
        else:
            spatial = model.preprocessing.spatial_shape(array)
        found = self.admit(record.model, spatial)
        with self.compute:
            self._claim(record.id, found)
            try:
                mask = session.set_image(image, channels_last=channels_last)
            finally:
                self._unclaim(record.id)
            cached = self.cache.last_hit
            keep = self.config.mask_versions
            entry = Entry(record.id, record.model, record.digest, session, keep, start=start)
            if replay and self.journal is not None:
                mask = self._replay(entry)
        if session.num_classes > self.config.max_classes:
            raise ResourceError(
                f"model {record.model!r} has {session.num_classes} classes, more than the "
                f"server's limit {self.config.max_classes}"
            )
        entry.new_version(mask)
        entry.held = 0.0 if found is None else found.held_bytes
        if not replay and self.journal is not None:
            try:
                self.journal.open_session(replace(record, site_version=site_version))
            except ConflictError as exc:  # another server created this id since we looked
                raise SessionNotLiveError(
                    f"session {record.id!r} was just opened through another server: open it "
                    "again by its id"
                ) from exc
        with self._lock:
            self._sessions[record.id] = entry
        return Opened(entry, replay, cached)

    def _replay(self, entry: Entry) -> np.ndarray:
        """Re-run the journaled interactions of ``entry`` on its fresh session; the final mask."""
        assert self.journal is not None
        s = entry.session
        ndim = len(s.image_shape)
        events = self.journal.events(entry.id)
        for kind, payload in events:
            if kind == "add":
                s.add(convert.mark_from_proto(pb.Mark.FromString(payload), ndim, 1 << 62))
            elif kind == "refine":
                s.refine()
            elif kind == "undo":
                s.undo()
            elif kind == "redo":
                s.redo()
            elif kind == "reset":
                s.reset()
            elif kind == "add_class":
                s.add_class(payload.decode())
            else:
                raise InputError(f"journal of session {entry.id!r} holds an unknown event {kind!r}")
        # the version numbers the first holder gave: 1 for the network's mask, +1 per change
        entry.version = sum(kind in ("refine", "undo", "redo", "reset") for kind, _ in events)
        entry.seq = len(events)
        log.info("session %s replayed from the journal (%d events)", entry.id, len(events))
        return s.mask
