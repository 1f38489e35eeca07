"""The stub python/medrefine/kernels/_native.pyi tells the truth about the compiled module."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medrefine.kernels import _native

STUB = Path(__file__).resolve().parents[2] / "python" / "medrefine" / "kernels" / "_native.pyi"


def _stub_definitions() -> dict[str, ast.AST]:
    tree = ast.parse(STUB.read_text())
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return {name: node for name, node in names.items() if not name.startswith("_")}


def test_stub_and_module_define_the_same_public_names() -> None:
    in_module = {name for name in dir(_native) if not name.startswith("_")}
    assert set(_stub_definitions()) == in_module


def test_stub_signatures_match_the_bindings() -> None:
    for name, node in _stub_definitions().items():
        obj = getattr(_native, name)
        if not isinstance(node, ast.FunctionDef):
            assert not callable(obj), name
            continue
        stub_args = [a.arg for a in node.args.args]
        # pybind11 writes one "name(arg: type, ...) -> type" line per overload.
        overloads = re.findall(rf"^(?:\d+\. )?{name}\((.*)\) ->", obj.__doc__ or "", re.M)
        assert overloads, f"no signature in the docstring of {name}"
        for signature in overloads:
            bound = [part.split(":")[0].strip() for part in signature.split(", ")]
            assert bound == stub_args, (name, bound, stub_args)
    assert isinstance(_native.ABI_VERSION, int)
    assert inspect.isbuiltin(_native.region_grow)


@pytest.mark.slow
def test_mypy_stubtest_accepts_the_stub() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "medrefine.kernels._native"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
