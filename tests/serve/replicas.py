"""Real ``medrefine serve`` processes, and a TCP relay standing in for a load balancer.

The relay forwards raw bytes (gRPC's HTTP/2 passes untouched) to whichever replica it is routed
to now; new connections go to the new route, as a balancer's do after a failover. It can also
hold back the server's replies and then cut every connection: the client's call is lost after
the server has done its work, so its outcome is unknown to the client.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

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


class Relay:
    """A loopback TCP relay to one replica at a time (see the module docstring)."""

    def __init__(self, target: str) -> None:
        self.route(target)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._hold = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def route(self, target: str) -> None:
        """Send new connections to ``target``."""
        host, port = target.rsplit(":", 1)
        self._to = (host, int(port))

    def hold_replies(self) -> None:
        """Stop passing the server's bytes to the client (they wait in the socket)."""
        self._hold.set()

    def cut(self) -> None:
        """Close every connection now; new ones pass replies again."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._hold.clear()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._to, timeout=5)
            except OSError:
                client.close()  # the replica is down: the client sees UNAVAILABLE
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(src, selectors.EVENT_READ)
            while True:
                if reply and self._hold.is_set():
                    time.sleep(0.01)
                    if src.fileno() < 0:
                        return
                    continue
                if not sel.select(timeout=0.1):
                    continue
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            sel.close()
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
