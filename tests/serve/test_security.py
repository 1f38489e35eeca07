"""Bearer token, TLS and mutual TLS, each on and off; health checking and reflection answer."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from medrefine import errors
from medrefine.client import ClientTls, RemoteError, RemoteSession, list_models
from medrefine.serve import ServerConfig

from .certs import issue, make_ca
from .conftest import Served, start

MODEL = ("nuclei-unet2d",)


@pytest.fixture
def image(nuclei: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(nuclei[:, :48, :48])


@pytest.fixture(scope="module")
def token_server() -> Iterator[Served]:
    s = start(ServerConfig(models=MODEL, token="s3cret-token"))
    yield s
    s.server.stop(grace=0)


def test_token_required_and_checked(token_server: Served, image: np.ndarray) -> None:
    for token, words in ((None, "missing authorization"), ("wrong", "wrong bearer token")):
        with RemoteSession(token_server.target, "nuclei-unet2d", token=token) as remote:
            with pytest.raises(RemoteError, match=words) as exc:
                remote.set_image(image)
            assert exc.value.code is grpc.StatusCode.UNAUTHENTICATED
    with RemoteSession(token_server.target, "nuclei-unet2d", token="s3cret-token") as remote:
        assert remote.set_image(image).shape == (48, 48)
    assert list_models(token_server.target, token="s3cret-token").models[0].name == MODEL[0]


def test_no_token_needed_without_the_flag(served: Served, image: np.ndarray) -> None:
    with RemoteSession(served.target, "nuclei-unet2d", token="anything") as remote:
        assert remote.set_image(image).shape == (48, 48)


def test_health_needs_no_token_and_reflection_lists_the_service(token_server: Served) -> None:
    with grpc.insecure_channel(token_server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "medrefine.v1.Refiner"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        meta = (("authorization", "Bearer s3cret-token"),)
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), metadata=meta, timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert {"medrefine.v1.Refiner", "grpc.health.v1.Health"} <= names


def test_tls_and_mutual_tls(image: np.ndarray) -> None:
    ca, ca_key = make_ca()
    server_pem = issue(ca, ca_key, "localhost", server=True)
    client_pem = issue(ca, ca_key, "viewer", server=False)
    other_ca, other_key = make_ca("another CA")
    stranger = issue(other_ca, other_key, "stranger", server=False)

    tls = start(ServerConfig(models=MODEL, tls_cert=server_pem.cert, tls_key=server_pem.key))
    try:
        with RemoteSession(tls.target, "nuclei-unet2d", tls=ClientTls(ca=ca.cert)) as remote:
            assert remote.set_image(image).shape == (48, 48)
        with RemoteSession(tls.target, "nuclei-unet2d", timeout=5) as plain:
            with pytest.raises(RemoteError) as exc:
                plain.set_image(image)
            assert exc.value.code is grpc.StatusCode.UNAVAILABLE
        wrong_roots = ClientTls(ca=other_ca.cert)
        fooled = RemoteSession(tls.target, "nuclei-unet2d", tls=wrong_roots, timeout=5)
        with pytest.raises(RemoteError):
            fooled.set_image(image)
        fooled.close()
    finally:
        tls.server.stop(grace=0)

    mtls = start(
        ServerConfig(
            models=MODEL, tls_cert=server_pem.cert, tls_key=server_pem.key, client_ca=ca.cert
        )
    )
    try:
        good = ClientTls(ca=ca.cert, cert=client_pem.cert, key=client_pem.key)
        with RemoteSession(mtls.target, "nuclei-unet2d", tls=good) as remote:
            assert remote.set_image(image).shape == (48, 48)
        for tls_cfg in (
            ClientTls(ca=ca.cert),
            ClientTls(ca=ca.cert, cert=stranger.cert, key=stranger.key),
        ):
            with RemoteSession(mtls.target, "nuclei-unet2d", tls=tls_cfg, timeout=5) as refused:
                with pytest.raises(RemoteError) as exc:
                    refused.set_image(image)
                assert exc.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        mtls.server.stop(grace=0)


def test_config_refuses_half_a_tls_setup() -> None:
    with pytest.raises(errors.InputError, match="tls_cert and tls_key"):
        ServerConfig(tls_cert=b"x")
    with pytest.raises(errors.InputError, match="client_ca"):
        ServerConfig(client_ca=b"x")
