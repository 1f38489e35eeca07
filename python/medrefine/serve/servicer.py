# ruff: noqa: N802  (method names are the proto's rpc names)
"""The ``medrefine.v1.Refiner`` servicer: parse, check bounds, call the session, journal, answer.

Each handler is thin: conversions live in :mod:`medrefine.serve.convert`, sessions and replay in
:mod:`medrefine.serve.registry`, error mapping in :mod:`medrefine.serve.status`, the site calls in
:mod:`medrefine.serve.site_calls`. Every call on a
session holds that session's lock; every accepted interaction is journaled before the response.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from collections.abc import Iterable, Iterator

import grpc
import numpy as np

import medrefine as mr
from medrefine.errors import InputError, ResourceError
from medrefine.serve import convert
from medrefine.serve.config import DIGEST, SESSION_ID
from medrefine.serve.journal import EventKind, SessionRecord
from medrefine.serve.refining import run_refine
from medrefine.serve.registry import Entry, Registry
from medrefine.serve.site_calls import SiteCalls, head_fields
from medrefine.serve.status import (
    SessionClosedError,
    SessionNotLiveError,
    streaming,
    unary,
)
from medrefine.serve.uploads import IdleStream, Uploads
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

log = logging.getLogger("medrefine.serve")


class RefinerServicer(SiteCalls, pb_grpc.RefinerServicer):
    """Serves :class:`medrefine.Session` objects held in a :class:`Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.reg = registry
        self.cfg = registry.config
        self.uploads = Uploads(self.cfg.max_uploads, self.cfg.max_upload_bytes_total)

    # ------------------------------------------------------------------ helpers
    def _journal(self, entry: Entry, kind: EventKind, payload: bytes = b"") -> None:
        """Journal one interaction, expecting the journal where this copy of the session left
        it; if that fails (another server moved the session on, or the journal is down) the
        live session is dropped (the journal, not memory, is what a reopen rebuilds) and the
        call fails."""
        self.reg.journal_event(entry, kind, payload)

    def _marks(self, entry: Entry, marks: list[pb.Mark]) -> None:
        """Check, queue and journal ``marks`` in order (the caller holds the session lock)."""
        s = entry.session
        if len(marks) > self.cfg.max_marks_per_call:
            raise ResourceError(
                f"{len(marks)} marks in one call, more than the limit {self.cfg.max_marks_per_call}"
            )
        if len(s.marks) + len(marks) > self.cfg.max_marks_per_session:
            raise ResourceError(
                f"the session would hold {len(s.marks) + len(marks)} marks, more than the limit "
                f"{self.cfg.max_marks_per_session}"
            )
        ndim = len(s.image_shape)
        for i, msg in enumerate(marks):
            try:
                s.add(convert.mark_from_proto(msg, ndim, self.cfg.max_points_per_mark))
            except (InputError, ResourceError) as exc:
                raise type(exc)(f"marks[{i}]: {exc}") from exc
            self._journal(entry, "add", msg.SerializeToString())

    # ------------------------------------------------------------------- models
    @unary
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        cfg = self.cfg
        limits = pb.ServerLimits(
            max_image_bytes=cfg.max_image_bytes,
            max_chunk_bytes=convert.CHUNK_BYTES,
            max_sessions=cfg.max_sessions,
            max_marks_per_call=cfg.max_marks_per_call,
            max_marks_per_session=cfg.max_marks_per_session,
            max_points_per_mark=cfg.max_points_per_mark,
            max_classes=cfg.max_classes,
            idle_session_ttl_s=cfg.idle_ttl_s,
        )
        models = [
            pb.ModelInfo(
                name=name,
                class_names=m.class_names,
                spatial_dims=m.spatial_dims,
                channels=m.preprocessing.channels,
                backend=self.reg.backends[name].name,
                has_site=self.reg.sites.get(name) is not None,
            )
            for name, m in self.reg.ready_models()
        ]
        return pb.ListModelsResponse(models=models, limits=limits)

    # --------------------------------------------------------------------- open
    @unary
    def OpenSession(
        self, request_iterator: Iterator[pb.OpenSessionRequest], context: grpc.ServicerContext
    ) -> pb.OpenSessionResponse:
        with self.uploads.stream():
            stream = IdleStream(request_iterator, self.cfg.upload_idle_s)
            try:
                return self._open(stream)
            finally:
                stream.close()

    def _open(self, stream: IdleStream) -> pb.OpenSessionResponse:
        """OpenSession on a stream whose every message is waited for at most the idle time."""
        start = time.perf_counter()
        first = stream.next()
        if first is None or first.WhichOneof("part") != "header":
            raise InputError("the first OpenSession message must be the header")
        h = first.header
        model = self.reg.model(h.model)
        shape, dtype = _check_header(h, model, self.cfg.max_image_bytes)
        sid = h.session_id
        live = self.reg.live(sid) if sid else None
        if live is not None:
            reopened = self._reopen_live(live, h, start)
            if reopened is not None:
                return reopened
        # refused before the upload when set_image could not be served (checked again, with
        # the memory claimed, once the image is here)
        channels_last = h.channels_last if h.HasField("channels_last") else None
        spatial = shape[:-1] if channels_last and len(shape) > model.spatial_dims else shape
        self.reg.admit(h.model, spatial[-model.spatial_dims :])
        journaled = self.reg.journal.record(sid) if sid and self.reg.journal else None
        record = journaled
        if record is not None:
            if record.closed:
                raise SessionClosedError(f"session {sid!r} was closed and cannot be reopened")
            if record.model != h.model or (h.digest and h.digest != record.digest):
                raise InputError(f"session {sid!r} was opened with another model or image")
        digest = h.digest or (record.digest if record else "")
        image = self.reg.images.get(digest) if digest else None
        if image is not None and (image.shape != shape or image.dtype != dtype):
            image = None
        if image is None:
            nbytes = int(np.prod(shape)) * dtype.itemsize
            with self.uploads.reserve(nbytes):
                data = _read_chunks(stream, nbytes)
            if data is None:
                if not digest:
                    raise InputError("no image chunks and no header.digest to find the image by")
                return pb.OpenSessionResponse(image_required=True)
            actual = hashlib.sha256(data).hexdigest()
            if digest and actual != digest:
                raise InputError(f"image bytes hash to {actual}, header.digest says {digest}")
            digest = actual
            image = np.frombuffer(data, dtype).reshape(shape)
            self.reg.images.put(digest, image)
        if record is not None and record.digest != digest:
            raise InputError(f"session {sid!r} was opened on another image")
        geometry: dict[str, object] = {
            "shape": list(shape),
            "dtype": dtype.str,
            "spacing": list(h.spacing),
            "affine": list(h.affine),
            "channels_last": channels_last,
        }
        record = record or SessionRecord(
            self.reg.new_id(sid), h.model, digest, geometry, h.preset, False
        )
        volume = mr.Volume(
            image,
            spacing=tuple(h.spacing) or None,
            affine=np.asarray(h.affine, np.float64).reshape(4, 4) if h.affine else None,
        )
        self.reg.reserve(record.id)
        try:
            opened = self.reg.create(record, volume, replay=journaled is not None)
        finally:
            self.reg.release(record.id)
        entry = opened.entry
        log.info("session %s opened: model %s, shape %s", entry.id, entry.model, list(shape))
        with entry.lock:
            return pb.OpenSessionResponse(
                session_id=entry.id,
                resumed=opened.resumed,
                mask=entry.update(0),
                status=entry.status(),
                spatial_shape=entry.session.image_shape,
                features_cached=opened.features_cached,
                seconds=time.perf_counter() - start,
                backend=self.reg.backends[entry.model].name,
                **head_fields(entry),
            )

    def _reopen_live(
        self, entry: Entry, h: pb.OpenSessionHeader, start: float
    ) -> pb.OpenSessionResponse | None:
        """The live session, or None where another server has moved it on (dropped here: the
        caller replays the journal)."""
        if entry.model != h.model or (h.digest and h.digest != entry.digest):
            raise InputError(f"session {entry.id!r} is open with another model or image")
        with entry.lock:
            try:
                self.reg.check(entry)
            except SessionNotLiveError:
                return None
            return pb.OpenSessionResponse(
                session_id=entry.id,
                resumed=True,
                mask=entry.update(0),
                status=entry.status(),
                spatial_shape=entry.session.image_shape,
                features_cached=True,
                seconds=time.perf_counter() - start,
                backend=self.reg.backends[entry.model].name,
                **head_fields(entry),
            )

    # -------------------------------------------------------------------- marks
    @unary
    def AddMarks(
        self, request: pb.AddMarksRequest, context: grpc.ServicerContext
    ) -> pb.AddMarksResponse:
        with self.reg.hold(request.session_id) as entry:
            self._marks(entry, list(request.marks))
            return pb.AddMarksResponse(status=entry.status())

    @streaming
    def Refine(
        self, request: pb.RefineRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RefineEvent]:
        with self.reg.hold(request.session_id) as entry:
            self._marks(entry, list(request.marks))
        yield from run_refine(
            entry, self.reg.compute, request, context, self._journal, self.reg.check
        )

    # ------------------------------------------------------------------ history
    def _step(self, request: pb.SessionRequest, kind: EventKind) -> pb.MaskResponse:
        with self.reg.hold(request.session_id) as entry:
            s = entry.session
            mask = {"undo": s.undo, "redo": s.redo, "reset": s.reset}[kind]()
            self._journal(entry, kind)
            entry.new_version(mask)
            return pb.MaskResponse(mask=entry.update(request.known_version), status=entry.status())

    @unary
    def Undo(self, request: pb.SessionRequest, context: grpc.ServicerContext) -> pb.MaskResponse:
        return self._step(request, "undo")

    @unary
    def Redo(self, request: pb.SessionRequest, context: grpc.ServicerContext) -> pb.MaskResponse:
        return self._step(request, "redo")

    @unary
    def Reset(self, request: pb.SessionRequest, context: grpc.ServicerContext) -> pb.MaskResponse:
        return self._step(request, "reset")

    @unary
    def AddClass(
        self, request: pb.AddClassRequest, context: grpc.ServicerContext
    ) -> pb.AddClassResponse:
        if len(request.name) > 128:
            raise InputError(f"class name has {len(request.name)} characters, at most 128")
        with self.reg.hold(request.session_id) as entry:
            s = entry.session
            if s.num_classes >= self.cfg.max_classes:
                raise ResourceError(
                    f"the session has {s.num_classes} classes, the server's limit "
                    f"{self.cfg.max_classes}"
                )
            label = s.add_class(request.name)
            self._journal(entry, "add_class", request.name.encode())
            return pb.AddClassResponse(label=label, status=entry.status())

    @streaming
    def GetMask(
        self, request: pb.GetMaskRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.MaskChunk]:
        with self.reg.hold(request.session_id) as entry:
            mask, version = entry.masks[entry.version], entry.version
            bits = convert.bits_for(max(entry.session.num_classes, int(mask.max(initial=0)) + 1))
        data = zlib.compress(convert.pack(mask, bits), convert.ZLIB_LEVEL)
        yield pb.MaskChunk(
            header=pb.MaskHeader(
                version=version, shape=mask.shape, bits_per_label=bits, compressed_bytes=len(data)
            )
        )
        for at in range(0, len(data), convert.CHUNK_BYTES):
            yield pb.MaskChunk(data=data[at : at + convert.CHUNK_BYTES])

    @unary
    def GetHistory(
        self, request: pb.SessionRequest, context: grpc.ServicerContext
    ) -> pb.GetHistoryResponse:
        with self.reg.hold(request.session_id) as entry:
            entries = [convert.history_to_proto(i) for i in entry.session.history]
        return pb.GetHistoryResponse(entries=entries)

    @unary
    def CloseSession(
        self, request: pb.SessionRequest, context: grpc.ServicerContext
    ) -> pb.CloseSessionResponse:
        self.reg.close(request.session_id)
        log.info("session %s closed", request.session_id)
        return pb.CloseSessionResponse()


# ------------------------------------------------------------------------------- checks


def _check_header(
    h: pb.OpenSessionHeader, model: mr.SplitModel, max_bytes: int
) -> tuple[tuple[int, ...], np.dtype[np.generic]]:
    """The image's shape and dtype from a header, every field checked against the model."""
    dims = model.spatial_dims
    shape = tuple(int(s) for s in h.shape)
    if len(shape) not in (dims, dims + 1) or min(shape, default=0) < 1:
        raise InputError(
            f"header.shape {list(shape)} must have {dims} spatial axes (and optionally a "
            f"leading channel axis), each at least 1, for model {h.model!r}"
        )
    dtype = convert.dtype_from_proto(h.dtype)
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > max_bytes:
        raise ResourceError(f"image of {nbytes} bytes exceeds the server's limit of {max_bytes}")
    if len(h.spacing) not in (0, dims) or any(not s > 0 for s in h.spacing):
        raise InputError(f"header.spacing must be empty or {dims} positive values (mm)")
    if len(h.affine) not in (0, 16) or not np.isfinite(np.asarray(h.affine)).all():
        raise InputError("header.affine must be empty or 16 finite values (4x4, row-major)")
    if h.session_id and not SESSION_ID.fullmatch(h.session_id):
        raise InputError("header.session_id must be 1-128 characters of [A-Za-z0-9._-]")
    if h.digest and not DIGEST.fullmatch(h.digest):
        raise InputError("header.digest must be a lowercase hex SHA-256 (64 characters)")
    if h.preset not in (pb.PRESET_DEFAULT, pb.PRESET_SHIFTED, pb.PRESET_PAPER):
        raise InputError(f"header.preset {h.preset} is unknown")
    return shape, dtype


def _read_chunks(messages: Iterable[pb.OpenSessionRequest], nbytes: int) -> bytearray | None:
    """The image bytes the chunks carry (exactly ``nbytes``), or None if there are none."""
    buf: bytearray | None = None
    pos = 0
    for msg in messages:
        if msg.WhichOneof("part") != "chunk":
            raise InputError("only chunk messages may follow the OpenSession header")
        chunk = msg.chunk
        if len(chunk) > convert.CHUNK_BYTES:
            raise InputError(f"chunk of {len(chunk)} bytes exceeds {convert.CHUNK_BYTES}")
        if pos + len(chunk) > nbytes:
            raise InputError(f"image data exceeds the {nbytes} bytes of header.shape and dtype")
        if buf is None:
            buf = bytearray(nbytes)
        buf[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if buf is None:
        return None
    if pos != nbytes:
        raise InputError(f"image data has {pos} bytes, header.shape and dtype give {nbytes}")
    return buf
