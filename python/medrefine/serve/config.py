"""The server's settings and bounds: one frozen dataclass, which `medrefine serve` flags fill."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medrefine.engine.budget.limits import SessionLimits
from medrefine.engine.session.backend import NAMES
from medrefine.errors import InputError

SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``create_server`` needs besides the address.

    Attributes:
        models: model names served (empty: every shipped model).
        max_image_bytes: largest image upload, bytes of raw pixels.
        max_sessions: sessions open at once.
        max_marks_per_call, max_marks_per_session: marks in one call, and queued plus refined in
            one session.
        max_points_per_mark: points of one scribble or pixels of one paint mark.
        max_classes: classes of one session (the model's plus added ones).
        idle_ttl_s: a session untouched this long (seconds) is closed; 0 = never.
        workers: refines and backbone passes running at once (different sessions).
        feature_cache_bytes: budget of the backbone-feature cache.
        image_store_bytes: budget of uploaded images kept by digest (an upload of a known digest
            is skipped).
        mask_versions: masks kept per session to answer deltas against (older: whole mask).
        journal_dir: where ``journal.sqlite3`` lives (None: nothing journaled).
        journal_url: a ``postgresql://`` URL to journal in instead (replicas on several
            machines share it); not with ``journal_dir``.
        upload_idle_s: an OpenSession stream that sends no message for this long (seconds) is
            refused with RESOURCE_EXHAUSTED and its memory freed.
        max_upload_bytes_total: bytes all uploads in progress may hold together (each holds
            the size its header declares, from its first chunk to its end); an upload past it is
            refused with RESOURCE_EXHAUSTED before it is read.
        max_uploads: OpenSession streams served at once; more are refused at once with
            RESOURCE_EXHAUSTED (the handler threads are sized so that other calls always find
            one free).
        drain_s: seconds SIGTERM lets running calls finish before the process exits.
        model_wait_s: models load in the background when the server starts; a call that needs
            one still loading waits this long (seconds), then fails with UNAVAILABLE.
        site_dir: where each model's site lives, ``<model name>.site`` (None: no sites, and
            AcceptMask fails): :mod:`medrefine.serve.sites`.
        token: bearer token every call must carry (None: no token needed).
        tls_cert, tls_key: PEM server certificate and key (both or neither).
        client_ca: PEM CA that client certificates must chain to (mutual TLS).
        backend: what runs every model's backbone, a name ``mr.Session`` accepts: ``"torch"``,
            ``"onnxruntime"``, ``"cuda"``, ``"tensorrt"`` or ``"auto"`` (the fastest here); it
            is resolved once per model when the server starts, so an unavailable one fails then.
        max_set_image_bytes, max_set_image_seconds: each session's admission budget
            (:class:`~medrefine.SessionLimits` fields of those names: an image whose estimated
            set_image is over either is refused before it is uploaded).
        memory_budget_bytes: the most memory all live sessions together may hold, bytes, as
            :mod:`medrefine.engine.budget.admission` estimates them (what each keeps after
            set_image, plus the peak of each set_image in progress); an image that would go
            over it is refused with RESOURCE_EXHAUSTED. None: three quarters of this machine's
            memory.
    """

    models: tuple[str, ...] = ()
    max_image_bytes: int = 1 << 30
    max_sessions: int = 64
    max_marks_per_call: int = 256
    max_marks_per_session: int = 4096
    max_points_per_mark: int = 100_000  # a paint mark of this many 3D pixels is ~1.5 MB of proto
    max_classes: int = 64
    idle_ttl_s: float = 3600.0
    workers: int = 2
    feature_cache_bytes: int = 2 << 30
    image_store_bytes: int = 1 << 30
    mask_versions: int = 8
    journal_dir: Path | None = None
    journal_url: str | None = None
    upload_idle_s: float = 30.0
    max_upload_bytes_total: int = 2 << 30
    max_uploads: int = 128
    drain_s: float = 10.0
    model_wait_s: float = 60.0
    site_dir: Path | None = None
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    client_ca: bytes | None = None
    backend: str = "torch"
    max_set_image_bytes: int | None = 8 << 30
    max_set_image_seconds: float | None = 60.0
    memory_budget_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_image_bytes",
            "max_sessions",
            "max_marks_per_call",
            "max_marks_per_session",
            "max_points_per_mark",
            "workers",
            "mask_versions",
            "max_upload_bytes_total",
            "max_uploads",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 2 <= self.max_classes <= 256:
            raise InputError(f"max_classes must be in 2..256, got {self.max_classes}")
        if self.idle_ttl_s < 0 or self.feature_cache_bytes < 0 or self.image_store_bytes < 0:
            raise InputError("idle_ttl_s and the cache budgets must be >= 0")
        if not self.upload_idle_s > 0 or self.drain_s < 0 or self.model_wait_s < 0:
            raise InputError("upload_idle_s must be > 0, drain_s and model_wait_s >= 0")
        if self.journal_url is not None:
            if self.journal_dir is not None:
                raise InputError("journal_dir and journal_url exclude each other: pick one")
            if not self.journal_url.startswith(("postgresql://", "postgres://")):
                scheme = self.journal_url.split(":")[0]
                raise InputError(f"journal_url must be a postgresql:// URL, not {scheme}:")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("tls_cert and tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise InputError("client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.backend not in NAMES:
            raise InputError(f"backend must be one of {list(NAMES)}, got {self.backend!r}")
        if self.token is not None and not self.token.strip():
            raise InputError("token must not be empty")
        budget = self.memory_budget_bytes
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise InputError(f"memory_budget_bytes must be None or an integer, got {budget!r}")
        if budget is not None and budget < 1:
            raise InputError(f"memory_budget_bytes must be at least 1, got {budget}")
        self.session_limits()  # checks the two set_image budgets

    @property
    def journal(self) -> str | Path | None:
        """Where the journal lives: the PostgreSQL URL, the SQLite directory, or None."""
        return self.journal_url if self.journal_url is not None else self.journal_dir

    def session_limits(self) -> SessionLimits:
        """The limits every session of this server runs under."""
        return SessionLimits(
            max_set_image_bytes=self.max_set_image_bytes,
            max_set_image_seconds=self.max_set_image_seconds,
        )
