"""A loopback TCP relay to one server at a time: what a load balancer does on failover.

It forwards raw bytes (gRPC's HTTP/2 passes untouched) to whichever server it is routed to now;
new connections go to the new route, as a balancer's do after a replica dies. It can also hold
back the server's replies and then cut every connection, so that a call is lost after the
server did its work (its outcome unknown to the client). Used by ``medrefine bench serve``
(failover time) and by the tests of replicas.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from contextlib import suppress


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
