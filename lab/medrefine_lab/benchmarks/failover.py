"""``medrefine bench serve``, the replica figures: failover time and health under stalled uploads.

- Failover: two ``medrefine serve`` processes share a journal behind a relay (a stand-in for the
  load balancer). A client works on a session through the relay; the replica serving it gets
  SIGKILL, the relay sends new connections to the other one, and the clock runs from the kill to
  the client's first answered call there (an AddMarks: it finds the session not live, reopens it
  by id, re-sends the image, and the replica computes the features and replays the journal). The
  killed replica is started again and the next kill goes the other way.
- Health under stalls: 100 OpenSession streams that send a header and 1 KiB and then stall, plus
  8 concurrent 32 MiB uploads; Health.Check and ListModels round trips meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

import medrefine as mr
from medrefine.client import RemoteSession, RemoteUnavailableError, stub
from medrefine.errors import ResourceError
from medrefine.serve import convert
from medrefine.v1 import refine_pb2 as pb
from medrefine_lab.benchmarks.relay import Relay

MODEL = "nuclei-unet2d"


class _Replica:
    """One ``medrefine serve`` process on a free loopback port."""

    def __init__(self, folder: Path, name: str, args: list[str]) -> None:
        self.port_file = folder / f"{name}.port"
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "medrefine.cli", "serve", "--port", "0"]
        cmd += ["--port-file", str(self.port_file), "--log-level", "WARNING", *args]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 300
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ResourceError("medrefine serve did not start")
            time.sleep(0.02)
        self.target = f"127.0.0.1:{int(self.port_file.read_text())}"

    def wait_serving(self) -> None:
        """Until its health service says every model is loaded."""
        request = health_pb2.HealthCheckRequest(service="medrefine.v1.Refiner")
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while (
                health.Check(request, timeout=30).status != health_pb2.HealthCheckResponse.SERVING
            ):
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _first_answer(remote: RemoteSession, mark: mr.Mark, deadline: float) -> None:
    """Add ``mark``, again while the relay still points at a dead connection."""
    while True:
        try:
            remote.add(mark)
            return
        except RemoteUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def failover(image: np.ndarray, count: int) -> list[float]:
    """Seconds from SIGKILL of the serving replica to the first answered call on the other
    one, ``count`` times (see the module docstring)."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = ["--models", MODEL, "--journal-dir", str(folder / "journal")]
        pair = [_Replica(folder, "a", args), _Replica(folder, "b", args)]
        relay = Relay(pair[0].target)
        try:
            for r in pair:
                r.wait_serving()
            remote = RemoteSession(relay.target, MODEL, session_id="failover")
            remote.set_image(image)
            rng = np.random.default_rng(0)
            for i in range(count):
                y, x = (int(rng.integers(4, s - 4)) for s in image.shape[-2:])
                remote.add(mr.Click(i % 2, (y, x), 2))
                remote.refine()  # the session has work to replay
                dead, alive = pair[i % 2], pair[(i + 1) % 2]
                t = time.perf_counter()
                dead.kill()
                relay.route(alive.target)
                relay.cut()
                _first_answer(remote, mr.Click(0, (2, 2), 1), time.monotonic() + 300)
                times.append(time.perf_counter() - t)
                pair[i % 2] = _Replica(folder, f"{'ab'[i % 2]}{i}", args)
                pair[i % 2].wait_serving()
            remote.close()
        finally:
            relay.close()
            for r in pair:
                r.kill()
    return times


def _stalled(release: threading.Event) -> Iterator[pb.OpenSessionRequest]:
    header = pb.OpenSessionHeader(model=MODEL, shape=(3, 256, 256), dtype=pb.DTYPE_UINT8)
    yield pb.OpenSessionRequest(header=header)
    yield pb.OpenSessionRequest(chunk=bytes(1024))
    release.wait()


def _large() -> Iterator[pb.OpenSessionRequest]:
    """32 MiB of float64 pixels whose digest cannot match: read, hashed, refused."""
    shape = (3, 1183, 1183)
    header = pb.OpenSessionHeader(model=MODEL, shape=shape, dtype=pb.DTYPE_FLOAT64)
    header.digest = "0" * 64
    yield pb.OpenSessionRequest(header=header)
    total, piece = int(np.prod(shape)) * 8, bytes(convert.CHUNK_BYTES)
    for at in range(0, total, convert.CHUNK_BYTES):
        yield pb.OpenSessionRequest(chunk=piece[: min(convert.CHUNK_BYTES, total - at)])


def health_under_stalls(stalls: int = 100, large: int = 8) -> dict[str, list[float]]:
    """Round-trip ms of Health.Check and ListModels on a fresh server while ``stalls`` uploads
    stall and ``large`` 32 MiB uploads stream, and the same with nothing else going on. The
    uploads come from a process of their own (as they would from other machines), so that
    their client-side work does not delay the probes in this one."""
    out: dict[str, list[float]] = {"idle": [], "loaded": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = _Replica(Path(tmp), "s", ["--models", MODEL, "--upload-idle-s", "60"])
        try:
            server.wait_serving()
            probe = grpc.insecure_channel(server.target)
            for _ in range(40):
                out["idle"] += _probe(probe)
            cmd = [sys.executable, "-m", "medrefine_lab.benchmarks.failover", server.target]
            load = subprocess.Popen(
                [*cmd, str(stalls), str(large)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert load.stdout is not None and load.stdin is not None
            if load.stdout.readline().strip() != "stalled":
                raise ResourceError("the upload load did not start")
            done = threading.Event()
            output = load.stdout

            def wait_uploaded() -> None:
                output.readline()
                done.set()

            threading.Thread(target=wait_uploaded, daemon=True).start()
            while not done.is_set():
                out["loaded"] += _probe(probe)
            load.stdin.close()  # releases the stalls
            if load.wait(timeout=120) != 0:
                raise ResourceError("a stalled upload ended before the measurement did")
            probe.close()
        finally:
            server.stop()
    return out


def _load(target: str, stalls: int, large: int) -> int:
    """The upload load of :func:`health_under_stalls`, in its own process: prints ``stalled``
    once the stalls hold, ``uploaded`` once the large uploads are done; holds the stalls until
    stdin closes. Exit status 1 if a stall ended early."""
    release = threading.Event()
    channels = [grpc.insecure_channel(target) for _ in range(10)]
    held = [
        stub(channels[i % 10]).OpenSession.future(_stalled(release), timeout=300)
        for i in range(stalls)
    ]
    time.sleep(1.0)
    print("stalled", flush=True)
    uploads = [stub(channels[i % 10]).OpenSession.future(_large()) for i in range(large)]
    for f in uploads:
        f.exception()
    print("uploaded", flush=True)
    sys.stdin.read()
    early = any(f.done() for f in held)
    release.set()
    for channel in channels:
        channel.close()
    return 1 if early else 0


def _probe(channel: grpc.Channel) -> list[float]:
    """Milliseconds of one Health.Check and one ListModels."""
    health = health_pb2_grpc.HealthStub(channel)
    times = []
    t = time.perf_counter()
    health.Check(health_pb2.HealthCheckRequest(service="medrefine.v1.Refiner"), timeout=30)
    times.append(1e3 * (time.perf_counter() - t))
    t = time.perf_counter()
    stub(channel).ListModels(pb.ListModelsRequest(), timeout=30)
    times.append(1e3 * (time.perf_counter() - t))
    return times


if __name__ == "__main__":
    sys.exit(_load(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
