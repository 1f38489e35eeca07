"""Hostile bytes against a real ``medrefine serve`` process: every RPC it serves (the Refiner's,
health's and reflection's) answers an undecodable body INVALID_ARGUMENT with one log line and no
traceback; a seeded, bounded fuzz of mutated messages gets only typed refusals; and SIGTERM still
ends the process within its drain timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from medrefine.v1 import refine_pb2 as pb

from .replicas import Replica

pytestmark = pytest.mark.slow  # a server process

DRAIN_S = 3.0
REFINER = pb.DESCRIPTOR.services_by_name["Refiner"]
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
METHODS = [m for service in (REFINER, HEALTH, REFLECTION) for m in service.methods]
UNDECODABLE = b"\xff\xff\xff\xff"  # field number 0 would follow: never a valid message
TYPED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def _call(channel: grpc.Channel, method: Any, body: bytes, timeout: float) -> grpc.StatusCode:
    """Send ``body`` as the (only) request message of ``method``; the status it ends with."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    kinds: dict[tuple[bool, bool], Callable[..., Any]] = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    rpc = kinds[(method.client_streaming, method.server_streaming)](path)
    request: Any = iter([body]) if method.client_streaming else body
    try:
        reply = rpc(request, timeout=timeout)
        if method.server_streaming:
            for _ in reply:
                pass
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        assert "Traceback" not in (exc.details() or "")
        return code
    return grpc.StatusCode.OK


def _samples() -> dict[str, bytes]:
    """One valid request per method, serialised: what the fuzz mutates."""
    header = pb.OpenSessionHeader(model="nuclei-unet2d", shape=[3, 8, 8], dtype=pb.DTYPE_UINT8)
    mark = pb.Mark(click=pb.Click(label=1, point=[2, 2], radius=1))
    by_input: dict[str, Any] = {
        "OpenSessionRequest": pb.OpenSessionRequest(header=header),
        "AddMarksRequest": pb.AddMarksRequest(session_id="fuzz", marks=[mark]),
        "RefineRequest": pb.RefineRequest(session_id="fuzz", marks=[mark]),
        "SessionRequest": pb.SessionRequest(session_id="fuzz", known_version=3),
        "AddClassRequest": pb.AddClassRequest(session_id="fuzz", name="lesion"),
        "GetMaskRequest": pb.GetMaskRequest(session_id="fuzz"),
        "HealthCheckRequest": health_pb2.HealthCheckRequest(service="medrefine.v1.Refiner"),
        "ServerReflectionRequest": reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="medrefine.v1.Refiner"
        ),
    }
    out = {}
    for m in METHODS:
        sample = by_input.get(m.input_type.name)
        out[m.name] = sample.SerializeToString() if sample is not None else b""
    return out


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """Flip, drop, insert or append bytes (seeded)."""
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 4))
        at = int(rng.integers(0, len(raw) + 1))
        if kind == 0 and raw:
            raw[min(at, len(raw) - 1)] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and raw:
            del raw[min(at, len(raw) - 1) :]
        elif kind == 2:
            raw[at:at] = rng.integers(0, 256, int(rng.integers(1, 6)), dtype=np.uint8).tobytes()
        else:
            raw += rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8).tobytes()
    return bytes(raw)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    folder = tmp_path_factory.mktemp("hostile")
    args = ["--models", "nuclei-unet2d", "--drain-timeout", str(DRAIN_S)]
    replica = Replica(folder, "server", args)
    yield replica
    replica.kill()


def test_undecodable_bodies_then_fuzz_then_sigterm(server: Replica) -> None:
    with grpc.insecure_channel(server.target) as channel:
        for method in METHODS:
            code = _call(channel, method, UNDECODABLE, timeout=10)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.full_name, code)
        refused = server.log().count("undecodable request to")
        assert refused == len(METHODS), server.log()
        rng = np.random.default_rng(20261207)
        samples = _samples()
        seen: dict[grpc.StatusCode, int] = {}
        for i in range(240):  # bounded: about 30 s on the 2-core development machine
            method = METHODS[i % len(METHODS)]
            watch = method.name == "Watch"  # a valid Watch streams until its deadline
            code = _call(channel, method, _mutate(rng, samples[method.name]), 1 if watch else 20)
            seen[code] = seen.get(code, 0) + 1
            if not (watch and code is grpc.StatusCode.DEADLINE_EXCEEDED):
                assert code in TYPED, (method.full_name, code)
        assert seen.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 0
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "Exception deserializing" not in log
    # streams left open when SIGTERM comes: stalled uploads, a reflection stream never closed
    release = threading.Event()
    with grpc.insecure_channel(server.target) as channel:
        calls = [
            channel.stream_unary("/medrefine.v1.Refiner/OpenSession").future(
                _held(samples["OpenSession"], release), timeout=120
            )
            for _ in range(5)
        ]
        path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        open_stream = channel.stream_stream(path)(
            _held(samples["ServerReflectionInfo"], release), timeout=120
        )
        time.sleep(1.0)
        try:
            t = time.monotonic()
            assert server.terminate(timeout=DRAIN_S + 30) == 0
            assert time.monotonic() - t < DRAIN_S + 5, "SIGTERM took longer than the drain timeout"
        finally:
            release.set()
            open_stream.cancel()
            for call in calls:
                call.cancel()


def _held(first: bytes, release: threading.Event) -> Iterator[bytes]:
    """One message, then a stream that stays open until ``release``."""
    yield first
    release.wait()
