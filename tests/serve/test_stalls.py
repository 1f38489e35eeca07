"""Stalled and flooding uploads cannot starve the server: real gRPC streams against a real
``medrefine serve`` process. An upload that stops sending is refused after the idle timeout; the
uploads in progress hold at most the server's upload budget; health checks and ListModels keep
answering throughout."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medrefine.client import stub
from medrefine.serve import convert
from medrefine.v1 import refine_pb2 as pb

from .replicas import Replica

pytestmark = pytest.mark.slow  # a server process and a hundred streams

IDLE_S = 8.0
BUDGET_MIB = 300
LARGE = (3, 1183, 1183)  # float64, 32 MiB: one of the 8 large uploads


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    folder = tmp_path_factory.mktemp("stalls")
    args = ["--models", "nuclei-unet2d", "--log-level", "WARNING"]
    args += ["--upload-idle-s", str(IDLE_S), "--max-upload-mb-total", str(BUDGET_MIB)]
    replica = Replica(folder, "server", args)
    replica.wait_serving()
    yield replica
    replica.kill()


def _header(
    shape: tuple[int, ...], digest: str = "", dtype: pb.DType = pb.DTYPE_FLOAT64
) -> pb.OpenSessionRequest:
    head = pb.OpenSessionHeader(model="nuclei-unet2d", shape=shape, dtype=dtype, digest=digest)
    return pb.OpenSessionRequest(header=head)


def _stalled(
    shape: tuple[int, ...], release: threading.Event, dtype: pb.DType = pb.DTYPE_UINT8
) -> Iterator[pb.OpenSessionRequest]:
    """A header and 1 KiB of pixels, then nothing until ``release``."""
    yield _header(shape, dtype=dtype)
    yield pb.OpenSessionRequest(chunk=bytes(1024))
    release.wait()


def _large() -> Iterator[pb.OpenSessionRequest]:
    """A whole 32 MiB image whose digest cannot match: read, hashed, refused (no backbone)."""
    yield _header(LARGE, "0" * 64)
    piece = bytes(convert.CHUNK_BYTES)
    total = LARGE[0] * LARGE[1] * LARGE[2] * 8
    for at in range(0, total, convert.CHUNK_BYTES):
        yield pb.OpenSessionRequest(chunk=piece[: min(convert.CHUNK_BYTES, total - at)])


def _probe(channel: grpc.Channel) -> list[float]:
    """Milliseconds of Health.Check ("" and the Refiner) and ListModels, each with a 5 s
    deadline: any of them not answering in time fails the test."""
    health = health_pb2_grpc.HealthStub(channel)
    refiner = stub(channel)
    times = []
    for service in ("", "medrefine.v1.Refiner", None):
        t = time.perf_counter()
        if service is None:
            assert refiner.ListModels(pb.ListModelsRequest(), timeout=5).models
        else:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        times.append(1e3 * (time.perf_counter() - t))
    return times


def test_health_and_list_models_answer_under_stalls_and_large_uploads(server: Replica) -> None:
    release = threading.Event()
    channels = [grpc.insecure_channel(server.target) for _ in range(10)]
    try:
        stalls = [
            stub(channels[i % 10]).OpenSession.future(_stalled((3, 256, 256), release), timeout=120)
            for i in range(100)
        ]
        time.sleep(1.0)  # every stall has sent its header and chunk and now waits
        assert not any(f.done() for f in stalls), [f.exception() for f in stalls if f.done()]
        large = [stub(channels[i]).OpenSession.future(_large(), timeout=120) for i in range(8)]
        probe = grpc.insecure_channel(server.target)
        times: list[float] = []
        while not all(f.done() for f in large):
            times += _probe(probe)
        times += _probe(probe)
        for f in large:
            exc = f.exception()
            assert isinstance(exc, grpc.RpcError) and exc.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "header.digest" in (exc.details() or "")
        assert not any(f.done() for f in stalls)  # the stalls held throughout
        print(
            f"health/ListModels under 100 stalled + 8 large uploads: {len(times)} calls, "
            f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
        )
        # the idle timeout ends every stall, each with its own reason
        for f in stalls:
            exc = f.exception(timeout=IDLE_S + 30)
            assert isinstance(exc, grpc.RpcError), exc
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            assert ("medrefine-reason", "UPLOAD_IDLE") in (exc.trailing_metadata() or ())
        probe.close()
    finally:
        release.set()
        for channel in channels:
            channel.close()


def test_uploads_in_progress_hold_at_most_the_budget(server: Replica) -> None:
    """Two stalled uploads declaring 128 MiB each hold 256 of the 300 MiB: a third is refused
    before it is read; once they end, it goes through."""
    release = threading.Event()
    big = (4, 2048, 2048)  # float64, 128 MiB
    with grpc.insecure_channel(server.target) as channel:
        refiner = stub(channel)
        held = [
            refiner.OpenSession.future(_stalled(big, release, pb.DTYPE_FLOAT64), timeout=60)
            for _ in range(2)
        ]
        time.sleep(1.0)
        try:
            with pytest.raises(grpc.RpcError) as refused:
                refiner.OpenSession(_stalled(big, release, pb.DTYPE_FLOAT64), timeout=30)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "upload budget" in (refused.value.details() or "")
            assert ("medrefine-reason", "UPLOAD_BUDGET") in refused.value.trailing_metadata()
        finally:
            release.set()
        for f in held:
            assert isinstance(f.exception(timeout=30), grpc.RpcError)
        small = iter(
            [_header((3, 64, 64), dtype=pb.DTYPE_UINT8), pb.OpenSessionRequest(chunk=bytes(12288))]
        )
        reply = refiner.OpenSession(small, timeout=120)
        assert reply.session_id
        refiner.CloseSession(pb.SessionRequest(session_id=reply.session_id), timeout=30)


def test_a_stalled_upload_is_refused_after_the_idle_timeout(server: Replica) -> None:
    release = threading.Event()
    try:
        with grpc.insecure_channel(server.target) as channel:
            t = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                stub(channel).OpenSession(_stalled((3, 64, 64), release), timeout=IDLE_S + 30)
            waited = time.monotonic() - t
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "idle" in (refused.value.details() or "")
            assert IDLE_S - 1 <= waited < IDLE_S + 20
    finally:
        release.set()


def test_the_log_names_no_traceback(server: Replica) -> None:
    assert "Traceback" not in server.log(), server.log()[-3000:]
