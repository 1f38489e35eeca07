"""Regenerate medrefine's Python gRPC code from the proto files.

Usage: ``python3 proto/generate.py [OUT_DIR]`` (default: ``python/``, where the code is checked in).
The generated modules land in ``OUT_DIR/medrefine/v1/``. Needs the exact ``grpcio-tools`` pinned
in pyproject's ``dev`` extra: another version writes different files, which the test that
regenerates the code reports as a difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTOS = ("medrefine/v1/refine.proto",)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every proto; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            proto,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    return sorted(p for p in (out_dir / "medrefine" / "v1").iterdir() if p.name != "__init__.py")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT.parent / "python"
    for path in generate(out):
        print(path)
