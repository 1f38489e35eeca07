"""A real medrefine server on a free loopback port, and small real images to send it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import medrefine as mr
from medrefine.serve import Server, ServerConfig, create_server

from .pg import pg_url  # noqa: F401  (the fixture, for every test here)

MODELS = ("nuclei-unet2d", "hippocampus-unet3d")


@dataclass
class Served:
    server: Server
    target: str
    journal_dir: Path | None


def start(config: ServerConfig, port: int = 0) -> Served:
    server, port = create_server(f"127.0.0.1:{port}", config)
    server.start()
    assert server.registry.wait_loaded(300), "the models did not load"
    return Served(server, f"127.0.0.1:{port}", config.journal_dir)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the suite: both test models, a journal, default bounds."""
    journal = tmp_path_factory.mktemp("journal")
    s = start(ServerConfig(models=MODELS, journal_dir=journal, workers=2))
    yield s
    s.server.stop(grace=1.0)


@pytest.fixture(scope="session")
def nuclei() -> np.ndarray:
    """A (3, 96, 112) uint8 crop of the stained-nuclei sample, C-contiguous."""
    image = mr.load_sample("nuclei-stained").image
    return np.ascontiguousarray(image[:, 40:136, 60:172])


@pytest.fixture(scope="session")
def hippo() -> np.ndarray:
    """The (34, 47, 40) float32 hippocampus-007 MRI crop, C-contiguous."""
    return np.ascontiguousarray(mr.load_sample("hippocampus-007").image)


def marks_2d() -> list[mr.Mark]:
    """One mark of each kind on a 96 x 112 image, (y, x)."""
    return [
        mr.Scribble(1, [(20, 20), (30, 45), (36, 60)], 2),
        mr.Click(0, (80, 90), 3),
        mr.Box(1, (40, 40), (70, 80)),
        mr.Paint(0, np.array([[5, 5], [5, 6], [6, 5]])),
    ]


def marks_3d() -> list[mr.Mark]:
    """Marks of both foreground classes on the 34 x 47 x 40 volume, (z, y, x)."""
    return [
        mr.Scribble(1, [(17, 20, 15), (17, 25, 20)], 1),
        mr.Click(2, (18, 28, 22), 2),
        mr.Click(0, (5, 5, 5), 2),
    ]
