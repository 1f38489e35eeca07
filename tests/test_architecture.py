"""The package's layers (docs/architecture.md): each imports only the layers below it, the
engine's subpackages only those before them, and no module imports itself through others.

An import counts wherever it is written (at module level or deferred inside a function); only
imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "medrefine"

#: The package's parts, lowest first: a part may import its own layer and those before it.
#: ``medrefine`` is the package's ``__init__`` (the public names, loaded lazily).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "extras", "pg", "sqlite"),
    ("types", "packed", "records"),
    ("kernels",),
    ("backends",),
    ("io",),
    ("data",),
    ("samples",),
    # A network in either form: PyTorch modules split and checked, ONNX graphs cut and exported.
    ("models", "onnx"),
    ("engine",),
    ("site",),
    ("medrefine", "session_like"),
    ("v1",),
    ("viz",),
    ("viewer",),
    ("serve",),
    ("client",),
    ("remote_site",),
    ("segment", "export_cli"),
    ("cli",),
]

#: The engine's subpackages in order: each imports only ``config`` and those before it.
ENGINE = ["config", "head", "refine", "gate", "budget", "session"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``medrefine.engine.session.session``); the
    generated stubs in ``v1`` included, compiled extensions by their ``.pyi``."""
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found |= {_module_name(p): p for p in PACKAGE.rglob("*.pyi") if _module_name(p) not in found}
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The package module that importing ``name`` runs: the longest known prefix."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> list[tuple[int, str]]:
    """The package modules ``path`` imports, with their lines, ``TYPE_CHECKING`` blocks left out.
    ``from a.b import c`` counts as ``a.b.c`` where that is a module, else as ``a.b``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [
                    f"{child.module}.{a.name}"
                    if f"{child.module}.{a.name}" in MODULES
                    else child.module
                    for a in child.names
                ]
            for name in names:
                module = _resolve(name) if name.split(".")[0] == "medrefine" else None
                if module is not None:
                    found.append((child.lineno, module))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _part(module: str) -> str:
    """``medrefine.engine.head.crop`` -> ``engine``; the package itself -> ``medrefine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "medrefine"


def _layer(module: str) -> int:
    part = _part(module)
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"{module}: its part {part!r} is in no layer of LAYERS; add it")


def _check_layers(module: str, deps: list[tuple[int, str]]) -> list[str]:
    own = _layer(module)
    return [f"line {line}: {dep}" for line, dep in deps if _layer(dep) > own]


def _engine_index(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "engine":
        return None
    return ENGINE.index(parts[2]) if parts[2] in ENGINE else None


def _check_engine(module: str, deps: list[tuple[int, str]]) -> list[str]:
    own = _engine_index(module)
    if own is None:
        return []
    bad = []
    for line, dep in deps:
        other = _engine_index(dep)
        if other is not None and other > own:
            bad.append(f"line {line}: {dep}")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {d for _, d in imports(p)} - {m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_lower_layers(module: str) -> None:
    deps = imports(MODULES[module])
    bad = _check_layers(module, deps)
    assert not bad, f"{module} (layer {LAYERS[_layer(module)]}) imports a higher layer: {bad}"
    bad = _check_engine(module, deps)
    assert not bad, f"{module} imports a later engine subpackage (order {ENGINE}): {bad}"


def _lab_imports(path: Path) -> list[str]:
    """The imports of the lab (``medrefine_lab``, the checkout's ``lab/``) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] == "medrefine_lab"]
    return found


def test_the_runtime_never_imports_the_lab() -> None:
    """The lab measures the runtime; ``medrefine`` loads it only by name, for the commands that
    need it (``cli``: ``demo``, ``bench``, ``models --evaluate``), through ``extras.require``."""
    bad = {m: found for m, p in MODULES.items() if (found := _lab_imports(p))}
    assert not bad, f"runtime modules that import the lab: {bad}"


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_checks_see_what_they_forbid(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from medrefine.serve.server import create_server\n"
        "def f():\n"
        "    from medrefine.serve.journal import Journal\n"
        "    import medrefine.engine.session.session\n"
    )
    deps = imports(probe)
    assert deps == [(5, "medrefine.serve.journal"), (6, "medrefine.engine.session.session")]
    assert _check_layers("medrefine.models.split", deps) == [
        "line 5: medrefine.serve.journal",
        "line 6: medrefine.engine.session.session",
    ]
    assert _check_layers("medrefine.cli", deps) == []
    assert _check_engine("medrefine.engine.head.crop", deps) == [
        "line 6: medrefine.engine.session.session"
    ]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    probe.write_text("def g():\n    from medrefine_lab.eval import Robot\n")
    assert _lab_imports(probe) == ["line 2: medrefine_lab.eval"]
    assert _cycles({"a": {"b"}, "b": set()}) == []
