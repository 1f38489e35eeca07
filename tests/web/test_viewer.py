"""The viewer in a real browser against a real ``medrefine serve --web``.

Debian's Chromium, driven by playwright-core (``drive.mjs``), opens a 2D and a 3D sample on a
server that requires a token (the page asks for it), draws a scribble with real mouse events,
refines, undoes, redoes, accepts (the server keeps a site per model) and downloads the mask.
The overlay's pixels read back from the canvas after each step must equal, pixel for pixel, the
masks an in-process ``mr.Session`` gives for the same image and the marks the server recorded
(read over the gRPC port), and the accept the version an in-process site gives; the downloaded
NIfTI must hold the refined mask. A screenshot after the 2D refine is kept beside the results,
and written to docs/images/viewer.png when ``MEDREFINE_UPDATE_SCREENSHOT=1``.

Without Chromium, node or web/node_modules the test skips, unless ``CI=true`` (or
``MEDREFINE_REQUIRE_BROWSER=1``) turns that into a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import medrefine as mr
from medrefine.client import connect, stub
from medrefine.io import read_volume
from medrefine.samples import DATA, SAMPLES
from medrefine.serve import convert
from medrefine.v1 import refine_pb2 as pb

pytestmark = pytest.mark.slow  # a browser and a live server

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DRIVER = Path(__file__).with_name("drive.mjs")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "images" / "viewer.png"
TOKEN = "viewer-test-token"
MODELS = ("nuclei-unet2d", "hippocampus-unet3d")


def _unavailable(reason: str) -> None:
    required = os.environ.get("CI") == "true" or os.environ.get("MEDREFINE_REQUIRE_BROWSER") == "1"
    if required:
        pytest.fail(f"{reason}; CI=true (or MEDREFINE_REQUIRE_BROWSER=1) requires the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        _unavailable("no node on PATH")
    assert found is not None
    if not CHROMIUM.exists():
        _unavailable(f"no {CHROMIUM} (Debian's chromium package; see .ci/run)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        _unavailable("no web/node_modules/playwright-core (run `npm ci --prefix web`)")
    return found


@dataclass
class Live:
    grpc_target: str
    url: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A ``medrefine serve --web`` on free ports, requiring TOKEN; SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("server")
    token = folder / "token"
    token.write_text(TOKEN)
    ports = {"grpc": folder / "port", "web": folder / "web-port"}
    args = ["serve", "--port", "0", "--port-file", str(ports["grpc"]), "--web"]
    args += ["--web-port", "0", "--web-port-file", str(ports["web"]), "--token-file", str(token)]
    args += ["--models", ",".join(MODELS), "--site-dir", str(folder / "sites")]
    command = [sys.executable, "-c", "import sys; from medrefine.cli import main; sys.exit(main())"]
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not ports["web"].exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"medrefine serve did not start:\n{(folder / 'server.log').read_text()}"
                )
            time.sleep(0.2)
        yield Live(
            f"127.0.0.1:{int(ports['grpc'].read_text())}",
            f"http://127.0.0.1:{int(ports['web'].read_text())}/",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, (folder / "server.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


@dataclass
class Case:
    """A sample as the server's reader gives it, its network mask in process, and the plan."""

    sample: str
    session: mr.Session
    network: np.ndarray
    label: int
    points: list[tuple[int, ...]]  # the scribble's corners, spatial coordinates
    views: list[dict[str, int]]  # planes to read back: axis (-1 in 2D) and index


def _open(sample: str) -> tuple[mr.Session, np.ndarray]:
    """The in-process session on the sample file, with the geometry the viewer uploads."""
    spec = SAMPLES[sample]
    volume = read_volume(DATA / f"{sample}{spec.suffix}")
    model = mr.load_model(spec.model)
    spatial = volume.array.ndim if volume.array.ndim == model.spatial_dims else model.spatial_dims
    spacing = volume.spacing if volume.spacing and len(volume.spacing) == spatial else None
    image = mr.Volume(np.ascontiguousarray(volume.array), spacing=spacing, affine=volume.affine)
    session = mr.Session(model, site=mr.Site(model))  # as the server's site, empty at first
    return session, session.set_image(image)


def _case(sample: str) -> Case:
    """A scribble along a row of the largest region (clear of the image's edge, if one is) that
    the network misses of the class it misses most (in 3D on the axial plane where that class is
    missed most)."""
    session, network = _open(sample)
    truth = mr.load_sample(sample).label
    missed = (truth != network) & (truth > 0)
    label = int(np.bincount(truth[missed]).argmax())
    wanted = missed & (truth == label)
    plane = int(wanted.sum(axis=(1, 2)).argmax()) if network.ndim == 3 else None
    region = wanted[plane] if plane is not None else wanted
    parts, _ = ndimage.label(region)
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    if (np.delete(sizes, edge) > 0).any():
        sizes[edge] = 0  # a region inside the image, where a person would draw
    largest = parts == int(sizes.argmax())
    row = int(largest.sum(axis=1).argmax())
    cols = np.flatnonzero(largest[row])
    corners = [(row, int(c)) for c in np.linspace(cols.min(), cols.max(), 3).round().astype(int)]
    prefix = () if plane is None else (plane,)
    points = [(*prefix, *p) for p in corners]
    views = [{"axis": -1, "index": 0}]
    if plane is not None:
        views = [{"axis": 0, "index": plane}, {"axis": 1, "index": row}]
    return Case(sample, session, network, label, points, views)


def _drive(node: str, live: Live, case: Case, out: Path, upload: bool) -> dict[str, Any]:
    """Run drive.mjs on ``case``: open the sample by name, or (``upload``) its file through the
    file input; a screenshot after the refine goes to ``out/viewer.png``."""
    plan = {
        "web": str(WEB),
        "chromium": str(CHROMIUM),
        "url": live.url,
        "out": str(out),
        "token": TOKEN,
        "run": {
            "sample": case.sample,
            "file": str(DATA / f"{case.sample}{SAMPLES[case.sample].suffix}") if upload else None,
            "label": case.label,
            "radius": 1,
            "points": [p[-2:] for p in case.points],
            "views": case.views,
            "screenshot": "viewer.png",
        },
    }
    (out / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(
        [node, str(DRIVER), str(out / "plan.json")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def _labels(read: dict[str, Any]) -> np.ndarray:
    """The class of every overlay pixel: transparent = 0, else the legend entry of its colour."""
    rgba = np.frombuffer(base64.b64decode(read["rgba"]), np.uint8)
    rgba = rgba.reshape(read["height"], read["width"], 4)
    out = np.zeros(rgba.shape[:2], np.int64) - 1
    out[rgba[..., 3] == 0] = 0
    for label, rgb in enumerate(read["legend"]):
        if label > 0:
            colour = np.array([int(v) for v in rgb.split(",")], np.uint8)
            out[(rgba[..., 3] == 255) & (rgba[..., :3] == colour).all(axis=-1)] = label
    assert (out >= 0).all(), "overlay pixels of a colour no class has (or half transparent)"
    return out


def _plane(mask: np.ndarray, view: dict[str, int]) -> np.ndarray:
    return mask if view["axis"] < 0 else np.take(mask, view["index"], axis=view["axis"])


def _same(reads: list[dict[str, Any]], mask: np.ndarray, step: str) -> None:
    for read in reads:
        shown, want = _labels(read), _plane(mask, read)
        assert shown.shape == want.shape, f"{step}: plane {read['axis']}/{read['index']}"
        wrong = int((shown != want).sum())
        assert wrong == 0, f"{step}: {wrong} overlay pixels differ on plane {read['axis']}"


def _recorded_marks(live: Live, session_id: str, ndim: int) -> list[mr.Mark]:
    """The marks of the session's history, as the server recorded them (over gRPC)."""
    channel = connect(live.grpc_target)
    try:
        request = pb.SessionRequest(session_id=session_id)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        history = stub(channel).GetHistory(request, metadata=metadata, timeout=30)
    finally:
        channel.close()
    return [convert.mark_from_proto(m, ndim, 1 << 30) for e in history.entries for m in e.marks]


@pytest.mark.parametrize(
    ("sample", "upload"), [("nuclei-stained", False), ("hippocampus-007", True)]
)
def test_a_scribble_drawn_in_the_browser_refines_as_in_process(
    node: str, live: Live, tmp_path: Path, sample: str, upload: bool
) -> None:
    """The 2D sample is chosen from the sample list, the 3D one uploaded as a NIfTI file."""
    case = _case(sample)
    result = _drive(node, live, case, tmp_path, upload)
    assert result["errors"] == []
    assert result["refused"].startswith("FAILED_PRECONDITION: "), result["refused"]

    marks = _recorded_marks(live, result["session"], case.network.ndim)
    assert len(marks) == 1 and isinstance(marks[0], mr.Scribble), marks
    scribble = marks[0]
    assert (scribble.label, scribble.radius) == (case.label, 1)
    drawn = [tuple(int(c) for c in p) for p in scribble.points]
    assert drawn[0] == case.points[0] and drawn[-1] == case.points[-1], drawn
    case.session.add(scribble)
    refined = case.session.refine().mask
    assert (refined != case.network).any(), "the scribble must change the mask"

    _same(result["opened"], case.network, "opened")
    _same(result["refined"], refined, "refined")
    _same(result["undone"], case.network, "undone")
    _same(result["redone"], refined, "redone")
    source, why = case.session.head_source
    assert result["head"] == {"source": source, "text": f"started from the network's head: {why}"}
    accepted = case.session.accept()
    assert accepted.validation is not None
    assert result["accepted"]["version"] == str(accepted.version)
    assert result["accepted"]["inUse"] == str(int(accepted.in_use))
    assert result["accepted"]["text"].startswith(f"accepted as site v{accepted.version} (1 images)")
    assert result["accepted"]["text"].endswith(accepted.validation.reason)
    assert result["progress"] == 1
    assert "ms on the server" in result["latency"]

    saved = nib.load(result["download"])
    assert np.array_equal(np.asarray(saved.dataobj), refined)
    if case.network.ndim == 3:
        assert np.allclose(saved.affine, mr.load_sample(sample).affine)

    picture = tmp_path / "viewer.png"
    assert picture.stat().st_size > 10_000
    if os.environ.get("MEDREFINE_UPDATE_SCREENSHOT") == "1" and case.network.ndim == 2:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(picture, SCREENSHOT)
