"""Real ``medrefine serve`` processes, and a TCP relay standing in for a load balancer.

The relay forwards raw bytes (gRPC's HTTP/2 passes untouched) to whichever replica it is routed
to now; new connections go to the new route, as a balancer's do after a failover. It can also
hold back the server's replies and then cut every connection: the client's call is lost after
the server has done its work, so its outcome is unknown to the client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medrefine_lab.benchmarks.relay import Relay

T = TypeVar("T")

__all__ = ["PG_ENV", "SERVER_PATH_ENV", "Relay", "Replica", "after_a_cut", "replicas"]

PG_ENV = "MEDREFINE_TEST_POSTGRES"  # a postgresql:// URL of a database the tests may use
#: PYTHONPATH of the replica processes only, e.g. an older checkout's ``python`` folder: the
#: same tests then show what that server did (the client stays this tree's)
SERVER_PATH_ENV = "MEDREFINE_TEST_SERVER_PYTHONPATH"


# runs medrefine.cli from PYTHONPATH, past an editable install's import redirection
_FROM_PATH = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]; "
    "runpy.run_module('medrefine.cli', run_name='__main__')"
)


class Replica:
    """One ``medrefine serve`` process on a free loopback port."""

    def __init__(self, folder: Path, name: str, args: list[str], wait: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port_file = folder / f"{name}.port"
        self.log_path = folder / f"{name}.log"
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "medrefine.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--port-file", str(self.port_file), *args]
        env = dict(os.environ)
        if os.environ.get(SERVER_PATH_ENV):  # the servers from another source tree
            env["PYTHONPATH"] = os.environ[SERVER_PATH_ENV]
            cmd[1:3] = ["-c", _FROM_PATH]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.started = time.monotonic()
        self.target = ""
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no port file after {timeout} s\n{self.log()}"
            time.sleep(0.02)
        self.target = f"127.0.0.1:{int(self.port_file.read_text())}"
        return self.target

    def wait_serving(self, timeout: float = 300.0) -> None:
        """Until its health service says every model is loaded."""
        request = health_pb2.HealthCheckRequest(service="medrefine.v1.Refiner")
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while (
                health.Check(request, timeout=30).status != health_pb2.HealthCheckResponse.SERVING
            ):
                assert time.monotonic() < deadline, (
                    f"models not loaded in {timeout} s\n{self.log()}"
                )
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float) -> int:
        """SIGTERM; the exit status (fails the test if the process outlives ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {timeout} s after SIGTERM\n{self.log()}") from None


@contextmanager
def replicas(folder: Path, count: int, args: list[str]) -> Iterator[list[Replica]]:
    """``count`` replicas started side by side with the same flags; killed at the end."""
    started = [Replica(folder, f"r{i}", args, wait=False) for i in range(count)]
    try:
        for r in started:
            r.wait_listening()
        yield started
    finally:
        for r in started:
            r.kill()


def after_a_cut(call: Callable[[], T], attempts: int = 5) -> tuple[T, int]:
    """``call()`` and how many times it failed first: the calls right after :meth:`Relay.cut`
    may go out on the dead connection (UNAVAILABLE) until gRPC notices and reconnects, so a
    client sends again, as a real one would after a network fault."""
    from medrefine.client import RemoteUnavailableError

    for failed in range(attempts - 1):
        try:
            return call(), failed
        except RemoteUnavailableError:
            time.sleep(0.05 * (failed + 1))
    return call(), attempts - 1
