"""Shared fixtures: small networks trained on synthetic scenes (weights checked in).

Scenes: noisy background (class 0) with bright disks (class 1) and dark disks (class 2) in 2D, or
bright balls (class 1) in 3D. The networks learn them well enough that marks are meaningful; a
class-2 mark in a 3D scene is a class the network never predicts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

from medrefine.models.split import SplitModel
from medrefine.models.unet import UNet, UNetConfig
from splits import split


def scene(
    shape: tuple[int, ...], rng: np.random.Generator, n: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 ``shape`` and labels uint8: disks/balls of +1 (class 1) and -1 (class 2)."""
    grid = np.indices(shape)
    label = np.zeros(shape, np.uint8)
    for i in range(n):
        centre = [rng.uniform(4, s - 4) for s in shape]
        r = rng.uniform(2.5, 5)
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= r * r
        label[inside] = 1 + (i % 2 if len(shape) == 2 else 0)
    image = np.choose(label, [0.0, 1.0, -1.0]).astype(np.float32)
    image += rng.normal(0, 0.25, shape).astype(np.float32)
    return image, label


def _config(dims: int, classes: int) -> UNetConfig:
    return UNetConfig(dims, 1, classes, base_channels=8, depth=2, head_hidden=16)


def _train(dims: int, classes: int, shape: tuple[int, ...], steps: int) -> UNet:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = UNet(_config(dims, classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        pairs = [scene(shape, rng) for _ in range(4)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


# (dims, classes, training scene shape, steps) of the two fixture networks.
RECIPES = {"unet2d": (2, 3, (32, 32), 120), "unet3d": (3, 3, (16, 16, 16), 60)}
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _load(name: str) -> UNet:
    """The fixture network ``name`` from its checked-in weights (``python tests/conftest.py``
    retrains and rewrites them; training is deterministic on the CPU)."""
    dims, classes, _, _ = RECIPES[name]
    net = UNet(_config(dims, classes))
    net.load_state_dict(torch.load(FIXTURES / f"{name}.pt", weights_only=True))
    return net.eval()


@pytest.fixture(scope="session")
def net2d() -> UNet:
    """2D U-Net, 3 classes, trained on 32x32 scenes."""
    return _load("unet2d")


@pytest.fixture(scope="session")
def net3d() -> UNet:
    """3D U-Net, 3 output classes of which it only ever saw 0 and 1, on 16^3 scenes."""
    return _load("unet3d")


@pytest.fixture()
def model2d(net2d: UNet) -> SplitModel:
    return split(net2d)


@pytest.fixture()
def model3d(net3d: UNet) -> SplitModel:
    return split(net3d)


@pytest.fixture()
def case2d() -> tuple[np.ndarray, np.ndarray]:
    """A 40x48 test scene (another size than training, not a multiple of the stride)."""
    return scene((40, 46), np.random.default_rng(7), n=6)


@pytest.fixture()
def case3d() -> tuple[np.ndarray, np.ndarray]:
    return scene((18, 20, 17), np.random.default_rng(8), n=3)


# Property tests draw the same examples on every run, so CI results do not depend on luck.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")


if __name__ == "__main__":  # retrain the fixture networks and rewrite their weights
    FIXTURES.mkdir(exist_ok=True)
    for fixture, recipe in RECIPES.items():
        torch.save(_train(*recipe).state_dict(), FIXTURES / f"{fixture}.pt")
