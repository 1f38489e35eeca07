"""A restarted replica answers health checks within seconds: its models load in the background,
its health service reports NOT_SERVING until they are ready (per model, and for the Refiner once
all are), and a call that needs a model still loading waits for it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medrefine.client import RemoteSession

from .conftest import marks_2d
from .replicas import Replica

pytestmark = pytest.mark.slow  # server processes

MODELS = ("nuclei-unet2d", "hippocampus-unet3d")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _status(target: str, service: str) -> int | None:
    """The health status of ``service``, or None if the server does not answer yet."""
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        return int(reply.status)
    except grpc.RpcError:
        return None


def _import_seconds() -> float:
    """Seconds a fresh interpreter takes to import the server (torch included), now."""
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "import medrefine.serve.server"], check=True)
    return time.monotonic() - t


def test_a_restarted_replica_answers_at_once_and_serves_once_loaded(
    tmp_path: Path, nuclei: np.ndarray
) -> None:
    args = ["--models", ",".join(MODELS), "--journal-dir", str(tmp_path / "journal")]
    first = Replica(tmp_path, "first", [*args, "--log-level", "WARNING"])
    try:
        with RemoteSession(first.target, MODELS[0], session_id="restart-1") as remote:
            remote.set_image(nuclei)
            remote.add(marks_2d()[0])
            mask = remote.refine().mask
    finally:
        first.kill()

    imports = _import_seconds()
    second = Replica(tmp_path, "second", [*args, "--log-level", "INFO"], wait=False)
    try:
        target = second.wait_listening(timeout=60)
        while (answer := _status(target, "")) is None:
            assert time.monotonic() - second.started < 60, second.log()
            time.sleep(0.02)
        answered = time.monotonic() - second.started
        assert answer == SERVING  # the process itself
        assert _status(target, "medrefine.v1.Refiner") == NOT_SERVING  # models still loading
        print(f"health answered {answered:.2f} s after the start ({imports:.2f} s: imports)")
        # 5 s on an idle 2-core machine; what a loaded one adds to the imports, it adds to both
        assert answered < max(5.0, imports + 2.0), f"health answered only after {answered:.1f} s"
        with RemoteSession(target, MODELS[0], session_id="restart-1") as again:
            np.testing.assert_array_equal(again.set_image(nuclei), mask)  # waits for its model
            assert again.resumed
        assert _status(target, f"medrefine.v1.Refiner/{MODELS[0]}") == SERVING
        deadline = time.monotonic() + 180
        while _status(target, "medrefine.v1.Refiner") != SERVING:
            assert time.monotonic() < deadline, second.log()
            time.sleep(0.1)
        assert _status(target, f"medrefine.v1.Refiner/{MODELS[1]}") == SERVING
        assert "model hippocampus-unet3d ready" in second.log()
    finally:
        second.kill()
