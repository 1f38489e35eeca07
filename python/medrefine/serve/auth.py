"""Bearer-token check on every call (``authorization: Bearer <token>`` metadata, the scheme's
case as the client likes).

Health checks are exempt: load balancers probe them without credentials and they reveal nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

_EXEMPT = "/grpc.health.v1.Health/"


def _deny(kind: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``kind`` that fails with UNAUTHENTICATED."""

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if kind.request_streaming and kind.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if kind.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if kind.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


def bearer(value: bytes) -> bytes:
    """The token of an ``authorization`` value ``Bearer <token>`` (the scheme in any case, as
    RFC 9110 says of schemes), or b"" for another scheme."""
    scheme, _, token = value.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


class TokenAuth(grpc.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls whose ``authorization`` metadata is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method.startswith(_EXEMPT):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization")
        if given is None:
            return _deny(handler, "missing authorization metadata (Bearer token)")
        value = given.encode() if isinstance(given, str) else bytes(given)
        if not hmac.compare_digest(bearer(value), self._expected):
            return _deny(handler, "wrong bearer token")
        return handler
