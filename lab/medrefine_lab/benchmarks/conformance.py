"""Benchmark ``medrefine bench conformance``: third-party networks split three ways, checked on
real images, refined; the table of covered architectures in docs/benchmarks.md.

For each :data:`~medrefine_lab.benchmarks.architectures.ARCHITECTURES` entry whose package is
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
and reports the refine time (median and p95 over repeats, and the ratios to ``set_image`` and
to the first route's), the share of marked pixels the adapted network predicts as their class
(honoured fraction) and whether ``add_class`` extends the head. The routes' timed refines are
interleaved (each repeat refines once through every route in turn), so a change of the
machine's load reaches every route alike and the ratio between routes holds under load.

With ``--size full`` each network is measured the same way (one click per class into its
mistakes) at a clinical size instead of the small one, through one route (fx, else ONNX):
2D 512x512 px, the ``nuclei-stained`` sample (256x320 px) mirrored out to 512x512 (numpy's
``symmetric`` padding), so every pixel is a real one; 3D 128x128x128 voxels,
``hippocampus-007`` resampled with ``scipy.ndimage.zoom`` (image linear, order 1; label
nearest, order 0). A network of any input size keeps the weights fitted on the small scene;
one of fixed input size (UNETR's ``img_size``) is rebuilt for the full size and fitted there.
A network whose build, fit and timing together pass ``--budget`` seconds (default 180 at full
size) is skipped with the reason printed.

Packages are imported when a network is built: a missing one is named, not fatal.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import medrefine as mr
from medrefine.errors import UnsupportedModelError
from medrefine.samples import load_sample
from medrefine_lab.benchmarks.architectures import ARCHITECTURES, Architecture, missing
from medrefine_lab.benchmarks.page import Page, add_page_option
from medrefine_lab.benchmarks.torchvision_ops import ensure_importable

ROUTES = ("module", "onnx", "torchscript")
FIT_STEPS = 12  # Adam steps on the image before the split: a mask of more than one class
FULL_SIZE = {2: (512, 512), 3: (128, 128, 128)}  # --size full: (y, x) px, (z, y, x) voxels
FULL_BUDGET_S = 180.0  # --size full: a network past this (build, fit, timing) is skipped


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


def scene(arch: Architecture, full: bool = False) -> Scene:
    """The real image an architecture is checked on: 67x81 px of ``nuclei-stained`` (2D), or
    ``hippocampus-007`` (34x47x40 voxels) in 3D; a network of fixed input size (UNETR's
    ViT) gets exactly that size. ``full``: :data:`FULL_SIZE` (see the module docstring)."""
    if full:
        return _full_scene(arch)
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
    return _standardised(arch, image, label)


def _full_scene(arch: Architecture) -> Scene:
    """``nuclei-stained`` mirrored out to 512x512 px (2D), ``hippocampus-007`` zoomed to
    128^3 voxels (3D: image order 1, label order 0)."""
    from scipy.ndimage import zoom

    size = FULL_SIZE[arch.spatial_dims]
    if arch.spatial_dims == 2:
        case = load_sample("nuclei-stained")
        grow = tuple((0, max(0, n - s)) for n, s in zip(size, case.label.shape, strict=True))
        label = np.pad(case.label, grow, mode="symmetric")[: size[0], : size[1]]
        rgb = np.pad(case.image, ((0, 0),) + grow, mode="symmetric")[:, : size[0], : size[1]]
        rgb = rgb.astype(np.float32)
        image = rgb if arch.in_channels == 3 else rgb.mean(0, keepdims=True)
    else:
        case = load_sample("hippocampus-007")
        factors = [n / s for n, s in zip(size, case.label.shape, strict=True)]
        image = zoom(case.image.astype(np.float32), factors, order=1)[None]
        label = zoom(case.label, factors, order=0)
    return _standardised(arch, image, label)


def _standardised(arch: Architecture, image: np.ndarray, label: np.ndarray) -> Scene:
    """``image`` (``(C, *spatial)`` float32) z-scored per channel; ``label``'s classes past
    the network's last merged into it."""
    flat = image.reshape(image.shape[0], -1)
    mean = flat.mean(1).reshape((-1,) + (1,) * arch.spatial_dims)
    std = flat.std(1).reshape((-1,) + (1,) * arch.spatial_dims)
    image = ((image - mean) / np.maximum(std, 1e-6)).astype(np.float32)
    label = np.minimum(label, arch.classes - 1).astype(np.uint8)  # classes past K merged
    return Scene(np.ascontiguousarray(image), np.ascontiguousarray(label))


def preprocessing(arch: Architecture) -> mr.Preprocessing:
    """The network's input as given (already z-scored), padded to its multiple."""
    return mr.Preprocessing(arch.spatial_dims, multiple=arch.multiple, normalize=False)


def _no_check() -> None:
    """No budget."""


def fitted(
    arch: Architecture, sc: Scene, steps: int = FIT_STEPS, check: Callable[[], None] = _no_check
) -> nn.Module:
    """``arch``'s network after ``steps`` Adam steps (lr 1e-3, eval mode: norms keep their
    running statistics) on ``sc``: the random network's argmax is often one class everywhere.
    ``check`` runs before each step (a :class:`Deadline`'s raises when the budget is spent)."""
    net = arch.build()
    x = preprocessing(arch)(sc.image)
    target = torch.zeros(x.shape[:1] + x.shape[2:], dtype=torch.int64)
    target[(0,) + tuple(slice(0, s) for s in sc.label.shape)] = torch.from_numpy(
        sc.label.astype(np.int64)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        check()
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


def split(
    arch: Architecture, net: nn.Module, route: str, folder: Path, full: bool = False
) -> mr.SplitModel:
    """``net`` split by ``route`` (:data:`ROUTES`); files go to ``folder``; an export traces
    the scene's image (``full``: the full-size one).

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
    example = prep(scene(arch, full).image)
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
    # a network of fixed input size at full size is checked on that size (the default probe
    # is 64 px / 32 voxels)
    probe = example if full and arch.fixed_size is not None else None
    return mr.SplitModel.from_onnx(path, cut, arch.classes, dims, preprocessing=prep, example=probe)


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


def _prepared(
    arch: Architecture, net: nn.Module, route: str, folder: Path, full: bool
) -> tuple[Figures, mr.Session | None, list[mr.Click]]:
    """``net`` split by ``route``, a session on its scene with the image set, and the marks to
    refine; the figures known so far (no session when the route refuses the network)."""
    try:
        model = split(arch, net, route, folder, full)
    except UnsupportedModelError as exc:
        return Figures(arch.name, route, f"refused: {str(exc)[:90]}"), None, []
    sc = scene(arch, full)
    session = mr.Session(model)
    start = time.perf_counter()
    mask = session.set_image(sc.image)
    set_ms = 1000 * (time.perf_counter() - start)
    agreement = float((mask == network_mask(arch, net, sc.image)).mean())
    figures = Figures(arch.name, route, "ok", agreement, model.output_kind, set_image_ms=set_ms)
    return figures, session, wrong_marks(mask, sc.label)


def _refined(session: mr.Session, marks: list[mr.Click]) -> mr.RefineResult:
    """One refine of ``marks`` from the network's own mask."""
    session.reset()
    for mark in marks:
        session.add(mark)
    return session.refine()


def _finished(
    figures: Figures, session: mr.Session, times: list[float], result: mr.RefineResult | None
) -> Figures:
    """``figures`` with the refines' times and outcome, and whether ``add_class`` extends."""
    try:
        session.add_class("new")
        extend = "extends"
    except UnsupportedModelError as exc:
        extend = "refused: " + str(exc).split(": ", 1)[1].split(";")[0][:60]
    return dataclasses.replace(
        figures,
        mode=result.mode if result else "",
        refine_ms=tuple(times),
        honoured_before=result.honoured_before if result else float("nan"),
        honoured=result.honoured_fraction if result else float("nan"),
        add_class=extend,
    )


def measure_routes(
    arch: Architecture,
    net: nn.Module,
    routes: list[str],
    folder: Path,
    repeats: int,
    full: bool = False,
    check: Callable[[], None] = _no_check,
) -> list[Figures]:
    """Split ``net`` by each of ``routes`` and measure each on its scene (``full``: the
    full-size one; see the module docstring); the timed refines are interleaved: each repeat
    refines once through every route, in the order given. ``check`` runs before each route's
    preparation and each timed refine."""
    prepared = []
    for route in routes:
        check()
        prepared.append(_prepared(arch, net, route, folder, full))
    times: list[list[float]] = [[] for _ in routes]
    results: list[mr.RefineResult | None] = [None] * len(routes)
    for _ in range(repeats):
        for i, (_, session, marks) in enumerate(prepared):
            check()
            if session is not None:
                result = _refined(session, marks)
                results[i] = result
                times[i].append(1000 * result.seconds)
    return [
        figures if session is None else _finished(figures, session, t, result)
        for (figures, session, _), t, result in zip(prepared, times, results, strict=True)
    ]


def measure(
    arch: Architecture,
    net: nn.Module,
    route: str,
    folder: Path,
    repeats: int,
    full: bool = False,
) -> Figures:
    """Split ``net`` by ``route`` and measure it on its scene (``full``: the full-size one;
    see the module docstring)."""
    return measure_routes(arch, net, [route], folder, repeats, full)[0]


class OverBudgetError(Exception):
    """A network's build, fit and timing took longer than the benchmark's budget."""


class Deadline:
    """A wall-clock budget of ``seconds`` (``<= 0``: none), checked at safe points only.

    :meth:`check` raises :class:`OverBudgetError` once the budget is spent; the benchmark calls it
    between fit steps, routes and timed refines. An alarm that raises wherever the interpreter
    happens to be would be quicker to react but is not safe: raised inside a ``torch.fx`` trace
    it leaves ``nn.Module.__call__`` patched for the rest of the process (every later forward
    then fails), inside an import it leaves the module half-initialised.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.perf_counter() + seconds if seconds > 0 else math.inf

    def check(self) -> None:
        if time.perf_counter() > self.end:
            raise OverBudgetError(f"over the {self.seconds:g} s budget on this machine")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``conformance`` on the ``medrefine bench`` subparsers."""
    parser = sub.add_parser("conformance", help="third-party networks: split, agreement, refine")
    parser.add_argument("--repeats", type=int, default=5, help="timed refines per network")
    parser.add_argument("--only", default="", help="comma-separated architecture names")
    parser.add_argument(
        "--routes",
        default="",
        help="module,onnx,torchscript (default: all three; --size full: module, else onnx)",
    )
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="small: the suite's crops; full: 512x512 px (2D) and 128^3 voxels (3D)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds per network before it is skipped (default: none; {FULL_BUDGET_S:.0f} "
        "with --size full; 0: none)",
    )
    add_page_option(parser)
    parser.set_defaults(func=run)


def _routes(arch: Architecture, args: argparse.Namespace) -> list[str]:
    """The routes asked for; at full size by default one: fx, else ONNX."""
    if args.routes:
        return str(args.routes).split(",")
    if args.size == "full":
        return ["module" if arch.traceable else "onnx"]
    return list(ROUTES)


def _network(arch: Architecture, full: bool, check: Callable[[], None]) -> nn.Module:
    """The fitted network: on the small scene, or (fixed input size) on the full-size one."""
    if full and arch.fixed_size is not None:
        return fitted(arch, scene(arch, full=True), check=check)
    return fitted(arch, scene(arch), check=check)


def run(args: argparse.Namespace) -> int:
    """Print one markdown row per architecture and route, kept for ``--page``."""
    page = Page.from_args(args, "conformance")
    with page.tee():
        _report(args)
    page.write()
    return 0


def _report(args: argparse.Namespace) -> None:
    """Print the rows of every chosen architecture, then one summary row each."""
    ensure_importable()  # torchvision's models beside a CPU-only PyTorch (torchvision_ops)
    chosen = [a for a in ARCHITECTURES if not args.only or a.name in args.only.split(",")]
    full = args.size == "full"
    limit = args.budget if args.budget is not None else (FULL_BUDGET_S if full else 0.0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sizes = "512x512 px (2D), 128^3 voxels (3D)" if full else "the suite's small sizes"
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load {load:.1f}; {sizes}\n",
        flush=True,
    )
    print(
        "| network | route | status | agreement | head output | head mode | set_image ms "
        "| refine p50 / p95 ms | refine / set_image | honoured before -> after | add_class "
        "| refine p50 / first route's |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    summary: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in chosen:
            why = missing(arch)
            if why is not None:
                print(f"| {arch.name} | - | {why} | | | | | | | | | |", flush=True)
                continue
            if full:
                arch = arch.at_size(FULL_SIZE[arch.spatial_dims])
            done: list[Figures] = []
            start = time.perf_counter()
            deadline = Deadline(limit)
            try:
                _measure_routes(
                    arch, _routes(arch, args), Path(tmp), args.repeats, full, done, deadline.check
                )
            except OverBudgetError as exc:
                spent = time.perf_counter() - start
                print(f"| {arch.name} | - | skipped after {spent:.0f} s: {exc} | | | | | | | | | |")
            if done:
                summary.append(_summary_row(arch, done))
    print(
        "\n| network | routes | agreement (worst route) | head mode | refine p50 / p95 ms "
        "| honoured before -> after | add_class |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        print(row)


def _measure_routes(
    arch: Architecture,
    routes: list[str],
    folder: Path,
    repeats: int,
    full: bool,
    done: list[Figures],
    check: Callable[[], None],
) -> None:
    """Fit ``arch``'s network, measure it through each of ``routes``, print a row each and
    append the figures of those that took it to ``done``."""
    try:
        net = _network(arch, full, check)
    except ImportError as exc:  # e.g. torchvision without its compiled extension
        print(f"| {arch.name} | - | cannot import: {str(exc)[:80]} | | | | | | | | | |")
        return
    except RuntimeError as exc:
        print(f"| {arch.name} | - | cannot build: {str(exc)[:80]} | | | | | | | | | |")
        return
    baseline = float("nan")
    for f in measure_routes(arch, net, routes, folder, repeats, full, check):
        if f.status != "ok":
            print(f"| {arch.name} | {f.route} | {f.status} | | | | | | | | | |", flush=True)
            continue
        if not done:
            baseline = f.refine_p50
        done.append(f)
        print(
            f"| {arch.name} | {f.route} | ok | {100 * f.agreement:.3f} % | "
            f"{f.output_kind} | {f.mode} | {f.set_image_ms:.0f} | "
            f"{f.refine_p50:.0f} / {f.refine_p95:.0f} | "
            f"{f.refine_p50 / f.set_image_ms:.2f} | "
            f"{f.honoured_before:.2f} -> {f.honoured:.2f} | {f.add_class} | "
            f"{f.refine_p50 / baseline:.2f} |",
            flush=True,
        )


def _summary_row(arch: Architecture, done: list[Figures]) -> str:
    """One summary row: every route that took the network; times of the first."""
    first = done[0]
    extend = "yes" if first.add_class == "extends" else "no (typed error)"
    return (
        f"| {arch.name} | {', '.join(f.route for f in done)} | "
        f"{100 * min(f.agreement for f in done):.3f} % | {first.mode} | "
        f"{first.refine_p50:.0f} / {first.refine_p95:.0f} | "
        f"{first.honoured_before:.2f} -> {first.honoured:.2f} | {extend} |"
    )
