"""Third-party networks: torchvision made importable beside a CPU-only PyTorch (see
:mod:`medrefine_lab.benchmarks.torchvision_ops`) before any test here imports it; each network built
and briefly fitted once per test run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn

from medrefine_lab.benchmarks.architectures import Architecture, missing
from medrefine_lab.benchmarks.conformance import fitted, scene
from medrefine_lab.benchmarks.torchvision_ops import ensure_importable

ensure_importable()


@pytest.fixture(scope="session")
def network() -> Callable[[Architecture], nn.Module]:
    """``network(arch)``: the architecture's network fitted on its scene (built once)."""
    built: dict[str, nn.Module] = {}

    def get(arch: Architecture) -> nn.Module:
        why = missing(arch)
        if why is not None:  # the dev extra installs every package: a missing one fails
            pytest.fail(f"{arch.name}: {why}; install the dev extra (README)")
        if arch.name not in built:
            built[arch.name] = fitted(arch, scene(arch))
        return built[arch.name]

    return get


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance-onnx")
