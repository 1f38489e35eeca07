"""The web port in process: page, token, file decoding and mask writing, gRPC-Web over the gRPC
server's own servicer, refused requests, TLS. Real servers on free loopback ports, real files
(NIfTI, PNG, a DICOM series written with pydicom), a real gRPC-Web client (connectrpc's)."""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import io
import json
import ssl
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from PIL import Image

import medrefine as mr
from medrefine.cli import main
from medrefine.client import RemoteSession
from medrefine.io import read_volume
from medrefine.samples import DATA
from medrefine.serve import Server, ServerConfig, convert, create_server
from medrefine.serve.grpcweb import SERVICE, RefinerWSGI, method_info
from medrefine.serve.web import WebServer, create_web_server
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

TESTS = Path(__file__).resolve().parents[1]
TOKEN = "web-port-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MODELS = ("nuclei-unet2d", "hippocampus-unet3d")
METHODS = {m.name: method_info(m) for m in SERVICE.methods}


def _helper(path: str) -> ModuleType:
    """A helper module of another test folder (those folders are not packages)."""
    name = f"web_helper_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, TESTS / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dicom_maker = _helper("io/dicom_maker.py")
certs = _helper("serve/certs.py")


@dataclass
class Ports:
    server: Server
    web: WebServer
    grpc_target: str
    url: str


def _start(config: ServerConfig) -> Ports:
    server, port = create_server("127.0.0.1:0", config)
    web = create_web_server("127.0.0.1", 0, server.servicer, config)
    server.start()
    web.start()
    scheme = "https" if config.tls_cert else "http"
    return Ports(server, web, f"127.0.0.1:{port}", f"{scheme}://127.0.0.1:{web.port}")


@pytest.fixture(scope="module")
def ports() -> Iterator[Ports]:
    p = _start(ServerConfig(models=MODELS, token=TOKEN))
    yield p
    p.web.stop()
    p.server.stop(grace=0)


def _get(
    url: str,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    **kw: Any,
) -> tuple[int, Any, bytes]:
    """(status, headers, body) of a request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, **kw)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _form(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``files``, as a browser's FormData sends it."""
    boundary = "medrefine-test-boundary"
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _decode(ports: Ports, files: list[tuple[str, bytes]]) -> tuple[int, Any, bytes]:
    body, ctype = _form(files)
    headers = {**AUTH, "Content-Type": ctype}
    return _get(f"{ports.url}/api/decode", headers, data=body, method="POST")


def _image(answer: tuple[int, Any, bytes]) -> tuple[dict[str, Any], np.ndarray]:
    status, headers, body = answer
    assert status == 200, body
    meta = json.loads(headers["X-Medrefine-Image"])
    assert meta["digest"] == hashlib.sha256(body).hexdigest()
    return meta, np.frombuffer(body, np.dtype(meta["dtype"]).newbyteorder("<")).reshape(
        meta["shape"]
    )


# ---------------------------------------------------------------------------------- page, token


def test_the_page_and_bundle_need_no_token(ports: Ports) -> None:
    status, headers, body = _get(f"{ports.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="viewer.js"' in body and "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = _get(f"{ports.url}/viewer.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and body
    status, _, body = _get(f"{ports.url}/no-such-page")
    assert status == 404 and json.loads(body)["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "missing authorization"), ({"authorization": "Bearer nope"}, "wrong bearer token")],
)
def test_api_requests_need_the_token(ports: Ports, headers: dict[str, str], message: str) -> None:
    status, _, body = _get(f"{ports.url}/api/samples", headers)
    answer = json.loads(body)
    assert status == 401 and answer["code"] == "UNAUTHENTICATED" and message in answer["message"]


def test_samples_are_those_of_the_served_models(ports: Ports) -> None:
    status, _, body = _get(f"{ports.url}/api/samples", AUTH)
    assert status == 200
    listed = {s["name"]: s["model"] for s in json.loads(body)}
    assert listed["nuclei-stained"] == "nuclei-unet2d" and "fetalhead" not in listed
    assert set(listed.values()) <= set(MODELS)


def test_a_sample_comes_as_the_reader_gives_it(ports: Ports) -> None:
    meta, array = _image(_get(f"{ports.url}/api/samples/hippocampus-007", AUTH))
    volume = read_volume(DATA / "hippocampus-007.nii.gz")
    np.testing.assert_array_equal(array, volume.array)
    assert meta["spacing"] == list(volume.spacing or ())
    assert np.allclose(np.reshape(meta["affine"], (4, 4)), volume.affine)
    assert (meta["model"], meta["spatial_dims"], meta["dicom"]) == ("hippocampus-unet3d", 3, False)
    status, _, body = _get(f"{ports.url}/api/samples/no-such-sample", AUTH)
    assert status == 404 and "no sample named 'no-such-sample'" in json.loads(body)["message"]


# ---------------------------------------------------------------------------------- uploads


def _series(tmp_path: Path) -> Any:
    return dicom_maker.write_series(tmp_path / "series", dicom_maker.hippocampus_stored())


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for f in sorted(folder.iterdir()):
            archive.write(f, f"study/series/{f.name}")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["nifti", "png", "dicom-zip", "dicom-files"])
def test_an_upload_is_decoded_by_the_servers_readers(
    ports: Ports, tmp_path: Path, kind: str
) -> None:
    if kind == "nifti":
        original = tmp_path / "scan.nii.gz"
        data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
        nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1.0])), original)
        files = [("scan.nii.gz", original.read_bytes())]
    elif kind == "png":
        original = tmp_path / "photo.png"
        Image.fromarray(np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)).save(original)
        files = [("photo.png", original.read_bytes())]
    else:
        original = _series(tmp_path).folder
        if kind == "dicom-zip":
            files = [("series.zip", _zip(original))]
        else:
            files = [(f"series/{f.name}", f.read_bytes()) for f in sorted(original.iterdir())]
    meta, array = _image(_decode(ports, files))
    expected = read_volume(original)
    np.testing.assert_array_equal(array, expected.array)
    assert meta["dicom"] == kind.startswith("dicom")
    if expected.spacing is not None:
        assert np.allclose(meta["spacing"], expected.spacing)
        assert np.allclose(np.reshape(meta["affine"], (4, 4)), expected.affine)
    assert meta["spatial_dims"] == (2 if kind == "png" else 3)


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([("broken.nii.gz", b"\x00" * 400)], "broken.nii.gz"),
        ([("notes.txt", b"hello")], "unknown image format"),
        ([("bad.zip", b"PK not really")], "the uploaded zip cannot be read"),
        ([], "no file uploaded"),
    ],
)
def test_a_bad_upload_is_refused_with_a_readable_message(
    ports: Ports, files: list[tuple[str, bytes]], words: str
) -> None:
    status, _, body = _decode(ports, files)
    answer = json.loads(body)
    assert status == 400 and answer["code"] == "INVALID_ARGUMENT", answer
    assert words in answer["message"] and "medrefine-upload-" not in answer["message"]


def test_an_upload_must_be_multipart(ports: Ports) -> None:
    status, _, body = _get(f"{ports.url}/api/decode", AUTH, data=b"raw", method="POST")
    assert status == 400 and "multipart/form-data" in json.loads(body)["message"]


# ---------------------------------------------------------------------------------- masks


def _mask_file(ports: Ports, meta: dict[str, Any], mask: np.ndarray, fmt: str) -> tuple[int, bytes]:
    headers = {**AUTH, "X-Medrefine-Mask": json.dumps(meta)}
    url = f"{ports.url}/api/mask?format={fmt}"
    status, _, body = _get(url, headers, data=mask.astype(np.uint8).tobytes(), method="POST")
    return status, body


def test_a_mask_of_a_dicom_series_downloads_as_dicom_seg_and_nifti(
    ports: Ports, tmp_path: Path
) -> None:
    series = _series(tmp_path)
    image, _ = _image(_decode(ports, [("series.zip", _zip(series.folder))]))
    mask = mr.Session(mr.load_model("hippocampus-unet3d")).set_image(read_volume(series.folder))
    names = ["background", "anterior", "posterior"]
    meta = {**image, "mask_shape": list(mask.shape), "class_names": names}
    status, body = _mask_file(ports, meta, mask, "dicom-seg")
    assert status == 200, body
    (tmp_path / "seg.dcm").write_bytes(body)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert [d.SegmentLabel for d in seg.SegmentSequence] == names[1:]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.uids), combine_segments=True
    )
    np.testing.assert_array_equal(pixels, mask)
    status, body = _mask_file(ports, meta, mask, "nifti")
    assert status == 200, body
    (tmp_path / "mask.nii.gz").write_bytes(body)
    nifti = nib.load(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), mask)
    np.testing.assert_allclose(nifti.affine, series.affine, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "fmt", "words"),
    [
        ({}, "dicom-seg", "DICOM-SEG needs the DICOM series"),
        ({"mask_shape": [256, 321]}, "nifti", "needs more"),
        ({}, "png", "unknown mask format"),
        ({"mask_shape": "x"}, "nifti", "malformed"),
    ],
)
def test_a_bad_mask_request_is_refused(
    ports: Ports, change: dict[str, Any], fmt: str, words: str
) -> None:
    image, _ = _image(_get(f"{ports.url}/api/samples/nuclei-stained", AUTH))
    mask = np.zeros((256, 320), np.uint8)
    meta = {**image, "mask_shape": [256, 320], "class_names": ["background", "nucleus"], **change}
    status, body = _mask_file(ports, meta, mask, fmt)
    answer = json.loads(body)
    assert status == 400 and answer["code"] == "INVALID_ARGUMENT" and words in answer["message"]


# ---------------------------------------------------------------------------------- gRPC-Web


def _grpc_web(url: str) -> ConnectClientSync:
    return ConnectClientSync(
        url, protocol=ProtocolType.GRPC_WEB, codec=google_protobuf_binary_codec()
    )


def test_grpc_web_calls_reach_the_grpc_servers_sessions(ports: Ports) -> None:
    """A session opened over gRPC is refined over gRPC-Web (with progress events), and both
    ports then see the same mask and history."""
    image = np.ascontiguousarray(mr.load_sample("nuclei-stained").image[:, 40:136, 60:172])
    with RemoteSession(ports.grpc_target, "nuclei-unet2d", token=TOKEN) as remote:
        opened = remote.set_image(image)
        sid = remote.session_id
        mark = convert.mark_to_proto(mr.Scribble(1, [(20, 20), (30, 45)], 2))
        request = pb.RefineRequest(
            session_id=sid, marks=[mark], options=pb.RefineOptions(progress=True), known_version=1
        )
        with _grpc_web(ports.url) as web:
            events = list(
                web.execute_server_stream(request=request, method=METHODS["Refine"], headers=AUTH)
            )
            label = web.execute_unary(
                request=pb.AddClassRequest(session_id=sid, name="lesion"),
                method=METHODS["AddClass"],
                headers=AUTH,
            ).label
        progress = [e for e in events if e.HasField("progress")]
        result = events[-1].result
        assert len(progress) == result.summary.iterations > 0
        refined = convert.apply_delta(opened, result.mask.delta, opened.shape)
        assert (refined != opened).any()
        np.testing.assert_array_equal(remote.get_mask(), refined)
        assert label == 2 and [i.kind for i in remote.history] == ["refine", "add_class"]


@pytest.mark.parametrize(
    ("method", "request_", "headers", "code", "words"),
    [
        ("ListModels", pb.ListModelsRequest(), {}, Code.UNAUTHENTICATED, "missing authorization"),
        ("GetHistory", pb.SessionRequest(session_id="nope"), AUTH, Code.NOT_FOUND, "nope"),
        (
            "AddClass",
            pb.AddClassRequest(session_id="x", name="y" * 200),
            AUTH,
            Code.INVALID_ARGUMENT,
            "at most 128",
        ),
    ],
)
def test_grpc_web_errors_carry_the_grpc_status_and_message(
    ports: Ports, method: str, request_: Any, headers: dict[str, str], code: Code, words: str
) -> None:
    with _grpc_web(ports.url) as web, pytest.raises(ConnectError) as caught:
        web.execute_unary(request=request_, method=METHODS[method], headers=headers)
    assert caught.value.code == code and words in caught.value.message


def test_a_method_the_servicer_lacks_answers_unimplemented_over_grpc_web() -> None:
    """The generated base class (what a servicer without a newer RPC falls back to) sets
    UNIMPLEMENTED; the web port answers that, not an internal error."""
    app = RefinerWSGI(pb_grpc.RefinerServicer(), None)
    httpd = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with (
            _grpc_web(f"http://127.0.0.1:{httpd.server_port}") as web,
            pytest.raises(ConnectError) as caught,
        ):
            web.execute_unary(request=pb.SessionRequest(session_id="s"), method=METHODS["Undo"])
        assert caught.value.code == Code.UNIMPLEMENTED and "not implemented" in caught.value.message
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_chunked_request_is_refused_not_left_hanging(ports: Ports) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ports.web.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/medrefine.v1.Refiner/OpenSession",
            body=iter([b"\x00\x00\x00\x00\x00"]),
            headers={**AUTH, "Content-Type": "application/grpc-web+proto"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert response.status == 411 and b"Content-Length" in response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------- TLS, flags


def test_the_web_port_speaks_tls_with_the_grpc_ports_certificate() -> None:
    ca, ca_key = certs.make_ca()
    pem = certs.issue(ca, ca_key, "127.0.0.1", server=True)
    p = _start(ServerConfig(models=("nuclei-unet2d",), tls_cert=pem.cert, tls_key=pem.key))
    try:
        trusted = ssl.create_default_context(cadata=ca.cert.decode())
        status, _, body = _get(f"{p.url}/", context=trusted)
        assert status == 200 and b"viewer.js" in body
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(f"{p.url}/", context=ssl.create_default_context())
        with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
            _get(p.url.replace("https:", "http:") + "/")
    finally:
        p.web.stop()
        p.server.stop(grace=0)


def test_with_a_client_ca_the_web_port_requires_a_client_certificate(tmp_path: Path) -> None:
    ca, ca_key = certs.make_ca()
    pem = certs.issue(ca, ca_key, "127.0.0.1", server=True)
    client = certs.issue(ca, ca_key, "viewer", server=False)
    other_ca, other_key = certs.make_ca("another CA")
    stranger = certs.issue(other_ca, other_key, "stranger", server=False)
    config = ServerConfig(
        models=("nuclei-unet2d",), tls_cert=pem.cert, tls_key=pem.key, client_ca=ca.cert
    )
    p = _start(config)

    def context(cert: Any | None) -> ssl.SSLContext:
        made = ssl.create_default_context(cadata=ca.cert.decode())
        if cert is not None:
            (tmp_path / "c.pem").write_bytes(cert.cert)
            (tmp_path / "k.pem").write_bytes(cert.key)
            made.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        return made

    try:
        status, _, _ = _get(f"{p.url}/", context=context(client))
        assert status == 200
        for refused in (None, stranger):
            # TLS 1.3 may refuse before the request is sent or after: any of these
            refusals = (ssl.SSLError, ConnectionError, http.client.HTTPException)
            with pytest.raises((*refusals, urllib.error.URLError)):
                _get(f"{p.url}/", context=context(refused))
    finally:
        p.web.stop()
        p.server.stop(grace=0)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--web", "--web-port", "70000"], "--web-port must be in 0..65535"),
        (["--web-port-file", "x"], "--web-port-file needs --web"),
    ],
)
def test_bad_web_flags(capsys: pytest.CaptureFixture[str], flags: list[str], words: str) -> None:
    assert main(["serve", "--port", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
