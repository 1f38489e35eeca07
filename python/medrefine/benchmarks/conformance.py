"""Benchmark ``medrefine bench conformance``: third-party networks split three ways, checked on
real images, refined; the README's table of covered architectures.

For each :data:`~medrefine.benchmarks.architectures.ARCHITECTURES` entry whose package is
installed, the network (random weights, then :data:`FIT_STEPS` Adam steps on the image and its
ground truth, so its mask is not one class) is split three ways ("routes"):

- ``module``: ``SplitModel.from_module`` (torch.fx); a network fx cannot trace is reported so;
- ``onnx``: ``export_module`` of the network followed by a softmax, then ``from_onnx`` cut with
  ``module_nodes`` (the softmax is cut off the converted head);
- ``torchscript``: ``torch.jit.trace``, exported to ONNX, then ``from_onnx``.

On a real image (a crop of the shipped ``nuclei-stained`` sample in 2D, ``hippocampus-007`` in
3D; sizes not a multiple of the network's, padded by its ``Preprocessing``) it measures the
agreement of the session's mask with the network's own argmax, then refines one click per class
where the network is wrong (:func:`wrong_marks`)
and reports the refine time (median and p95 over repeats, and the ratio to ``set_image``), the
share of marked pixels the adapted network predicts as their class (honoured fraction) and
whether ``add_class`` extends the head.

Packages are imported when a network is built: a missing one is named, not fatal.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import medrefine as mr
from medrefine.benchmarks.architectures import ARCHITECTURES, Architecture, missing
from medrefine.benchmarks.torchvision_ops import ensure_importable
from medrefine.errors import UnsupportedModelError
from medrefine.samples import load_sample

ROUTES = ("module", "onnx", "torchscript")
FIT_STEPS = 12  # Adam steps on the image before the split: a mask of more than one class


@dataclass(frozen=True)
class Scene:
    """A real image and its ground truth, cropped to an odd size.

    Attributes:
        image: ``(C, *spatial)`` float32, z-scored per channel (C = the network's channels).
        label: ``spatial`` uint8 classes of the ground truth, those past the network's last
            class merged into it (binary in 2D; 3D: the hippocampus' two parts for 3 classes).
    """

    image: np.ndarray
    label: np.ndarray


def scene(arch: Architecture) -> Scene:
    """The real image an architecture is checked on: 67x81 px of ``nuclei-stained`` (2D), or
    ``hippocampus-007`` (34x47x40 voxels) in 3D; a network of fixed input size (UNETR's
    ViT) gets exactly that size."""
    if arch.spatial_dims == 2:
        case = load_sample("nuclei-stained")
        size = (64, 64) if arch.name.startswith("monai-unetr") else (67, 81)
        rgb = case.image[:, 100 : 100 + size[0], 120 : 120 + size[1]].astype(np.float32)
        image = rgb if arch.in_channels == 3 else rgb.mean(0, keepdims=True)
        label = case.label[100 : 100 + size[0], 120 : 120 + size[1]]
    else:
        case = load_sample("hippocampus-007")
        cut = (slice(0, 32),) * 3 if arch.name.startswith("monai-unetr") else (slice(None),) * 3
        image, label = case.image[cut][None].astype(np.float32), case.label[cut]
    flat = image.reshape(image.shape[0], -1)
    mean = flat.mean(1).reshape((-1,) + (1,) * arch.spatial_dims)
    std = flat.std(1).reshape((-1,) + (1,) * arch.spatial_dims)
    image = ((image - mean) / np.maximum(std, 1e-6)).astype(np.float32)
    label = np.minimum(label, arch.classes - 1).astype(np.uint8)  # classes past K merged
    return Scene(np.ascontiguousarray(image), np.ascontiguousarray(label))


def preprocessing(arch: Architecture) -> mr.Preprocessing:
    """The network's input as given (already z-scored), padded to its multiple."""
    return mr.Preprocessing(arch.spatial_dims, multiple=arch.multiple, normalize=False)


def fitted(arch: Architecture, sc: Scene, steps: int = FIT_STEPS) -> nn.Module:
    """``arch``'s network after ``steps`` Adam steps (lr 1e-3, eval mode: norms keep their
    running statistics) on ``sc``: the random network's argmax is often one class everywhere."""
    net = arch.build()
    x = preprocessing(arch)(sc.image)
    target = torch.zeros(x.shape[:1] + x.shape[2:], dtype=torch.int64)
    target[(0,) + tuple(slice(0, s) for s in sc.label.shape)] = torch.from_numpy(
        sc.label.astype(np.int64)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), target)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return net.eval().requires_grad_(False)


class WithSoftmax(nn.Module):
    """The network followed by a softmax over its classes (a network shipped with one)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(1, K, *spatial)``."""
        return torch.softmax(self.net(x), dim=1)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    with warnings.catch_warnings():
        # torch.jit.trace is deprecated and still how networks ship; third-party forward
        # passes branch on sizes, which the tracer notes (the export is checked numerically).
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit._trace.TracerWarning)
        yield


def split(arch: Architecture, net: nn.Module, route: str, folder: Path) -> mr.SplitModel:
    """``net`` split by ``route`` (:data:`ROUTES`); files go to ``folder``.

    Raises:
        UnsupportedModelError: the route cannot take this network (e.g. fx cannot trace it).
    """
    from medrefine.onnx import module_nodes
    from medrefine.onnx.export import export_module, traceable

    prep, dims = preprocessing(arch), arch.spatial_dims
    if route == "module":
        return mr.SplitModel.from_module(
            copy.deepcopy(net), arch.head, arch.classes, dims, preprocessing=prep
        )
    example = prep(scene(arch).image)
    path = folder / f"{arch.name}-{route}.onnx"
    with _quiet_tracing():
        if route == "onnx":
            export_module(WithSoftmax(net), example, path, tolerance=1e-3)
        else:
            traced = torch.jit.trace(traceable(net), example)  # type: ignore[no-untyped-call]
            export_module(traced, example, path, reference=net, tolerance=1e-3)
    # the export names weights by their state_dict keys; WithSoftmax adds "net." before them
    cut = [
        n for h in arch.head for n in module_nodes(path, ("net." if route == "onnx" else "") + h)
    ]
    return mr.SplitModel.from_onnx(path, cut, arch.classes, dims, preprocessing=prep)


def network_mask(arch: Architecture, net: nn.Module, image: np.ndarray) -> np.ndarray:
    """``net``'s own label mask of ``image``: argmax over its classes of ``net`` run on the
    padded input, cut back to the image (spatial shape, int64)."""
    x = preprocessing(arch)(image)
    with torch.no_grad():
        out = net(x)[0]
    inside = (slice(None),) + tuple(slice(0, s) for s in image.shape[1:])
    return out[inside].argmax(0).numpy()


def wrong_marks(mask: np.ndarray, label: np.ndarray) -> list[mr.Click]:
    """One click per class the network's ``mask`` gets wrong somewhere: at the pixel of the
    ground truth's class deepest inside the region the network gives another class (as a
    clinician clicks into the middle of a mistake); radius 2 px in 2D, 1 voxel in 3D."""
    from scipy.ndimage import distance_transform_edt

    marks = []
    for c in np.unique(label):
        wrong = (label == c) & (mask != c)
        if wrong.any():
            depth = distance_transform_edt(wrong)
            point = np.unravel_index(int(np.argmax(depth)), wrong.shape)
            radius = 2 if mask.ndim == 2 else 1
            marks.append(mr.Click(int(c), tuple(int(v) for v in point), radius=radius))
    return marks


@dataclass(frozen=True)
class Figures:
    """One architecture through one route."""

    arch: str
    route: str
    status: str  # "ok" or why the route cannot take the network
    agreement: float = float("nan")  # share of pixels where the session's mask = the network's
    output_kind: str = ""
    mode: str = ""
    set_image_ms: float = float("nan")
    refine_ms: tuple[float, ...] = ()
    honoured_before: float = float("nan")
    honoured: float = float("nan")
    add_class: str = ""

    @property
    def refine_p50(self) -> float:
        return float(np.median(self.refine_ms)) if self.refine_ms else float("nan")

    @property
    def refine_p95(self) -> float:
        return float(np.percentile(self.refine_ms, 95)) if self.refine_ms else float("nan")


def measure(arch: Architecture, net: nn.Module, route: str, folder: Path, repeats: int) -> Figures:
    """Split ``net`` by ``route`` and measure it on its scene (see the module docstring)."""
    try:
        model = split(arch, net, route, folder)
    except UnsupportedModelError as exc:
        return Figures(arch.name, route, f"refused: {str(exc)[:90]}")
    sc = scene(arch)
    session = mr.Session(model)
    start = time.perf_counter()
    mask = session.set_image(sc.image)
    set_ms = 1000 * (time.perf_counter() - start)
    agreement = float((mask == network_mask(arch, net, sc.image)).mean())
    times, result = [], None
    for _ in range(repeats):
        session.reset()
        for mark in wrong_marks(mask, sc.label):
            session.add(mark)
        result = session.refine()
        times.append(1000 * result.seconds)
    try:
        session.add_class("new")
        extend = "extends"
    except UnsupportedModelError as exc:
        extend = "refused: " + str(exc).split(": ", 1)[1].split(";")[0][:60]
    return Figures(
        arch.name,
        route,
        "ok",
        agreement,
        model.output_kind,
        result.mode if result else "",
        set_ms,
        tuple(times),
        result.honoured_before if result else float("nan"),
        result.honoured_fraction if result else float("nan"),
        extend,
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``conformance`` on the ``medrefine bench`` subparsers."""
    parser = sub.add_parser("conformance", help="third-party networks: split, agreement, refine")
    parser.add_argument("--repeats", type=int, default=5, help="timed refines per network")
    parser.add_argument("--only", default="", help="comma-separated architecture names")
    parser.add_argument("--routes", default=",".join(ROUTES), help="module,onnx,torchscript")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one markdown row per architecture and route."""
    ensure_importable()  # torchvision's models beside a CPU-only PyTorch (torchvision_ops)
    chosen = [a for a in ARCHITECTURES if not args.only or a.name in args.only.split(",")]
    routes = args.routes.split(",")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load {load:.1f}"
    )
    print(
        "| network | route | status | agreement | head output | head mode | set_image ms "
        "| refine p50 / p95 ms | refine / set_image | honoured before -> after | add_class |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in chosen:
            why = missing(arch)
            if why is not None:
                print(f"| {arch.name} | - | {why} | | | | | | | | |")
                continue
            try:
                net = fitted(arch, scene(arch))
            except ImportError as exc:  # e.g. torchvision without its compiled extension
                print(f"| {arch.name} | - | cannot import: {str(exc)[:80]} | | | | | | | | |")
                continue
            except RuntimeError as exc:
                print(f"| {arch.name} | - | cannot build: {str(exc)[:80]} | | | | | | | | |")
                continue
            done = []
            for route in routes:
                f = measure(arch, net, route, Path(tmp), args.repeats)
                if f.status != "ok":
                    print(f"| {arch.name} | {route} | {f.status} | | | | | | | | |")
                    continue
                done.append(f)
                print(
                    f"| {arch.name} | {route} | ok | {100 * f.agreement:.3f} % | "
                    f"{f.output_kind} | {f.mode} | {f.set_image_ms:.0f} | "
                    f"{f.refine_p50:.0f} / {f.refine_p95:.0f} | "
                    f"{f.refine_p50 / f.set_image_ms:.2f} | "
                    f"{f.honoured_before:.2f} -> {f.honoured:.2f} | {f.add_class} |"
                )
            if done:
                summary.append(_summary_row(arch, done))
    print(
        "\n| network | routes | agreement (worst route) | head mode | refine p50 / p95 ms "
        "| honoured before -> after | add_class |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        print(row)
    return 0


def _summary_row(arch: Architecture, done: list[Figures]) -> str:
    """One README row: every route that took the network; times of the first."""
    first = done[0]
    extend = "yes" if first.add_class == "extends" else "no (typed error)"
    return (
        f"| {arch.name} | {', '.join(f.route for f in done)} | "
        f"{100 * min(f.agreement for f in done):.3f} % | {first.mode} | "
        f"{first.refine_p50:.0f} / {first.refine_p95:.0f} | "
        f"{first.honoured_before:.2f} -> {first.honoured:.2f} | {extend} |"
    )
