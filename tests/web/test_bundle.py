"""The checked-in viewer is exactly what its sources build: ``npm ci`` of web/package-lock.json in
a fresh copy of web/, then ``web/build.py`` (protoc-gen-es, tsc, esbuild); every generated and
bundled file must equal the checked-in one (as tests/serve/test_codegen.py does for the gRPC
stubs). Without npm the test skips, unless ``CI=true`` (or ``MEDREFINE_REQUIRE_BROWSER=1``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # npm ci fetches the locked packages

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUNDLE = ROOT / "python" / "medrefine" / "viewer"
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "build.py")


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def test_the_checked_in_bundle_is_what_the_sources_build(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true" or os.environ.get("MEDREFINE_REQUIRE_BROWSER") == "1":
            pytest.fail("no npm on PATH; CI=true requires the viewer's rebuild check")
        pytest.skip("no npm on PATH")
    web = tmp_path / "web"
    web.mkdir()
    for name in SOURCES:
        shutil.copyfile(WEB / name, web / name)
    shutil.copytree(WEB / "src", web / "src", ignore=shutil.ignore_patterns("gen"))
    installed = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(web)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    out = tmp_path / "bundle"
    command = [sys.executable, str(web / "build.py"), "--web", str(web), "--out", str(out)]
    built = subprocess.run(
        [*command, "--proto", str(ROOT / "proto")], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stdout + built.stderr

    for fresh, checked_in in ((web / "src" / "gen", WEB / "src" / "gen"), (out, BUNDLE)):
        want, have = _files(fresh), _files(checked_in)
        assert sorted(want) == sorted(have), f"{checked_in}: files differ from a fresh build"
        stale = [name for name in want if want[name] != have[name]]
        assert not stale, f"{checked_in}: {stale} differ from a fresh build: run web/build.py"
