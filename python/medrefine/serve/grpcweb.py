"""gRPC-Web and Connect for the ``medrefine.v1.Refiner`` servicer that the gRPC server runs.

Browsers cannot speak gRPC (it needs HTTP/2 trailers), so the web port speaks gRPC-Web and the
Connect protocol through ``connectrpc``'s WSGI application. Its endpoints call the very servicer
object the gRPC server holds, with a :class:`CallContext` standing in for the part of
``grpc.ServicerContext`` the servicer uses; there is no second implementation of the service.
An error reaches the browser with the same status code and message as a gRPC client gets.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_codecs
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectWSGIApplication, EndpointSync
from google.protobuf.descriptor import MethodDescriptor

from medrefine.serve.auth import bearer
from medrefine.serve.servicer import RefinerServicer
from medrefine.v1 import refine_pb2 as pb

log = logging.getLogger("medrefine.serve.web")
SERVICE = pb.DESCRIPTOR.services_by_name["Refiner"]
#: Largest message the web port reads (gRPC's default limit; image chunks are at most 1 MiB).
READ_MAX_BYTES = 4 << 20


class AbortedError(ConnectError, grpc.RpcError):  # type: ignore[misc]
    """What :meth:`CallContext.abort` raises: a Connect error that the servicer's error wrappers
    (:mod:`medrefine.serve.status`) pass through as an already-aborted call."""


def connect_code(code: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status code (the same names, but CANCELLED is CANCELED)."""
    return Code.CANCELED if code is grpc.StatusCode.CANCELLED else Code[code.name]


class CallContext:
    """The part of ``grpc.ServicerContext`` that :class:`RefinerServicer` uses, over a Connect
    request context.

    A WSGI server cannot tell that a browser went away while a handler runs, so
    :meth:`is_active` is always True; a deadline (the ``grpc-timeout`` header) still stops a
    refine between iterations.
    """

    def __init__(self, ctx: RequestContext[Any, Any]) -> None:
        self._ctx = ctx
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise AbortedError(connect_code(code), details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        """Send ``metadata`` (e.g. an error's ``medrefine-reason``) as response trailers."""
        for key, value in metadata:
            self._ctx.response_trailers[key] = value

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline, or None without one."""
        ms = self._ctx.timeout_ms
        return None if ms is None else max(ms, 0.0) / 1000.0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._ctx.request_headers.allitems())


def check_token(authorization: str | None, token: str | None) -> None:
    """Raise UNAUTHENTICATED unless ``authorization`` is ``Bearer <token>`` (no token: pass).

    Raises:
        ConnectError: the header is missing or carries another token.
    """
    if token is None:
        return
    if authorization is None:
        raise ConnectError(Code.UNAUTHENTICATED, "missing authorization metadata (Bearer token)")
    if not hmac.compare_digest(bearer(authorization.encode()), token.encode()):
        raise ConnectError(Code.UNAUTHENTICATED, "wrong bearer token")


def _error(name: str, context: CallContext, exc: Exception) -> ConnectError:
    """What a call that raised ``exc`` answers: an abort as it was, a status the handler set
    (e.g. UNIMPLEMENTED from the generated base class), else INTERNAL without the exception's
    text (the servicer's own wrappers have already turned every expected error into an abort)."""
    if isinstance(exc, ConnectError):
        return exc
    if context.code is not None and context.code is not grpc.StatusCode.OK:
        return ConnectError(connect_code(context.code), context.details or context.code.name)
    log.error("%s failed over the web port", name, exc_info=exc)
    return ConnectError(Code.INTERNAL, f"internal error in {name} (see the server log)")


def _stream_type(method: MethodDescriptor) -> StreamType:
    kinds = {
        (False, False): StreamType.UNARY,
        (True, False): StreamType.CLIENT_STREAM,
        (False, True): StreamType.SERVER_STREAM,
        (True, True): StreamType.BIDI_STREAM,
    }
    return kinds[(method.client_streaming, method.server_streaming)]


def method_info(method: MethodDescriptor) -> MethodInfo[Any, Any]:
    """Connect's description of one method of the service (messages, streaming kind)."""
    return MethodInfo(
        name=method.name,
        service_name=SERVICE.full_name,
        input=getattr(pb, method.input_type.name),
        output=getattr(pb, method.output_type.name),
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=_stream_type(method),
    )


def _endpoint(
    method: MethodDescriptor, handler: Callable[[Any, Any], Any], token: str | None
) -> Any:
    """One Connect endpoint (an ``EndpointSync`` of the method's kind) that checks the token and
    calls ``handler(request, context)``."""
    info = method_info(method)

    def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        check_token(ctx.request_headers.get("authorization"), token)
        context = CallContext(ctx)
        try:
            return handler(request, context)
        except Exception as exc:
            raise _error(method.name, context, exc) from exc

    def stream(request: Any, ctx: RequestContext[Any, Any]) -> Iterator[Any]:
        check_token(ctx.request_headers.get("authorization"), token)
        context = CallContext(ctx)
        try:
            yield from handler(request, context)
        except Exception as exc:
            raise _error(method.name, context, exc) from exc

    if method.server_streaming:
        return EndpointSync.server_stream(method=info, function=stream)
    if method.client_streaming:
        return EndpointSync.client_stream(method=info, function=call)
    return EndpointSync.unary(method=info, function=call)


class RefinerWSGI(ConnectWSGIApplication):
    """WSGI application serving ``/medrefine.v1.Refiner/<Method>`` over gRPC-Web and Connect.

    Args:
        servicer: the servicer the gRPC server runs (shared: same registry, same sessions).
        token: bearer token every call must carry (None: none needed).
    """

    def __init__(self, servicer: RefinerServicer, token: str | None) -> None:
        endpoints = {
            f"{self.path}/{m.name}": _endpoint(m, getattr(servicer, m.name), token)
            for m in SERVICE.methods
        }
        super().__init__(
            endpoints=endpoints, read_max_bytes=READ_MAX_BYTES, codecs=google_protobuf_codecs()
        )

    @property
    def path(self) -> str:
        return f"/{SERVICE.full_name}"
