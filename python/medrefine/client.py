"""RemoteSession: a :class:`medrefine.Session` served by ``medrefine serve``, same methods.

Switching a viewer from in-process to remote is one line::

    session = mr.Session(mr.load_model("nuclei-unet2d"))
    session = RemoteSession("127.0.0.1:50051", model="nuclei-unet2d")

The image is uploaded once, in chunks of at most 1 MiB; a server that already holds an image with
the same SHA-256 skips the upload (and the backbone, if it has the features). Masks come back as
the changed box against the version this client holds. Errors are raised as the same
``medrefine.errors`` types as in process, each also a :class:`RemoteError` carrying the gRPC
status code.

Torch-free: this module and what it imports need numpy, grpcio and protobuf only (the ``serve``
extra), so a viewer can depend on medrefine without PyTorch (``tests/test_client_torch_free.py``).
What it shares with :class:`medrefine.Session` is :class:`medrefine.SessionLike`.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import numpy as np

from medrefine import errors
from medrefine.records import Interaction, SiteVersion
from medrefine.serve import convert
from medrefine.types import Mark, RefineProgress, RefineResult, Volume
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from medrefine.models.split import SplitModel

PRESETS = {
    "default": pb.PRESET_DEFAULT,
    "shifted": pb.PRESET_SHIFTED,
    "paper": pb.PRESET_PAPER,
}


class RemoteError(errors.MedrefineError):
    """An error the server answered with; ``code`` is its gRPC status code, ``reason`` the
    ``medrefine.v1.ErrorReason`` name the server gave (trailing metadata ``medrefine-reason``),
    or None."""

    def __init__(self, message: str, code: grpc.StatusCode, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class RemoteInputError(errors.InputError, RemoteError):
    """INVALID_ARGUMENT."""


class RemoteNotFoundError(errors.NotFoundError, RemoteError):
    """NOT_FOUND."""


class RemoteResourceError(errors.ResourceError, RemoteError):
    """RESOURCE_EXHAUSTED."""


class RemoteStateError(errors.StateError, RemoteError):
    """FAILED_PRECONDITION."""


class RemoteCancelledError(errors.CancelledError, RemoteError):
    """CANCELLED or DEADLINE_EXCEEDED: the call stopped. A refine the server had already
    committed when the deadline passed (its answer was on the way) is found by the next call,
    which reconciles (:attr:`RemoteSession.reconciled`)."""


class RemoteUnauthenticatedError(RemoteError):
    """UNAUTHENTICATED: no bearer token, or the wrong one."""


class RemoteUnavailableError(RemoteError):
    """UNAVAILABLE: the server cannot be reached (down, restarting, wrong TLS settings), or is
    still loading the model (``reason`` ``MODEL_LOADING``). A call that ended so may or may not
    have taken effect; the next call finds out (:attr:`RemoteSession.reconciled`)."""


_ERRORS: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: RemoteInputError,
    grpc.StatusCode.NOT_FOUND: RemoteNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RemoteResourceError,
    grpc.StatusCode.FAILED_PRECONDITION: RemoteStateError,
    grpc.StatusCode.CANCELLED: RemoteCancelledError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RemoteCancelledError,
    grpc.StatusCode.UNAUTHENTICATED: RemoteUnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: RemoteUnavailableError,
}
#: Codes after which a call may or may not have taken effect on the server.
_UNKNOWN_OUTCOME = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
}
REASON_KEY = "medrefine-reason"  # trailing metadata key of a refusal's ErrorReason name


_NOT_LIVE = "SESSION_NOT_LIVE"  # the reason of a NOT_FOUND for a session not held here now


def _reason(exc: grpc.RpcError) -> str | None:
    """The ``medrefine-reason`` trailing metadata of a failed call, if any."""
    trailing = getattr(exc, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == REASON_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _raise(exc: grpc.RpcError) -> NoReturn:
    code: grpc.StatusCode = exc.code()
    details = exc.details() or code.name
    raise _ERRORS.get(code, RemoteError)(details, code, _reason(exc)) from None


@dataclass(frozen=True)
class Reconciled:
    """What became of a call whose outcome this client did not learn (connection lost,
    deadline passed, server killed): found out by the next call.

    Attributes:
        call: ``"refine"``, ``"undo"``, ``"redo"``, ``"reset"``, ``"add"`` or ``"add_class"``.
        took_effect: the server's session holds its change (the client's mask, marks and
            classes now mirror it); False: it never happened.
        version: the session's mask version now.
    """

    call: str
    took_effect: bool
    version: int


@dataclass(frozen=True)
class ClientTls:
    """TLS settings of a client (PEM bytes).

    Attributes:
        ca: roots the server's certificate must chain to (None: the system's).
        cert, key: the client's certificate and key, for a server that requires mutual TLS.
        server_name: the name to check the server's certificate against, if not the target's host.
    """

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None


def connect(target: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to ``target`` ("host:port"), plaintext or TLS."""
    if tls is None:
        return grpc.insecure_channel(target)
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, creds, options=options)


def stub(channel: grpc.Channel) -> Any:
    """A ``medrefine.v1.Refiner`` stub on ``channel`` (the generated class is untyped)."""
    make: Any = pb_grpc.RefinerStub  # generated, untyped
    return make(channel)


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def image_digest(array: np.ndarray) -> str:
    """SHA-256 (lowercase hex) of an image's bytes as uploaded: C order, little-endian."""
    return hashlib.sha256(_little_endian(array).data).hexdigest()


class RemoteSession:
    """A session on a medrefine server; the methods and properties of :class:`medrefine.Session`.

    Args:
        target: the server, "host:port".
        model: model name (or a :class:`medrefine.SplitModel`, whose name is used).
        preset: refinement settings, ``"default"``, ``"shifted"`` or ``"paper"``.
        token: bearer token, if the server requires one.
        tls: TLS settings (None: plaintext).
        session_id: reopen (or create) this session id; None picks a new random one. The id
            travels as ``x-session-id`` metadata on every call, for load balancers with affinity.
        progress: called with a :class:`medrefine.types.RefineProgress` before every gradient
            step of a refine; raising from it cancels the refine (the session stays as before).
        timeout: seconds allowed per call (None: no deadline).
        chunk_bytes: upload piece size, at most 1 MiB (the server refuses larger ones).
        channel: an existing channel to use instead of ``target`` and ``tls``.
    """

    def __init__(
        self,
        target: str,
        model: str | SplitModel,
        preset: str = "default",
        *,
        token: str | None = None,
        tls: ClientTls | None = None,
        session_id: str | None = None,
        progress: Callable[[RefineProgress], None] | None = None,
        timeout: float | None = None,
        chunk_bytes: int = convert.CHUNK_BYTES,
        channel: grpc.Channel | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise errors.InputError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.model = model if isinstance(model, str) else model.name
        self.preset = preset
        self.progress = progress
        self.timeout = timeout
        if not 1 <= chunk_bytes <= convert.CHUNK_BYTES:
            raise errors.InputError(f"chunk_bytes must be in 1..{convert.CHUNK_BYTES}")
        self.chunk_bytes = chunk_bytes
        self._own_channel = channel is None
        self._channel = channel or connect(target, tls)
        self._stub = stub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._wanted_id = session_id or uuid.uuid4().hex
        self.session_id: str | None = None
        self.uploaded = False  # whether the last set_image sent the pixels
        self._mask: np.ndarray | None = None
        self._version = 0
        self._shape: tuple[int, ...] = ()
        self._status = pb.SessionStatus()
        self._pending: list[Mark] = []
        # (mask version, the marks that mask was refined on): known from this client's own
        # calls, else read from the server's history once per version (see ``marks``)
        self._refined: tuple[int, tuple[Mark, ...]] | None = None
        self.resumed = False  # whether set_image found the session already on the server
        self.last_mask_bytes = 0  # encoded size of the last mask update received
        #: the last call whose outcome was unknown, once a later call found it (else None)
        self.reconciled: Reconciled | None = None
        # a call whose outcome is unknown: (call, mask version, queued marks, classes) before it
        self._unsure: tuple[str, int, int, int, Mark | None] | None = None
        self._opened: tuple[pb.OpenSessionHeader, np.ndarray] | None = None  # to reopen
        self._head = ("network", "no image yet")
        self.site_version = 0  # the site version the session started from (0: none)

    # ----------------------------------------------------------------- calls
    def _meta(self) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, ("x-session-id", self.session_id or self._wanted_id))

    def _call(self, method: str, request: Any) -> Any:
        """Call ``method``; if the server no longer holds the session (restarted, or another
        replica), reopen it by id (the server replays its journal) and call once more."""
        try:
            return self._invoke(method, request)
        except RemoteNotFoundError as exc:
            if not self._reopen_after(exc):
                raise
            if hasattr(request, "known_version"):
                request.known_version = self._version
            return self._invoke(method, request)

    def _invoke(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._meta(), timeout=self.timeout)
        except grpc.RpcError as exc:
            _raise(exc)

    def _reopen_after(self, exc: RemoteNotFoundError) -> bool:
        """Reopen the session if ``exc`` says it is not live here; whether that was done."""
        if self._opened is None or self.session_id is None or exc.reason != _NOT_LIVE:
            return False
        header, data = self._opened
        header.session_id = self.session_id
        self._start(header, data)
        return True

    def _id(self) -> str:
        if self.session_id is None:
            raise errors.StateError("no image: call set_image() first")
        return self.session_id

    def _apply(self, update: pb.MaskUpdate) -> np.ndarray:
        self.last_mask_bytes = update.ByteSize()
        if update.fetch_required:
            self._mask = self._fetch_mask()
        else:
            self._mask = convert.apply_delta(self._mask, update.delta, self._shape)
        self._version = update.version
        return self._mask.copy()

    def _fetch_mask(self) -> np.ndarray:
        def fetch() -> list[pb.MaskChunk]:
            try:
                return list(self._invoke("GetMask", pb.GetMaskRequest(session_id=self._id())))
            except grpc.RpcError as exc:
                _raise(exc)

        try:
            chunks = fetch()
        except RemoteNotFoundError as exc:
            if not self._reopen_after(exc):
                raise
            chunks = fetch()
        header = chunks[0].header
        data = b"".join(c.data for c in chunks[1:])
        delta = pb.MaskDelta(
            box_start=[0] * len(header.shape),
            box_stop=header.shape,
            bits_per_label=header.bits_per_label,
            data=data,
        )
        self._version = header.version
        return convert.apply_delta(None, delta, header.shape)

    def get_mask(self) -> np.ndarray:
        """The whole current mask fetched from the server (GetMask), not from deltas."""
        if self._unsure is not None:
            self.sync()
        return self._fetch_mask()

    # ----------------------------------------------------------------- image
    def set_image(
        self, image: np.ndarray | Volume, *, channels_last: bool | None = None
    ) -> np.ndarray:
        """Upload the image (unless the server holds it) and return the network's mask.

        Args:
            image: as :meth:`medrefine.Session.set_image`: ``(H, W)``, ``(C, H, W)``, ``(D, H, W)``
                or ``(C, D, H, W)`` numeric array, or a :class:`medrefine.Volume`.
            channels_last: as :meth:`medrefine.Session.set_image`: None, channel-first and an
                ambiguous shape refused; True, the last axis is the channels; False,
                channel-first whatever the sizes (``OpenSessionHeader.channels_last``).

        Returns:
            Label mask of the image's spatial shape, uint8.
        """
        volume = image if isinstance(image, Volume) else Volume(np.asarray(image))
        array = volume.array
        if not isinstance(array, np.ndarray) or array.size == 0:
            raise errors.InputError("image must be a non-empty numpy array")
        data = _little_endian(array)
        header = pb.OpenSessionHeader(
            model=self.model,
            shape=data.shape,
            dtype=convert.dtype_to_proto(data.dtype),
            spacing=volume.spacing or (),
            affine=() if volume.affine is None else np.asarray(volume.affine).reshape(-1),
            session_id=self._wanted_id,
            digest=hashlib.sha256(data.data).hexdigest(),
            preset=PRESETS[self.preset],
        )
        if channels_last is not None:
            header.channels_last = channels_last
        if self.session_id is not None:  # a new image starts a new session, as in process
            self.close_session()
            header.session_id = self._wanted_id = uuid.uuid4().hex
        self._opened = None
        mask = self._start(header, data)
        self._opened = (header, data)
        return mask

    def _start(self, header: pb.OpenSessionHeader, data: np.ndarray) -> np.ndarray:
        """OpenSession: header only first (the server may hold the image), then with pixels."""
        response = self._open(iter([pb.OpenSessionRequest(header=header)]))
        self.uploaded = response.image_required
        if response.image_required:
            response = self._open(self._upload(header, data))
        self.session_id = response.session_id
        self._shape = tuple(response.spatial_shape)
        self._mask, self._version = None, 0
        self._status = response.status
        self.resumed = response.resumed
        self._head = (response.head_source, response.head_reason)
        self.site_version = int(response.site_version)
        if not response.status.pending_marks:
            self._pending = []
        mask = self._apply(response.mask)
        # a new session was refined on nothing; one found on the server is read when asked
        self._refined = None if response.resumed else (self._version, ())
        return mask

    def _upload(
        self, header: pb.OpenSessionHeader, data: np.ndarray
    ) -> Iterator[pb.OpenSessionRequest]:
        yield pb.OpenSessionRequest(header=header)
        raw, step = data.data.cast("B"), self.chunk_bytes
        for at in range(0, len(raw), step):
            yield pb.OpenSessionRequest(chunk=bytes(raw[at : at + step]))

    def _open(self, requests: Iterator[pb.OpenSessionRequest]) -> pb.OpenSessionResponse:
        response: pb.OpenSessionResponse = self._invoke("OpenSession", requests)
        return response

    # ----------------------------------------------------------------- marks
    def add(self, mark: Mark) -> None:
        """Queue a mark for the next :meth:`refine`; the server checks it now."""
        msg = convert.mark_to_proto(mark)
        request = pb.AddMarksRequest(session_id=self._id(), marks=[msg])
        with self._outcome("add", mark):
            response = self._call("AddMarks", request)
        self._status = response.status
        self._pending.append(mark)

    # ---------------------------------------------------------- reconciling
    @contextlib.contextmanager
    def _outcome(self, call: str, mark: Mark | None = None) -> Iterator[None]:
        """Around a call that changes the session: first settle an earlier call whose outcome
        is unknown (:meth:`sync`); if this one ends so (connection lost, deadline), remember
        it for the next call to settle."""
        if self._unsure is not None:
            self.sync()
        before = (call, self._version, len(self._pending), self.num_classes, mark)
        try:
            yield
        except RemoteError as exc:
            if exc.code in _UNKNOWN_OUTCOME:
                self._unsure = before
            raise

    def sync(self) -> Reconciled | None:
        """Learn where the server's session stands (an AddMarks without marks, which changes
        nothing) and mirror it: the mask (GetMask when its version differs from the one held),
        the queue and the classes. A call whose outcome was unknown is then settled, in
        :attr:`reconciled` (also returned; None if there was none). Reopens the session by id
        if the server does not hold it (restart, another replica)."""
        request = pb.AddMarksRequest(session_id=self._id())
        response = self._call("AddMarks", request)
        status: pb.SessionStatus = response.status
        self._status = status
        if status.mask_version != self._version:
            self._mask = self._fetch_mask()
        if self._unsure is None:
            return None
        call, version, pending, classes, mark = self._unsure
        self._unsure = None
        if call == "add":
            took = status.pending_marks > pending
            if took and mark is not None:
                self._pending.append(mark)
        elif call == "add_class":
            took = len(status.class_names) > classes
        else:
            took = self._version != version
        if not status.pending_marks:
            self._pending = []
        self.reconciled = Reconciled(call, took, self._version)
        return self.reconciled

    @property
    def pending(self) -> tuple[Mark, ...]:
        """Marks added since the last refine."""
        return tuple(self._pending)

    @property
    def marks(self) -> tuple[Mark, ...]:
        """Every mark the current mask was refined on, then the pending ones, as
        :attr:`medrefine.Session.marks`. The refined ones are known from this client's own
        calls (set_image, refine, reset); after an undo, a redo or a reopened session they are
        read from the server's history (one GetHistory per mask version)."""
        if self._unsure is not None:
            self.sync()
        self._id()
        if self._refined is None or self._refined[0] != self._version:
            self._refined = (self._version, refined_marks(self._history()))
        return self._refined[1] + tuple(self._pending)

    def refine(self, progress: Callable[[RefineProgress], None] | None = None) -> RefineResult:
        """Fine-tune the head on every mark so far, as :meth:`medrefine.Session.refine`.

        Args:
            progress: called before every gradient step (``self.progress`` if None); raising
                from it cancels the refine on the server, which leaves the session as before.
        """
        hook = progress if progress is not None else self.progress
        with self._outcome("refine"):
            return self._refine(hook)

    def _refine(self, hook: Callable[[RefineProgress], None] | None) -> RefineResult:
        known, version, sent = self._refined, self._version, tuple(self._pending)
        mirrored = self._status.pending_marks == len(sent)  # the server queued what we sent
        request = pb.RefineRequest(
            session_id=self._id(),
            options=pb.RefineOptions(progress=hook is not None),
            known_version=self._version,
        )
        try:
            result = self._refine_stream(request, hook)
        except RemoteNotFoundError as exc:
            if not self._reopen_after(exc):
                raise
            request.known_version = self._version
            result = self._refine_stream(request, hook)
        mask = self._apply(result.mask)
        self._status = result.status
        self._pending = []
        if known is not None and known[0] == version and self._refined is known and mirrored:
            self._refined = (self._version, known[1] + sent)
        return convert.summary_from_proto(result.summary, mask, len(self._shape))

    def _refine_stream(
        self, request: pb.RefineRequest, progress: Callable[[RefineProgress], None] | None
    ) -> pb.RefineResponse:
        call = self._invoke("Refine", request)
        result: pb.RefineResponse | None = None
        try:
            for event in call:
                if event.HasField("progress") and progress is not None:
                    p = event.progress
                    try:
                        progress(
                            RefineProgress(p.iteration, p.max_iterations, p.loss, p.wrong_marks)
                        )
                    except BaseException:
                        call.cancel()
                        raise
                elif event.HasField("result"):
                    result = event.result
        except grpc.RpcError as exc:
            _raise(exc)
        if result is None:
            raise RemoteError("refine stream ended without a result", grpc.StatusCode.INTERNAL)
        return result

    # ----------------------------------------------------------------- sites
    @property
    def head_source(self) -> tuple[str, str]:
        """Which head the current image started from, and why, as
        :attr:`medrefine.Session.head_source`: ``("network", reason)`` or ``("site vN", ...)``."""
        return self._head

    def accept(self) -> SiteVersion:
        """Record the current mask as the clinician's answer for this image (AcceptMask): the
        server's site of the model keeps a sample of it and refits. Returns the site's new
        version, as :meth:`medrefine.Session.accept`; the session is unchanged.

        Raises:
            StateError: no image; the server keeps no site for the model (``--site-dir``);
                marks added since the last refine; or the server rebuilt the session (restart,
                another replica) with a mask other than the one this client shows.
        """
        shown = self.mask
        request = pb.AcceptMaskRequest(session_id=self._id(), mask_version=self._version)
        try:
            response = self._invoke("AcceptMask", request)
        except RemoteNotFoundError as exc:
            if not self._reopen_after(exc):
                raise
            if not np.array_equal(self.mask, shown):
                raise errors.StateError(
                    "the server rebuilt the session and its mask differs from the one shown "
                    "(see head_source): show the current mask and accept again"
                ) from None
            request.mask_version = self._version
            response = self._invoke("AcceptMask", request)
        self._status = response.status
        return convert.version_from_proto(response.version)

    # --------------------------------------------------------------- history
    def _step(self, method: str) -> np.ndarray:
        request = pb.SessionRequest(session_id=self._id(), known_version=self._version)
        with self._outcome(method.lower()):
            request.known_version = self._version  # sync may have moved it
            response = self._call(method, request)
        self._status = response.status
        self._pending = []
        mask = self._apply(response.mask)
        if method == "Reset":  # back to the network's own mask: refined on nothing
            self._refined = (self._version, ())
        return mask

    def undo(self) -> np.ndarray:
        """Go back one interaction (pending marks are dropped); returns the restored mask."""
        return self._step("Undo")

    def redo(self) -> np.ndarray:
        """Re-apply the last undone interaction; returns its mask."""
        return self._step("Redo")

    def reset(self) -> np.ndarray:
        """Back to the network's own mask, no marks, pre-trained head (undoable)."""
        return self._step("Reset")

    def add_class(self, name: str) -> int:
        """Add a class the network never learned; returns its label."""
        request = pb.AddClassRequest(session_id=self._id(), name=name)
        with self._outcome("add_class"):
            response = self._call("AddClass", request)
        self._status = response.status
        return int(response.label)

    @property
    def history(self) -> tuple[Interaction, ...]:
        """Every interaction that led to the current mask, oldest first. A refine's
        ``result.mask`` is empty (shape ``(0,)``): the server sends only the current mask."""
        if self._unsure is not None:
            self.sync()
        return self._history()

    def _history(self) -> tuple[Interaction, ...]:
        response = self._call("GetHistory", pb.SessionRequest(session_id=self._id()))
        ndim = len(self._shape)
        kinds = {v: k for k, v in convert.KINDS.items()}
        out = []
        for e in response.entries:
            marks = tuple(convert.mark_from_proto(m, ndim, 1 << 62) for m in e.marks)
            result = None
            if e.HasField("summary"):
                empty = np.zeros((0,), np.uint8)
                result = convert.summary_from_proto(e.summary, empty, ndim)
            kind: Any = kinds[e.kind]
            out.append(Interaction(kind, marks, result, e.class_name))
        return tuple(out)

    # ------------------------------------------------------------- properties
    @property
    def mask(self) -> np.ndarray:
        """The current mask (a copy)."""
        self._id()
        assert self._mask is not None
        return self._mask.copy()

    @property
    def mask_version(self) -> int:
        """The version of the mask this client holds."""
        return self._version

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self._status.class_names)

    @property
    def num_classes(self) -> int:
        return len(self._status.class_names)

    @property
    def can_undo(self) -> bool:
        return bool(self._status.can_undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._status.can_redo)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of the current image."""
        self._id()
        return self._shape

    # -------------------------------------------------------------- lifetime
    def close_session(self) -> None:
        """Close the session on the server (it cannot be reopened)."""
        if self.session_id is not None:
            self._call("CloseSession", pb.SessionRequest(session_id=self.session_id))
            self.session_id = None

    def close(self) -> None:
        """Close the channel (the server keeps the session until its TTL or CloseSession)."""
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def refined_marks(history: Sequence[Interaction]) -> tuple[Mark, ...]:
    """The marks the mask at the end of ``history`` was refined on: those of its refines since
    its last reset, oldest first (a reset goes back to the network's mask, refined on none)."""
    marks: tuple[Mark, ...] = ()
    for entry in history:
        if entry.kind == "reset":
            marks = ()
        elif entry.kind == "refine":
            marks += entry.marks
    return marks


def list_models(
    target: str, *, token: str | None = None, tls: ClientTls | None = None
) -> pb.ListModelsResponse:
    """The server's models and limits (ListModels)."""
    channel = connect(target, tls)
    try:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        response: pb.ListModelsResponse = stub(channel).ListModels(
            pb.ListModelsRequest(), metadata=metadata
        )
        return response
    except grpc.RpcError as exc:
        _raise(exc)
    finally:
        channel.close()
