"""The layering DESIGN.md asks for: the core never imports the evaluation, serving or CLI code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "medrefine"
CORE = [
    "engine",
    "kernels",
    "models",
    "backends",
    "io",
    "onnx",
    "data",
    "site",
    "types.py",
    "errors.py",
]
OUTER = ("medrefine.eval", "medrefine.serve", "medrefine.benchmarks", "medrefine.cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names, with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _core_files() -> list[Path]:
    files: list[Path] = []
    for name in CORE:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_outer_layer(path: Path) -> None:
    bad = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if any(name == o or name.startswith(o + ".") for o in OUTER)
    ]
    assert not bad, f"{path.relative_to(PACKAGE)} imports an outer layer: {bad}"


def test_the_check_sees_an_outer_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from medrefine.eval.metrics import mean_dice\n")
    assert _imports(probe) == [
        (2, "medrefine.eval.metrics"),
        (2, "medrefine.eval.metrics.mean_dice"),
    ]
