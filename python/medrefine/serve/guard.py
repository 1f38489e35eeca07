"""Undecodable request bodies: INVALID_ARGUMENT and one log line, for every service the port serves.

grpcio answers a body its deserializer cannot parse with an untyped INTERNAL ("Exception
deserializing request!") and logs a traceback each time; on a request stream (reflection's) the
handler can also be left waiting for a message that never comes, which keeps the process from
exiting on SIGTERM. :class:`DecodeGuard` wraps every method handler (the Refiner's, health's and
reflection's alike): its deserializer never raises, it hands the handler an :class:`Undecodable`
marker instead, and the handler is answered INVALID_ARGUMENT naming the method before any
application code sees the marker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from medrefine.errors import InputError

log = logging.getLogger("medrefine.serve")


class Undecodable:
    """What the guarded deserializer returns for bytes that do not parse."""

    def __init__(self, error: str) -> None:
        self.error = error


class UndecodableError(InputError):
    """Raised inside a request stream at an undecodable message (an InputError, so the
    Refiner's own error mapping answers it INVALID_ARGUMENT too)."""


def _safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or anything a hostile body provokes
            return Undecodable(f"{type(exc).__name__}: {exc}"[:200])

    return parse


def _refused(method: str, bad: Undecodable) -> UndecodableError:
    """Log the one line an undecodable request costs; the error to answer it with."""
    log.warning("undecodable request to %s refused (%s)", method, bad.error)
    return UndecodableError(f"the request body is not a valid message of {method}")


def _abort(context: grpc.ServicerContext, exc: UndecodableError) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def _checked(requests: Iterator[Any], method: str) -> Iterator[Any]:
    """``requests``, raising :class:`UndecodableError` at the first undecodable one."""
    for request in requests:
        if isinstance(request, Undecodable):
            raise _refused(method, request)
        yield request


def _answers(responses: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """A handler's response stream, its undecodable request answered INVALID_ARGUMENT."""
    try:
        yield from responses
    except UndecodableError as exc:
        _abort(context, exc)


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """``handler`` with a deserializer that never raises and a behaviour that refuses what did
    not parse."""
    deserialize = _safe(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.request_streaming:
        inner = handler.stream_stream or handler.stream_unary

        def streamed(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            try:
                result = inner(_checked(requests, method), context)
            except UndecodableError as exc:
                _abort(context, exc)
            return _answers(result, context) if handler.response_streaming else result

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(streamed, deserialize, serialize)
        return grpc.stream_unary_rpc_method_handler(streamed, deserialize, serialize)
    single = handler.unary_stream or handler.unary_unary

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            _abort(context, _refused(method, request))
        return single(request, context)

    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(unary, deserialize, serialize)
    return grpc.unary_unary_rpc_method_handler(unary, deserialize, serialize)


class DecodeGuard(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps every method handler of the server as described in the module docstring."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _wrap(handler, details.method)
