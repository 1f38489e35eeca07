"""One table from ``medrefine.errors`` types to gRPC status codes, used by server and client."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from medrefine import errors

log = logging.getLogger("medrefine.serve")

CODES: tuple[tuple[type[errors.MedrefineError], grpc.StatusCode], ...] = (
    (errors.InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnsupportedModelError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ResourceError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StateError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.CancelledError, grpc.StatusCode.CANCELLED),
)


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of a medrefine error (INTERNAL for anything unexpected)."""
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _abort(context: grpc.ServicerContext, name: str, exc: Exception) -> None:
    code = code_of(exc)
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
