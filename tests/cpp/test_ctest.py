"""Builds the C++ unit tests with the root CMakeLists.txt (no Python extension) and runs ctest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_cpp_unit_tests_pass(tmp_path: Path) -> None:
    cmake = shutil.which("cmake")
    ctest = shutil.which("ctest")
    assert cmake and ctest, "cmake and ctest must be on PATH (pip install cmake)"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    build = tmp_path / "build"
    _run(
        [
            cmake,
            "-S",
            str(ROOT),
            "-B",
            str(build),
            *generator,
            "-DMEDREFINE_BUILD_PYTHON=OFF",
            "-DMEDREFINE_BUILD_TESTS=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        ROOT,
    )
    _run([cmake, "--build", str(build)], ROOT)  # the tests compile with -Werror
    _run([ctest, "--test-dir", str(build), "--output-on-failure"], ROOT)
