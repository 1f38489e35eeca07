"""Build the viewer: protobuf-es code from the proto, a type check, and the esbuild bundle.

    npm ci --prefix web          # once: the exact packages of web/package-lock.json
    python3 web/build.py         # web/src/gen/ and python/medrefine/viewer/

The bundle is checked in (``pip install`` needs no node); ``tests/web/test_bundle.py`` runs this
in a fresh copy and fails if anything differs from what is checked in. The proto is compiled by
the protoc inside the pinned grpcio-tools, so the generated code does not depend on a system
protoc.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent
ROOT = WEB.parent
PROTO = "medrefine/v1/refine.proto"
#: Files copied as they are from web/src next to the bundle.
STATIC = ("index.html", "viewer.css")
#: Browsers whose syntax the bundle keeps to (all have fetch streams and DecompressionStream).
TARGETS = "chrome120,firefox120,safari17"


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def _bin(web: Path, name: str) -> str:
    path = web / "node_modules" / ".bin" / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `npm ci --prefix {web}` first")
    return str(path)


def generate(web: Path, proto_root: Path, out: Path) -> list[Path]:
    """protoc-gen-es's TypeScript for the proto, under ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={proto_root}",
            f"--plugin=protoc-gen-es={_bin(web, 'protoc-gen-es')}",
            f"--es_out={out}",
            "--es_opt=target=ts",
            str(proto_root / PROTO),
        ],
        web,
    )
    return sorted(p for p in out.rglob("*") if p.is_file())


def bundle(web: Path, out: Path) -> list[Path]:
    """The esbuild bundle ``viewer.js``, the page, its style sheet and the bundled packages'
    list under ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "meta.json"
    _run(
        [
            _bin(web, "esbuild"),
            "src/main.ts",
            "--bundle",
            "--format=esm",
            "--platform=browser",
            f"--target={TARGETS}",
            "--minify",
            "--legal-comments=none",
            "--charset=utf8",
            f"--metafile={meta}",
            f"--outfile={out / 'viewer.js'}",
        ],
        web,
    )
    inputs = json.loads(meta.read_text())["inputs"]
    meta.unlink()
    for name in STATIC:
        shutil.copyfile(web / "src" / name, out / name)
    (out / "THIRD_PARTY.txt").write_text(_third_party(web, inputs))
    return sorted(out / n for n in ("viewer.js", *STATIC, "THIRD_PARTY.txt"))


def _third_party(web: Path, inputs: dict[str, object]) -> str:
    """One line per npm package bundled into viewer.js: name, version, licence."""
    packages = set()
    for path in inputs:
        parts = Path(path).parts
        if "node_modules" in parts:
            at = parts.index("node_modules") + 1
            packages.add("/".join(parts[at : at + 2]) if parts[at].startswith("@") else parts[at])
    lines = ["Packages bundled into viewer.js (name, version, licence):", ""]
    for name in sorted(packages):
        info = json.loads((web / "node_modules" / name / "package.json").read_text())
        lines.append(f"{name} {info['version']} {info.get('license', 'UNKNOWN')}")
    return "\n".join(lines) + "\n"


def check(web: Path) -> None:
    """TypeScript's type check of the sources (no output)."""
    _run([_bin(web, "tsc"), "--noEmit", "-p", str(web)], web)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web", type=Path, default=WEB, help="the sources (with node_modules)")
    parser.add_argument("--proto", type=Path, default=ROOT / "proto", help="the proto root")
    parser.add_argument("--out", type=Path, default=ROOT / "python" / "medrefine" / "viewer")
    args = parser.parse_args(argv)
    web = args.web.resolve()
    generate(web, args.proto.resolve(), web / "src" / "gen")
    check(web)
    bundle(web, args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
