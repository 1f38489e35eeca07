"""One table from ``medrefine.errors`` types to gRPC status codes, used by server and client.

Some refusals also carry a machine-readable reason, the name of a ``medrefine.v1.ErrorReason``
value in the trailing metadata key :data:`REASON_KEY` (e.g. ``SESSION_NOT_LIVE``: reopen the
session by id and call again), so that a client never has to parse a message.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from medrefine import errors

log = logging.getLogger("medrefine.serve")

#: Trailing metadata key of an error's reason (a ``medrefine.v1.ErrorReason`` name).
REASON_KEY = "medrefine-reason"


class SessionNotLiveError(errors.NotFoundError):
    """NOT_FOUND, reason ``SESSION_NOT_LIVE``: this server does not hold the session now (a
    restart, another replica, the idle TTL, or a change made through another server): reopen it
    by id (OpenSession with ``session_id`` and ``digest``) and call again."""

    reason = "SESSION_NOT_LIVE"


class SessionClosedError(errors.NotFoundError):
    """NOT_FOUND, reason ``SESSION_CLOSED``: CloseSession was called; it cannot be reopened."""

    reason = "SESSION_CLOSED"


class UnavailableError(errors.MedrefineError):
    """UNAVAILABLE, reason ``MODEL_LOADING``: the server is starting and the model a call needs
    is not loaded yet; call again shortly (or wait for its health service to report SERVING)."""

    reason = "MODEL_LOADING"


class UploadIdleError(errors.ResourceError):
    """RESOURCE_EXHAUSTED, reason ``UPLOAD_IDLE``: no image chunk arrived within the server's
    upload idle timeout."""

    reason = "UPLOAD_IDLE"


class UploadBudgetError(errors.ResourceError):
    """RESOURCE_EXHAUSTED, reason ``UPLOAD_BUDGET``: the uploads in progress already hold the
    server's byte budget for uploads; send again later."""

    reason = "UPLOAD_BUDGET"


CODES: tuple[tuple[type[errors.MedrefineError], grpc.StatusCode], ...] = (
    (errors.InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnsupportedModelError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ResourceError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StateError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.CancelledError, grpc.StatusCode.CANCELLED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of a medrefine error (INTERNAL for anything unexpected)."""
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def reason_of(exc: BaseException) -> str | None:
    """The ``ErrorReason`` name an error carries, if any."""
    reason = getattr(type(exc), "reason", None)
    return reason if isinstance(reason, str) else None


def _abort(context: grpc.ServicerContext, name: str, exc: Exception) -> None:
    code = code_of(exc)
    reason = reason_of(exc)
    if reason is not None:
        context.set_trailing_metadata(((REASON_KEY, reason),))
    if code is grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:8]
        log.error("%s failed (ref %s): %s", name, ref, type(exc).__name__, exc_info=exc)
        context.abort(code, f"internal error in {name} (server log ref {ref})")
    context.abort(code, str(exc) or type(exc).__name__)


F = TypeVar("F", bound=Callable[..., Any])


def unary(fn: F) -> F:
    """Wrap a unary-response handler: medrefine errors become status codes, nothing else leaks."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError):  # context.abort already ran
                raise
            _abort(context, fn.__name__, exc)
            raise  # unreachable: abort raises

    return wrapper  # type: ignore[return-value]


def streaming(fn: F) -> F:
    """:func:`unary` for handlers that yield their responses."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError):
                raise
            _abort(context, fn.__name__, exc)
            raise

    return wrapper  # type: ignore[return-value]
