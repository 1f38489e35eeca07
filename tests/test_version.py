"""The version is written once, ``medrefine.__version__``: the wheel's metadata, the C++ client's
CMake project and the DICOM-SEG writer read it; no other source file spells it out. The lab, a
distribution of its own, states the same version in ``lab/pyproject.toml`` (checked here)."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import medrefine

ROOT = Path(__file__).resolve().parents[1]


def _spelled_out(text: str, value: str) -> list[str]:
    """Lines of ``text`` that hold ``value`` as a quoted string or a CMake ``VERSION`` word."""
    pattern = re.compile(rf"""(["']){re.escape(value)}\1|VERSION\s+{re.escape(value)}\b""")
    return [line for line in text.splitlines() if pattern.search(line)]


def test_only_the_package_spells_out_its_version() -> None:
    value = medrefine.__version__
    init = ROOT / "python" / "medrefine" / "__init__.py"
    assert _spelled_out(init.read_text(), value)
    found = []
    for folder, suffixes in (("python", {".py"}), ("cpp", {".txt", ".cmake", ".hpp", ".cpp"})):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in suffixes and path != init and path.is_file():
                found += [
                    f"{path.relative_to(ROOT)}: {x}" for x in _spelled_out(path.read_text(), value)
                ]
    assert not found, found


def test_the_check_sees_a_spelled_out_version() -> None:
    assert _spelled_out('project(x VERSION 1.2.3 LANGUAGES CXX)\nv = "1.2.3"', "1.2.3") == [
        "project(x VERSION 1.2.3 LANGUAGES CXX)",
        'v = "1.2.3"',
    ]
    assert _spelled_out('v = "1.2.30"', "1.2.3") == []


def test_readers_agree() -> None:
    assert version("medrefine") == medrefine.__version__  # pyproject: regex on __init__.py
    # The lab (lab/pyproject.toml) is released with medrefine, at its version.
    assert version("medrefine-lab") == medrefine.__version__
    from medrefine.io import dicom_seg

    assert dicom_seg._ALGORITHM[0].AlgorithmVersion == medrefine.__version__
    cmake = (ROOT / "cpp" / "client" / "CMakeLists.txt").read_text()
    assert (
        "python/medrefine/__init__.py" in cmake and "project(medrefine_client VERSION ${" in cmake
    )
