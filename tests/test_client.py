"""RemoteSession without a live server: error mapping, digests, argument checks."""

from __future__ import annotations

import hashlib

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine import client, errors
from medrefine.client import RemoteError, RemoteSession


class _Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InputError),
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.StateError),
        (grpc.StatusCode.CANCELLED, errors.CancelledError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.CancelledError),
        (grpc.StatusCode.UNAUTHENTICATED, client.RemoteUnauthenticatedError),
        (grpc.StatusCode.UNAVAILABLE, client.RemoteUnavailableError),
        (grpc.StatusCode.INTERNAL, RemoteError),
    ],
)
def test_status_codes_become_medrefine_errors(code: grpc.StatusCode, kind: type[Exception]) -> None:
    with pytest.raises(kind, match="the reason") as exc:
        client._raise(_Failure(code, "the reason"))
    assert isinstance(exc.value, RemoteError)
    assert isinstance(exc.value, errors.MedrefineError)
    assert exc.value.code is code


def test_unreachable_server_is_unavailable() -> None:
    with RemoteSession("127.0.0.1:1", "nuclei-unet2d", timeout=2) as remote:
        with pytest.raises(RemoteError) as exc:
            remote.set_image(np.zeros((3, 8, 8), np.uint8))
        assert exc.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_digest_is_of_little_endian_c_order_bytes() -> None:
    values = np.arange(24, dtype="<f4").reshape(2, 3, 4)
    expected = hashlib.sha256(values.tobytes()).hexdigest()
    assert client.image_digest(values) == expected
    assert client.image_digest(values.astype(">f4")) == expected
    assert client.image_digest(np.asfortranarray(values)) == expected
    assert client.image_digest(values + 1) != expected


def test_arguments_checked_before_any_call() -> None:
    with pytest.raises(errors.InputError, match="preset"):
        RemoteSession("127.0.0.1:1", "nuclei-unet2d", preset="fast")
    with pytest.raises(errors.InputError, match="chunk_bytes"):
        RemoteSession("127.0.0.1:1", "nuclei-unet2d", chunk_bytes=2 << 20)
    with RemoteSession("127.0.0.1:1", "nuclei-unet2d") as remote:
        for call in (remote.refine, remote.undo, lambda: remote.add(mr.Click(1, (1, 1)))):
            with pytest.raises(errors.StateError, match="set_image"):
                call()
        with pytest.raises(errors.StateError):
            _ = remote.mask
        with pytest.raises(errors.InputError, match="dtype"):
            remote.set_image(np.zeros((4, 4), np.complex64))
