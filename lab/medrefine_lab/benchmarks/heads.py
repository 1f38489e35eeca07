"""Benchmark ``medrefine bench heads``: refine latency of spatial heads over coarse features.

Two third-party-style networks, each split with :meth:`medrefine.SplitModel.from_module` at its
``head`` submodule (random weights, seeded), in 2D 512x512 and 3D 128^3:

- ``decoder``: strided convolutions down to 1/4 resolution, then the head: transposed
  convolution (x2) -> 3x3 convolution -> transposed convolution (x2) to full size;
- ``deeplab-like``: strided convolutions down to 1/8, then the head: 3x3 convolution, batch norm,
  1x1 classifier and bilinear upsampling by 8 (``align_corners=False``).

The image is a smooth random field with bright balls (the truth, class 1). Each of ``--refines``
interactions adds one short scribble inside a region the current mask labels wrongly (seeded:
the same sequence on every run) and refines. The first ``--full`` of those scribbles are then
replayed, in the same order, by a session whose head runs over the whole image at every step
(``loop.head_eval=full``): the table reports refine p50/p95 of both paths, their ratio on the
same refines, the runner's mode and the resident memory (``VmRSS``) after refines 10, 30 and 50.
The run takes place in a child process with glibc's ``MALLOC_MMAP_THRESHOLD_`` at 1 MiB, as
docs/deploy.md advises for servers (``--malloc default`` keeps glibc's adaptive threshold, under
which freed temporaries stay in the heap and the resident set grows with no live data).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.table import Table
from torch import nn

import medrefine as mr
from medrefine.engine.config import RefineConfig
from medrefine_lab.benchmarks.memory import MALLOC_ENV
from medrefine_lab.benchmarks.page import Page, add_page_option
from medrefine_lab.benchmarks.stats import percentile

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_UP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MODE = {2: "bilinear", 3: "trilinear"}
_RSS_AT = (10, 30, 50)


class _Net(nn.Module):
    """Strided encoder to ``1 / 2**levels`` resolution, then ``head``."""

    def __init__(self, dims: int, levels: int, width: int, head: nn.Module) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for i in range(levels):
            w = width if i == levels - 1 else width // 2
            layers += [_CONV[dims](c, w, 3, stride=2, padding=1), nn.ReLU()]
            c = w
        layers += [_CONV[dims](c, width, 3, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def decoder_net(dims: int, width: int = 32, classes: int = 2) -> nn.Module:
    """Features at 1/4; head: transposed conv -> conv -> transposed conv."""
    head = nn.Sequential(
        _UP[dims](width, width // 2, 2, stride=2),
        nn.ReLU(),
        _CONV[dims](width // 2, width // 2, 3, padding=1),
        nn.ReLU(),
        _UP[dims](width // 2, classes, 2, stride=2),
    )
    return _Net(dims, 2, width, head)


def deeplab_net(dims: int, width: int = 32, classes: int = 2) -> nn.Module:
    """Features at 1/8; head: 3x3 conv, batch norm, 1x1 classifier, bilinear upsampling x8."""
    head = nn.Sequential(
        _CONV[dims](width, width, 3, padding=1),
        _NORM[dims](width),
        nn.ReLU(),
        _CONV[dims](width, classes, 1),
        nn.Upsample(scale_factor=8, mode=_MODE[dims], align_corners=False),
    )
    return _Net(dims, 3, width, head)


def scene(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image ``shape`` (smooth noise plus bright balls) and its truth (int64, 1 in the
    balls)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = np.indices(shape).reshape(len(shape), -1).T
    truth = np.zeros(shape, dtype=np.int64)
    for _ in range(6):
        centre = rng.uniform(0.15, 0.85, len(shape)) * np.asarray(shape)
        radius = rng.uniform(0.06, 0.14) * min(shape)
        inside = ((grid - centre) ** 2).sum(1) <= radius**2
        truth.reshape(-1)[inside] = 1
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return np.asarray(truth + 0.5 * noise / noise.std(), dtype=np.float32), truth


def scribble_in_error(mask: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> mr.Scribble:
    """A short scribble of the true class through a pixel the ``mask`` gets wrong (along the
    last axis, on one slice in 3D), or through any pixel when none is wrong."""
    wrong = np.flatnonzero(mask.reshape(-1) != truth.reshape(-1))
    pool = wrong if wrong.size else np.arange(truth.size)
    start = np.asarray(np.unravel_index(int(rng.choice(pool)), truth.shape))
    label = int(truth[tuple(start)])
    end = start.copy()
    for _ in range(12):  # extend along x while the true class stays the same
        nxt = end.copy()
        nxt[-1] += 1
        if nxt[-1] >= truth.shape[-1] or truth[tuple(nxt)] != label:
            break
        end = nxt
    points = (tuple(int(v) for v in start), tuple(int(v) for v in end))
    return mr.Scribble(label, points, radius=1)


def rss_mib() -> float:
    """Resident memory of this process (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True)
class HeadFigures:
    """One case: refine latencies (ms) of both paths, the crop path's mode, resident memory
    (MiB) after some refines, and the lowest share of pixels on which the two paths' masks
    agree over the replayed refines."""

    case: str
    mode: str
    crop_ms: tuple[float, ...]
    full_ms: tuple[float, ...]
    rss: tuple[tuple[int, float], ...]
    agreement: float
    steps: tuple[int, ...] = ()


def split_net(net: nn.Module, dims: int, seed: int) -> mr.SplitModel:
    """``net`` split before its ``head`` (2 classes), with seeded non-trivial batch-norm
    statistics so that the head's checks see a network as trained ones are."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # non-trivial running statistics
            m.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    return mr.SplitModel.from_module(net.eval(), ["head"], num_classes=2, spatial_dims=dims)


def measure(
    name: str,
    net: nn.Module,
    dims: int,
    shape: tuple[int, ...],
    refines: int,
    full: int,
    config: RefineConfig,
) -> HeadFigures:
    """``refines`` scribble-and-refine interactions on the crop path, the first ``full`` of
    them replayed on the whole-image path."""
    model = split_net(net, dims, seed=0)
    image, truth = scene(shape)
    rng = np.random.default_rng(0)
    session = mr.Session(model, config)
    mask = session.set_image(image)
    marks: list[mr.Scribble] = []
    masks: list[np.ndarray] = []
    crop_ms, mode, rss, steps = [], "", [], []
    for i in range(1, refines + 1):
        marks.append(scribble_in_error(mask, truth, rng))
        session.add(marks[-1])
        t = time.perf_counter()
        result = session.refine()
        crop_ms.append(1000 * (time.perf_counter() - t))
        mask, mode = result.mask, result.mode
        steps.append(result.iterations)
        if i <= full:
            masks.append(mask)
        if i in _RSS_AT:
            gc.collect()
            rss.append((i, rss_mib()))
    del session
    gc.collect()
    naive = mr.Session(model, replace(config, loop=replace(config.loop, head_eval="full")))
    naive.set_image(image)
    full_ms, agree = [], []
    for mark, want in zip(marks[:full], masks, strict=True):
        naive.add(mark)
        t = time.perf_counter()
        got = naive.refine().mask
        full_ms.append(1000 * (time.perf_counter() - t))
        agree.append(float(np.mean(got == want)))
    del naive
    gc.collect()
    size = "x".join(map(str, shape))
    return HeadFigures(
        f"{name} {dims}D {size}",
        mode,
        tuple(crop_ms),
        tuple(full_ms),
        tuple(rss),
        min(agree, default=float("nan")),
        tuple(steps),
    )


def add_scene_options(p: argparse.ArgumentParser) -> None:
    """``--threads``, ``--dims`` and ``--page``, shared by the benchmarks on these scenes
    (``set-image``)."""
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--dims", default="2,3", help="which of 2D 512^2 and 3D 128^3, e.g. 3")
    add_page_option(p)


def chosen_dims(text: str) -> list[int]:
    """``--dims`` as a list, e.g. ``"2,3"`` -> ``[2, 3]``."""
    return [int(d) for d in text.split(",") if d.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench heads``."""
    p = sub.add_parser(
        "heads",
        help="refine latency of spatial heads over coarse features: crop vs whole image",
        description=__doc__,
    )
    p.add_argument("--refines", type=int, default=50, help="interactions per case")
    p.add_argument("--full", type=int, default=5, help="refines replayed on the whole image")
    add_scene_options(p)
    p.add_argument("--config", default="", help="RefineConfig overrides, comma-separated")
    p.add_argument(
        "--malloc",
        choices=("mmap-1mib", "default"),
        default="mmap-1mib",
        help="glibc's allocation setting for the run (default: the one docs/deploy.md advises)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the figures as a table (in a child process with ``MALLOC_ENV`` set unless
    ``--malloc default``: glibc's adaptive threshold keeps freed refine temporaries of a few to
    32 MiB in the heap, and the resident set then grows with no live data behind it)."""
    wanted = {} if args.malloc == "default" else MALLOC_ENV
    if any(os.environ.get(k) != v for k, v in wanted.items()):
        cmd = [sys.executable, "-m", "medrefine.cli", "bench", "heads"]
        cmd += ["--refines", str(args.refines), "--full", str(args.full)]
        cmd += ["--threads", str(args.threads), "--dims", args.dims, "--config", args.config]
        cmd += ["--malloc", args.malloc, "--page", args.page]
        return subprocess.run(cmd, check=False, env={**os.environ, **wanted}).returncode
    torch.set_num_threads(args.threads)
    config = RefineConfig().with_overrides(args.config)
    table = Table(
        title=f"spatial heads over coarse features ({args.threads} torch threads, "
        f"{args.refines} refines per case, malloc {args.malloc}, "
        f"load average {os.getloadavg()[0]:.2f})"
    )
    cols = ["case", "mode", "refine p50 ms", "refine p95 ms", "steps p50"]
    cols += [f"crop / full p50 ms (first {args.full})"]
    cols += ["ratio full/crop", "mask agreement"]
    cols += ["RSS MiB after refines " + "/".join(map(str, _RSS_AT))]
    for col in cols:
        table.add_column(col, justify="right")
    dims = chosen_dims(args.dims)
    for d in dims:
        shape = (512, 512) if d == 2 else (128, 128, 128)
        for name, build in (("decoder", decoder_net), ("deeplab-like", deeplab_net)):
            torch.manual_seed(0)  # the same weights on every run
            f = measure(name, build(d), d, shape, args.refines, args.full, config)
            same = f.crop_ms[: len(f.full_ms)]
            ratio = statistics.median(f.full_ms) / statistics.median(same) if same else 0.0
            table.add_row(
                f.case,
                f.mode,
                f"{percentile(f.crop_ms, 50):.0f}",
                f"{percentile(f.crop_ms, 95):.0f}",
                f"{percentile(tuple(float(v) for v in f.steps), 50):.0f}",
                f"{percentile(tuple(same), 50):.0f} / {percentile(f.full_ms, 50):.0f}",
                f"{ratio:.1f}x",
                f"{100 * f.agreement:.2f}%",
                " / ".join(f"{v:.0f}" for _, v in f.rss) or "-",
            )
    page = Page.from_args(args, "heads")
    page.table(table)
    page.write()
    return 0
