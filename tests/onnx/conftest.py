"""Zoo models exported to ONNX once per test run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medrefine.models.zoo import load_network
from medrefine.onnx.export import ExportResult, Part, export_zoo


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ExportResult]:
    """``zoo_onnx(name, part="network")``: the exported, parity-checked file (made on first use),
    traced at the smallest valid size to keep the tests fast (any size runs: axes are dynamic)."""
    folder: Path = tmp_path_factory.mktemp("zoo-onnx")
    done: dict[tuple[str, Part], ExportResult] = {}

    def get(name: str, part: Part = "network") -> ExportResult:
        if (name, part) not in done:
            size = 2 * load_network(name).config.stride
            done[name, part] = export_zoo(name, folder, part, size=size)
        return done[name, part]

    return get
