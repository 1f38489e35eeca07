"""Every C++ file is formatted with the repository's .clang-format."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpp_sources_are_clang_formatted() -> None:
    clang_format = shutil.which("clang-format")
    assert clang_format, "clang-format must be on PATH (pip install clang-format)"
    sources = sorted(
        p
        for folder in ("cpp", "tests/cpp")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in {".hpp", ".cpp", ".h", ".cc"}
    )
    assert any(p.name == "module.cpp" for p in sources)
    result = subprocess.run(
        [clang_format, "--dry-run", "-Werror", *map(str, sources)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
