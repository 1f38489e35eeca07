"""``medrefine serve --web``: the viewer page, gRPC-Web for the same servicer, and file helpers.

One HTTP port serves:

- ``GET /`` and the viewer's bundle (``medrefine/viewer/``, built from ``web/``);
- ``POST /medrefine.v1.Refiner/<Method>``: the gRPC service over gRPC-Web or Connect
  (:mod:`medrefine.serve.grpcweb`), answered by the gRPC server's own servicer object;
- ``GET /api/samples``, ``GET /api/samples/<name>``, ``POST /api/decode``: images decoded by the
  server's readers, as the viewer uploads them (:mod:`medrefine.serve.web_images`);
- ``POST /api/mask?format=nifti|dicom-seg``: a mask written by the server's writers.

The page and its bundle need no token; every call and every ``/api`` request does when the
server requires one (``authorization: Bearer <token>``). With TLS configured the port speaks
HTTPS with the same certificate (and client CA) as the gRPC port. Requests run in threads of the
standard library's WSGI server, at most :data:`MAX_THREADS` at once.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from connectrpc.errors import ConnectError

from medrefine.errors import InputError, MedrefineError, ResourceError
from medrefine.serve.config import ServerConfig
from medrefine.serve.grpcweb import RefinerWSGI, check_token
from medrefine.serve.servicer import RefinerServicer
from medrefine.serve.status import code_of
from medrefine.serve.web_images import (
    Geometries,
    WireImage,
    decode_upload,
    encode_mask,
    list_samples,
    read_sample,
    wire_image,
)

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger("medrefine.serve.web")

#: Requests handled at once; more wait for a free thread.
MAX_THREADS = 32
STATIC = Path(__file__).resolve().parents[1] / "viewer"
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
    "/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
}
_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]
_HTTP = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
_HTTP |= {409: "Conflict", 411: "Length Required", 413: "Content Too Large"}
_HTTP |= {500: "Internal Server Error"}
_STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 413,
    "FAILED_PRECONDITION": 409,
}
Body = Iterable[bytes]


class HttpError(Exception):
    """An ``/api`` request refused with an HTTP status and a JSON ``{code, message}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _reply(
    start: StartResponse, status: int, body: bytes, ctype: str, extra: Iterable[tuple[str, str]]
) -> Body:
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), *_HEADERS, *extra]
    start(f"{status} {_HTTP.get(status, 'OK')}", headers)
    return [body]


def _json(start: StartResponse, value: Any, status: int = 200) -> Body:
    return _reply(start, status, json.dumps(value).encode(), "application/json", ())


def _image(start: StartResponse, image: WireImage) -> Body:
    meta = json.dumps(image.meta, ensure_ascii=True)
    return _reply(start, 200, image.data, "application/octet-stream", [("X-Medrefine-Image", meta)])


def _read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise HttpError(400, "INVALID_ARGUMENT", "bad Content-Length") from exc
    if length > limit:
        raise HttpError(413, "RESOURCE_EXHAUSTED", f"{length} bytes exceed the limit of {limit}")
    data: bytes = environ["wsgi.input"].read(length) if length else b""
    if len(data) != length:
        raise HttpError(400, "INVALID_ARGUMENT", "the request body ended early")
    return data


def _drain_chunked(stream: Any, limit: int = 1 << 20) -> None:
    """Read a refused chunked body up to its last chunk (at most ``limit`` bytes), so that closing
    the connection does not reset it before the client has read the answer."""
    read = 0
    while read < limit:
        line = stream.readline(1024)
        read += len(line)
        try:
            size = int(line.split(b";")[0].strip() or b"x", 16)
        except ValueError:
            return
        if size == 0:
            stream.readline(1024)  # the blank line after the last chunk (no trailers expected)
            return
        read += len(stream.read(size + 2))


def _form_files(environ: WSGIEnvironment, body: bytes) -> list[tuple[str, bytes]]:
    """The files of a ``multipart/form-data`` body, as (file name, content)."""
    ctype = environ.get("CONTENT_TYPE", "")
    if not ctype.startswith("multipart/form-data"):
        raise HttpError(400, "INVALID_ARGUMENT", "send the files as multipart/form-data")
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    files = []
    for part in message.iter_parts():
        name = part.get_filename()
        content = part.get_payload(decode=True)
        if name and isinstance(content, bytes):
            files.append((name, content))
    return files


class WebApp:
    """The web port's WSGI application (see the module docstring).

    Args:
        servicer: the gRPC server's servicer (its registry holds the sessions).
        config: the server's config (token, image limit).
    """

    def __init__(self, servicer: RefinerServicer, config: ServerConfig) -> None:
        self.rpc = RefinerWSGI(servicer, config.token)
        self.token = config.token
        self.max_bytes = config.max_image_bytes
        self.served = config.models  # empty: every zoo model
        self.geometries = Geometries()
        self._api: dict[tuple[str, str], Callable[[WSGIEnvironment, StartResponse], Body]] = {
            ("GET", "/api/samples"): self._samples,
            ("POST", "/api/decode"): self._decode,
            ("POST", "/api/mask"): self._mask,
        }

    def __call__(self, environ: WSGIEnvironment, start: StartResponse) -> Body:
        path, method = environ.get("PATH_INFO") or "/", environ["REQUEST_METHOD"]
        if environ.get("HTTP_TRANSFER_ENCODING"):  # the WSGI server reads no chunked body
            _drain_chunked(environ["wsgi.input"])
            message = "send the request body with a Content-Length (not chunked)"
            return _json(start, {"code": "INVALID_ARGUMENT", "message": message}, 411)
        if path.startswith(self.rpc.path + "/"):
            return self.rpc(environ, start)
        if path in _FILES:
            if method not in ("GET", "HEAD"):
                return _json(start, {"code": "INVALID_ARGUMENT", "message": "GET only"}, 405)
            name, ctype = _FILES[path]
            return _reply(start, 200, (STATIC / name).read_bytes(), ctype, ())
        try:
            if not path.startswith("/api/"):
                raise HttpError(404, "NOT_FOUND", f"no page {path}")
            try:
                check_token(environ.get("HTTP_AUTHORIZATION"), self.token)
            except ConnectError as exc:
                raise HttpError(401, "UNAUTHENTICATED", exc.message) from exc
            if method == "GET" and path.startswith("/api/samples/"):
                return self._sample(unquote(path.removeprefix("/api/samples/")), start)
            handler = self._api.get((method, path))
            if handler is None:
                raise HttpError(404, "NOT_FOUND", f"no {method} {path}")
            return handler(environ, start)
        except HttpError as exc:
            return _json(start, {"code": exc.code, "message": exc.message}, exc.status)
        except MedrefineError as exc:
            code = code_of(exc).name
            status = _STATUS_OF_CODE.get(code, 400)
            return _json(start, {"code": code, "message": str(exc)}, status)
        except Exception:
            log.exception("%s %s failed", method, path)
            message = f"internal error in {method} {path} (see the server log)"
            return _json(start, {"code": "INTERNAL", "message": message}, 500)

    def _samples(self, environ: WSGIEnvironment, start: StartResponse) -> Body:
        samples = [s for s in list_samples() if not self.served or s["model"] in self.served]
        return _json(start, samples)

    def _sample(self, name: str, start: StartResponse) -> Body:
        volume, file, model = read_sample(name)
        image = wire_image(volume, file, model)
        self.geometries.put(image.meta["digest"], volume)
        return _image(start, image)

    def _decode(self, environ: WSGIEnvironment, start: StartResponse) -> Body:
        body = _read_body(environ, 2 * self.max_bytes)
        files = _form_files(environ, body)
        volume = decode_upload(files, self.max_bytes)
        name = files[0][0] if len(files) == 1 else f"{Path(files[0][0]).parent.name or 'series'}"
        image = wire_image(volume, name)
        if len(image.data) > self.max_bytes:
            raise ResourceError(
                f"image of {len(image.data)} bytes exceeds the server's limit of {self.max_bytes}"
            )
        self.geometries.put(image.meta["digest"], volume)
        return _image(start, image)

    def _mask(self, environ: WSGIEnvironment, start: StartResponse) -> Body:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        fmt = query.get("format", ["nifti"])[0]
        try:
            meta = json.loads(environ.get("HTTP_X_MEDREFINE_MASK") or "{}")
        except json.JSONDecodeError as exc:
            raise InputError(f"the X-Medrefine-Mask header is not JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise InputError("the X-Medrefine-Mask header must be a JSON object")
        name, data = encode_mask(_read_body(environ, self.max_bytes), meta, fmt, self.geometries)
        disposition = [("Content-Disposition", f'attachment; filename="{name}"')]
        return _reply(start, 200, data, "application/octet-stream", disposition)


class _Handler(WSGIRequestHandler):
    """Logs requests at DEBUG instead of printing them; a connection silent for ``timeout``
    seconds is dropped."""

    timeout = 120.0

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """The standard library's WSGI server, a thread per request (bounded), TLS per connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS of the bound host
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request.settimeout(30.0)
                try:
                    request = self.tls.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    self.shutdown_request(request)
                    return
                request.settimeout(None)
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


def _tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="medrefine-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(config.tls_cert)
        key.write_bytes(config.tls_key)
        key.chmod(0o600)
        context.load_cert_chain(cert, key)
    if config.client_ca is not None:
        context.load_verify_locations(cadata=config.client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class WebServer:
    """The web port: start() serves in a background thread, stop() closes it."""

    def __init__(self, httpd: _Server, app: WebApp) -> None:
        self.httpd = httpd
        self.app = app
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="medrefine-web", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()


def create_web_server(
    host: str, port: int, servicer: RefinerServicer, config: ServerConfig
) -> WebServer:
    """Bind (not start) the web port on ``host:port`` (port 0: any free port).

    Raises:
        InputError: the port cannot be bound, or the viewer's bundle is missing from the package.
    """
    if not (STATIC / "index.html").is_file():
        raise InputError(f"the viewer's files are missing from {STATIC} (rebuild: web/build.py)")
    kind = _Server6 if ":" in host else _Server
    try:
        httpd = kind((host, port), _tls_context(config))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} for the viewer: {exc.strerror}") from exc
    app = WebApp(servicer, config)
    httpd.set_app(app)
    return WebServer(httpd, app)
