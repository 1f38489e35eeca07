"""``create_server(address, config) -> (server, port)`` and the ``medrefine serve`` main loop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import medrefine as mr
from medrefine.engine.session.backend import check_available
from medrefine.errors import InputError
from medrefine.serve.auth import TokenAuth
from medrefine.serve.config import ServerConfig
from medrefine.serve.guard import DecodeGuard
from medrefine.serve.journals import open_journal
from medrefine.serve.registry import Registry
from medrefine.serve.servicer import RefinerServicer
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

log = logging.getLogger("medrefine.serve")
SERVICE = pb.DESCRIPTOR.services_by_name["Refiner"].full_name  # "medrefine.v1.Refiner"


class Server:
    """A started-or-not gRPC server with its registry, health servicer and journal."""

    def __init__(
        self,
        grpc_server: grpc.Server,
        registry: Registry,
        health: health.HealthServicer,
        servicer: RefinerServicer | None = None,
    ):
        self.grpc = grpc_server
        self.registry = registry
        self.health = health
        self.servicer = servicer or RefinerServicer(registry)  # also what the web port serves

    def start(self) -> None:
        self.grpc.start()

    def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, let running calls finish for ``grace`` seconds, close the journal."""
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        if self.registry.journal is not None:
            self.registry.journal.close()


def create_server(address: str, config: ServerConfig | None = None) -> tuple[Server, int]:
    """Build (not start) a server bound to ``address`` ("host:port"; port 0 = any free port).

    Returns:
        The server and the port it is bound to.
    """
    config = config or ServerConfig()
    check_available(config.backend)  # fails now, not in the background loading of the models
    journal = open_journal(config.journal)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # the process answers
    names = config.models or tuple(mr.list_models())
    for name in (SERVICE, *(f"{SERVICE}/{n}" for n in names)):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    failed: list[str] = []

    def loaded(name: str, ok: bool) -> None:
        """A model is ready: its health service says so, and the Refiner's once all are."""
        if ok:
            health_servicer.set(f"{SERVICE}/{name}", health_pb2.HealthCheckResponse.SERVING)
        else:
            failed.append(name)
        if name == names[-1] and not failed:
            health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    registry = Registry(config, journal, loaded)
    interceptors: list[grpc.ServerInterceptor] = [DecodeGuard()]
    if config.token is not None:
        interceptors.append(TokenAuth(config.token))
    # uploads may hold at most max_uploads handler threads (more are refused at once), so the
    # other calls (health, ListModels, the sessions' calls) always find free ones
    pool = futures.ThreadPoolExecutor(max_workers=config.max_uploads + max(32, 4 * config.workers))
    grpc_server = grpc.server(pool, interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    add_servicer: Any = pb_grpc.add_RefinerServicer_to_server  # generated, untyped
    servicer = RefinerServicer(registry)
    add_servicer(servicer, grpc_server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    services = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), grpc_server)
    if config.tls_cert is not None and config.tls_key is not None:
        creds = grpc.ssl_server_credentials(
            [(config.tls_key, config.tls_cert)],
            root_certificates=config.client_ca,
            require_client_auth=config.client_ca is not None,
        )
        port = grpc_server.add_secure_port(address, creds)
    else:
        port = grpc_server.add_insecure_port(address)
    if port == 0:
        raise InputError(f"cannot listen on {address!r}")
    return Server(grpc_server, registry, health_servicer, servicer), port


def _write_port(port_file: Path, port: int) -> None:
    tmp = port_file.with_name(port_file.name + f".{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(port_file)  # readers never see a half-written file


def serve(
    host: str,
    port: int,
    config: ServerConfig,
    port_file: Path | None = None,
    web_port: int | None = None,
    web_port_file: Path | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain running calls and return 0.

    ``web_port`` (None: no web port) also serves the viewer and gRPC-Web on that port
    (:mod:`medrefine.serve.web`), over the same sessions.
    """
    # short calls (health checks, ListModels) wait for the interpreter lock behind every busy
    # handler thread; a 1 ms switch interval instead of 5 ms keeps that wait short under load
    sys.setswitchinterval(0.001)
    server, bound = create_server(f"{host}:{port}", config)
    web = None
    if web_port is not None:
        try:
            from medrefine.serve.web import create_web_server
        except ImportError as exc:
            raise InputError(
                f"--web needs the connectrpc package (Python 3.11 or newer): {exc}"
            ) from exc
        web = create_web_server(host, web_port, server.servicer, config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    if port_file is not None:
        _write_port(port_file, bound)
    if web is not None:
        web.start()
        scheme = "https" if config.tls_cert else "http"
        log.info("viewer at %s://%s:%d/", scheme, _url_host(host), web.port)
        if web_port_file is not None:
            _write_port(web_port_file, web.port)
    log.info(
        "medrefine serving %s on %s:%d (%s, token %s, journal %s, sites %s)",
        ", ".join(server.registry.names),
        host,
        bound,
        "TLS" if config.tls_cert else "plaintext",
        "required" if config.token else "off",
        _journal_name(config),
        config.site_dir or "off",
    )
    while not stop.wait(1.0):
        server.registry.sweep()
    log.info("draining (at most %.0f s)", config.drain_s)
    # whatever a hostile client left behind, the process ends within the drain timeout: past
    # it (plus a little for the journal and the logs), it exits without waiting for threads
    exit_timer = threading.Timer(config.drain_s + 2.0, _exit_now)
    exit_timer.daemon = True
    exit_timer.start()
    if web is not None:
        web.stop()
    server.stop(grace=config.drain_s)
    return 0


def _exit_now() -> None:
    log.warning("calls still running after the drain timeout: exiting without them")
    logging.shutdown()
    os._exit(0)


def _journal_name(config: ServerConfig) -> str:
    """Where the journal is, for the log: a URL without its user and password."""
    if config.journal_url is not None:
        scheme, rest = config.journal_url.split("://", 1)
        return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
    return str(config.journal_dir or "off")


def _url_host(host: str) -> str:
    """``host`` as it goes into a URL (an IPv6 address in brackets, any-address as localhost)."""
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host
