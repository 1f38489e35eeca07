"""The viewer's mask decoding (web/src/mask.ts, run in node) against the server's encoder.

``convert.encode_delta`` makes the deltas a server sends (every bit width a session can need, 2D
and 3D, whole masks and changed boxes, no change); the viewer's ``applyDelta`` must rebuild the
exact mask, and refuse a damaged delta with a message. Skips without node or web/node_modules,
unless ``CI=true`` (or ``MEDREFINE_REQUIRE_BROWSER=1``)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrefine.serve import convert

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def _tools() -> tuple[str, Path]:
    node = shutil.which("node")
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    if node is None or not esbuild.exists():
        reason = "no node on PATH" if node is None else "no web/node_modules (npm ci --prefix web)"
        if os.environ.get("CI") == "true" or os.environ.get("MEDREFINE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; CI=true requires the viewer's decoding test")
        pytest.skip(reason)
    assert node is not None
    return node, esbuild


def _b64(array: np.ndarray | bytes) -> str:
    raw = array if isinstance(array, bytes) else np.ascontiguousarray(array, np.uint8).tobytes()
    return base64.b64encode(raw).decode()


def _case(held: np.ndarray | None, new: np.ndarray, classes: int) -> dict[str, Any]:
    delta = convert.encode_delta(held, 0 if held is None else 5, new, classes)
    return {
        "held": None if held is None else _b64(held),
        "shape": list(new.shape),
        "base_version": str(delta.base_version),
        "start": list(delta.box_start),
        "stop": list(delta.box_stop),
        "bits": delta.bits_per_label,
        "data": _b64(delta.data),
    }


def _run(tmp_path: Path, cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    node, esbuild = _tools()
    module = tmp_path / "mask.mjs"
    bundled = subprocess.run(
        [str(esbuild), "src/mask.ts", "--bundle", "--format=esm", "--platform=node"]
        + [f"--outfile={module}"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bundled.returncode == 0, bundled.stderr
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = Path(__file__).with_name("apply_deltas.mjs")
    ran = subprocess.run(
        [node, str(script), str(module), str(tmp_path / "cases.json"), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    out: list[dict[str, str]] = json.loads((tmp_path / "out.json").read_text())
    return out


@pytest.mark.parametrize("classes", [2, 3, 4, 5, 16, 17, 256])
def test_the_viewer_rebuilds_every_mask_the_server_encodes(tmp_path: Path, classes: int) -> None:
    rng = np.random.default_rng(classes)
    cases, expected = [], []
    for shape in [(37, 53), (9, 17, 23)]:
        whole = rng.integers(0, classes, shape, dtype=np.int64).astype(np.uint8)
        changed = whole.copy()
        box = tuple(slice(s // 4, s // 4 + max(1, s // 3)) for s in shape)
        changed[box] = rng.integers(0, classes, changed[box].shape).astype(np.uint8)
        changed[box][(0,) * len(shape)] = (int(whole[box][(0,) * len(shape)]) + 1) % classes
        for held, new in ((None, whole), (whole, changed), (changed, changed)):
            cases.append(_case(held, new, classes))
            expected.append(new)
    for got, want in zip(_run(tmp_path, cases), expected, strict=True):
        assert "error" not in got, got
        mask = np.frombuffer(base64.b64decode(got["mask"]), np.uint8).reshape(want.shape)
        np.testing.assert_array_equal(mask, want)


def test_a_damaged_delta_is_refused_with_a_message(tmp_path: Path) -> None:
    mask = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) % 3
    good = _case(None, mask, 3)
    short = {**good, "data": _b64(zlib.compress(convert.pack(mask[:5], 2)))}
    outside = {**good, "stop": [13, 10]}
    wrong_bits = {**good, "bits": 3}
    got = _run(tmp_path, [short, outside, wrong_bits])
    assert all("error" in g for g in got), got
    assert "shorter than its box" in got[0]["error"]
    assert "outside the image" in got[1]["error"] and "is not 1, 2, 4, 8" in got[2]["error"]
