"""Benchmark ``medrefine bench memory``: resident memory of a long 3D session and of set_image.

Each scenario runs in a fresh child process (``python -m medrefine_lab.benchmarks.memory --child``),
so one scenario's allocations never count against another. The child reports its resident set
(``VmRSS``) and its peak so far (``VmHWM``) from ``/proc/self/status`` after each checkpoint; the
parent adds ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` as a cross-check.

Scenarios (``hippocampus-unet3d``, a smooth synthetic volume, no feature cache):

- ``session``: ``set_image`` on ``(128, 256, 256)`` (z, y, x), then ``--interactions`` refines of
  one click each (labels cycle through the classes, positions drawn from a seeded generator);
  the resident set after every refine gives the growth from refine 1 to the last, in all and
  per refine (:func:`growth`).
- ``set_image``: ``set_image`` alone on ``(256, 256, 128)``.
- ``admission``: ``set_image`` of each of :data:`ADMISSION_CASES` (zoo and generic networks,
  whole, slab by slab, ONNX Runtime) in its own child, its peak and held resident memory and
  its seconds next to the estimate of :mod:`medrefine.engine.budget.admission`.

Both run with the default :class:`~medrefine.SessionLimits`: a volume this large runs the
backbone slab by slab (``slab_voxels``) and caches its features in float16
(``float16_feature_bytes``). The child runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at
1 MiB (``--malloc default`` leaves glibc's adaptive threshold): otherwise freed temporaries of
a few to 32 MiB stay in the heap and the resident set grows by hundreds of MiB over the
refines without any live tensor behind it (measured: 2577 MiB peak against 1989 MiB). A server
for large volumes should run with the same setting (docs/deploy.md).

``--parity`` runs the ``session`` scenario three times in one process instead: the backbone
whole with float32 features (``slab_voxels=None, float16_feature_bytes=None``, the reference),
slab by slab with float32 features (``float16_feature_bytes=None``), and with the default limits
(slabs, float16 features); it prints the set_image times and how many voxels of the masks agree
with the reference, and between the two slab runs (what float16 alone changes).

Run it as ``medrefine bench memory`` or ``python -m medrefine_lab.benchmarks.memory``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medrefine_lab.benchmarks.page import Page, add_page_option

SESSION_SHAPE = (128, 256, 256)
SET_IMAGE_SHAPE = (256, 256, 128)
_MIB = 1 << 20


def _status_mib() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB, from /proc/self/status."""
    values = {}
    with Path("/proc/self/status").open(encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def _report(label: str) -> None:
    rss, hwm = _status_mib()
    print(json.dumps({"at": label, "rss_mib": round(rss, 1), "peak_mib": round(hwm, 1)}))
    sys.stdout.flush()


def _volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth float32 volume of ``shape`` with a few bright blobs (values about 0..1000)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    small = rng.standard_normal(tuple(max(s // 8, 2) for s in shape)).astype(np.float32)
    zoom = [s / t for s, t in zip(shape, small.shape, strict=True)]
    big = ndimage.zoom(small, zoom, order=1)[tuple(slice(0, s) for s in shape)]
    return np.asarray(500.0 + 200.0 * big, dtype=np.float32)


def _child(
    scenario: str, interactions: int, seed: int, shape: tuple[int, ...] | None = None
) -> None:
    import medrefine as mr
    from medrefine.engine.budget.cache import FeatureCache

    _report("start")
    model = mr.load_model("hippocampus-unet3d")
    session = mr.Session(model, cache=FeatureCache(max_bytes=0))
    if shape is None:
        shape = SESSION_SHAPE if scenario == "session" else SET_IMAGE_SHAPE
    image = _volume(shape, seed)
    _report("loaded")
    session.set_image(image)
    del image
    _report("set_image")
    if scenario != "session":
        return
    rng = np.random.default_rng(seed)
    k = session.num_classes
    for i in range(interactions):
        point = tuple(int(rng.integers(4, s - 4)) for s in shape)
        session.add(mr.Click(label=i % k, point=point, radius=2))
        session.refine()
        _report(f"refine {i + 1}")


def growth(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Resident-set growth over the refines of a ``session`` run: in all from refine 1 to the
    last, and per refine (least-squares slope over every refine), MiB; None with fewer than
    two refines."""
    points = [
        (int(r["at"].split()[1]), float(r["rss_mib"]))
        for r in rows
        if str(r["at"]).startswith("refine ") and "rss_mib" in r
    ]
    if len(points) < 2:
        return None
    x = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    slope = float(np.polyfit(x, y, 1)[0])
    return {"refines": float(x[-1]), "total_mib": float(y[-1] - y[0]), "per_refine_mib": slope}


def _shown(label: str) -> bool:
    """Whether a checkpoint goes in the printed table (refine 1 and every tenth)."""
    if not label.startswith("refine "):
        return True
    n = int(label.split()[1])
    return n == 1 or n % 10 == 0


def parity(interactions: int, seed: int) -> list[str]:
    """The ``session`` scenario whole + float32, slabs + float32 and with the default limits
    (slabs + float16), in this process: set_image seconds of each, and the share of voxels whose
    mask agrees after set_image and after each refine (see the module docstring)."""
    import time

    import medrefine as mr
    from medrefine.engine.budget.cache import FeatureCache

    model = mr.load_model("hippocampus-unet3d")
    image = _volume(SESSION_SHAPE, seed)
    configs = {
        "whole + float32": mr.SessionLimits(slab_voxels=None, float16_feature_bytes=None),
        "slabs + float32": mr.SessionLimits(float16_feature_bytes=None),
        "slabs + float16 (default)": mr.SessionLimits(),
    }
    masks: dict[str, list[np.ndarray]] = {}
    lines = []
    for name, limits in configs.items():
        session = mr.Session(model, cache=FeatureCache(max_bytes=0), limits=limits)
        start = time.perf_counter()
        out = [session.set_image(image)]
        lines.append(f"  set_image {name}: {time.perf_counter() - start:.1f} s")
        rng = np.random.default_rng(seed)
        for i in range(interactions):
            point = tuple(int(rng.integers(4, s - 4)) for s in SESSION_SHAPE)
            session.add(mr.Click(label=i % session.num_classes, point=point, radius=2))
            out.append(session.refine().mask)
        masks[name] = out
        del session
    reference, slabs32, default = masks.values()
    pairs = {
        "slabs + float32 against whole + float32": (slabs32, reference),
        "slabs + float16 against whole + float32": (default, reference),
        "float16 against float32 (both slab by slab)": (default, slabs32),
    }
    for name, (a, b) in pairs.items():
        shares = [float((x == y).mean()) for x, y in zip(a, b, strict=True)]
        line = f"  {name}: network mask {shares[0]:.6%}"
        if len(shares) > 1:
            line += f"; after refines 1..{len(shares) - 1} lowest {min(shares[1:]):.6%}"
            line += f", last {shares[-1]:.6%}"
        lines.append(line)
    return lines


#: The cases ``--scenario admission`` measures: (network, spatial shape, backend, SessionLimits
#: overrides). A network is a zoo name or a name of :mod:`medrefine_lab.benchmarks.architectures`
#: (generic networks). The constants of medrefine.engine.budget.admission were chosen on all but the
#: last four, which check them.
#: ``slab_voxels=1`` forces the slab path on a volume under the default slab threshold.
ADMISSION_CASES: tuple[tuple[str, tuple[int, ...], str, dict[str, Any]], ...] = (
    ("nuclei-unet2d", (512, 512), "torch", {}),
    ("nuclei-unet2d", (1024, 1024), "torch", {}),
    ("nuclei-unet2d", (2048, 2048), "torch", {}),
    ("nuclei-unet2d", (1024, 1024), "torch", {"slab_voxels": 1}),
    ("nuclei-unet2d", (1024, 1024), "onnxruntime", {}),
    ("fetalhead-unet2d", (1024, 1024), "torch", {}),
    ("fetalhead-unet2d", (2048, 2048), "torch", {}),
    ("fetalhead-unet2d", (2048, 2048), "torch", {"slab_voxels": 1}),
    ("hippocampus-unet3d", (64, 64, 64), "torch", {}),
    ("hippocampus-unet3d", (128, 128, 128), "torch", {}),
    ("hippocampus-unet3d", (128, 128, 128), "torch", {"slab_voxels": 1}),
    ("hippocampus-unet3d", (128, 256, 256), "torch", {}),
    ("hippocampus-unet3d", (96, 96, 96), "onnxruntime", {}),
    ("monai-unet-2d", (1024, 1024), "torch", {}),
    ("dna-plainconvunet-2d", (1024, 1024), "torch", {}),
    ("monai-unet-3d", (128, 128, 128), "torch", {}),
    ("dna-plainconvunet-3d", (96, 96, 96), "torch", {}),
    ("dna-plainconvunet-3d", (128, 128, 128), "torch", {"slab_voxels": 1}),
    # held out: measured after the constants were chosen
    ("monai-segresnet-2d", (1024, 1024), "torch", {}),
    ("monai-dynunet-3d", (96, 96, 96), "torch", {}),
    ("monai-dynunet-2d", (1024, 1024), "torch", {}),
    ("hippocampus-unet3d", (160, 160, 160), "torch", {}),
)


def _network(name: str) -> Any:
    """A zoo model, or a generic network of medrefine_lab.benchmarks.architectures split at its
    head with z-scoring and its pad multiple."""
    import medrefine as mr
    from medrefine_lab.benchmarks.architectures import by_name

    if name in mr.list_models():
        return mr.load_model(name)
    arch = by_name(name)
    prep = mr.Preprocessing(arch.spatial_dims, arch.in_channels, arch.multiple)
    return mr.SplitModel.from_module(
        arch.build(), list(arch.head), arch.classes, arch.spatial_dims, prep, name=name
    )


def _admission_child(index: int) -> None:
    """Measure ``ADMISSION_CASES[index]``: set_image's resident-set growth at its peak and once
    it returned, its seconds, and the admission estimate (printed as one JSON line)."""
    import time

    import medrefine as mr
    from medrefine.engine.budget.admission import estimate
    from medrefine.engine.budget.cache import FeatureCache

    name, shape, backend, overrides = ADMISSION_CASES[index]
    model = _network(name)
    unbounded = {"max_set_image_bytes": None, "max_set_image_seconds": None}
    limits = mr.SessionLimits(**{**unbounded, **overrides})
    session = mr.Session(model, cache=FeatureCache(max_bytes=0), backend=backend, limits=limits)
    image = _volume(shape, 0)
    if model.preprocessing.channels == 3:
        image = np.repeat(image[None], 3, axis=0)
    found = estimate(model, session.backend, shape, limits)  # profiles the backbone first
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS
    before, _ = _status_mib()
    start = time.perf_counter()
    session.set_image(image)
    seconds = time.perf_counter() - start
    rss, hwm = _status_mib()
    row = {
        "case": f"{name} {'x'.join(map(str, shape))} {backend} {overrides or ''}".strip(),
        "peak_mib": round(hwm - before, 1),
        "held_mib": round(rss - before, 1),
        "seconds": round(seconds, 2),
        "load": round(os.getloadavg()[0], 2),
    }
    if found is not None:
        row |= {
            "path": found.path,
            "est_peak_mib": round(found.peak_bytes / _MIB, 1),
            "est_held_mib": round(found.held_bytes / _MIB, 1),
            "est_seconds": round(found.seconds, 2),
        }
    print(json.dumps(row))


def admission(cases: list[int]) -> list[dict[str, Any]]:
    """Each of ``ADMISSION_CASES[i]`` in its own child process (allocator as ``measure``)."""
    rows = []
    for i in cases:
        cmd = [sys.executable, "-m", "medrefine_lab.benchmarks.memory", "--admission-child", str(i)]
        env = {**os.environ, **MALLOC_ENV}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:  # a network that cannot be built here: said, not fatal
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            name, shape, backend, overrides = ADMISSION_CASES[i]
            rows.append({"case": f"{name} {shape} {backend} {overrides}", "error": last})
            continue
        rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return rows


#: glibc setting the child runs with unless ``--malloc default``: allocations over 1 MiB are
#: mapped and unmapped on their own, so freed ones leave the resident set.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def measure(
    scenario: str,
    interactions: int = 50,
    seed: int = 0,
    malloc: str = "mmap-1mib",
    shape: tuple[int, ...] | None = None,
) -> list[dict[str, Any]]:
    """Run ``scenario`` in a child process (on ``shape``, (z, y, x), instead of the scenario's
    own if given); its checkpoints, then the child's ru_maxrss."""
    cmd = [sys.executable, "-m", "medrefine_lab.benchmarks.memory", "--child", scenario]
    cmd += ["--interactions", str(interactions), "--seed", str(seed)]
    if shape is not None:
        cmd += ["--shape", "x".join(map(str, shape))]
    env = dict(os.environ)
    for key in MALLOC_ENV:
        env.pop(key, None)
    if malloc != "default":
        env.update(MALLOC_ENV)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line]
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB -> MiB
    rows.append({"at": "ru_maxrss (all children so far)", "peak_mib": round(maxrss, 1)})
    return rows


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``memory`` on an argparse subparsers object."""
    parser = subparsers.add_parser("memory", help="resident memory of a 3D session and set_image")
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=("session", "set_image", "both", "admission"),
        default="both",
        help="what to run; admission: set_image measured against its admission estimate",
    )
    parser.add_argument(
        "--cases",
        default="",
        help="admission: comma-separated indices into ADMISSION_CASES (default all)",
    )
    parser.add_argument("--interactions", type=int, default=50, help="refines in 'session'")
    parser.add_argument("--seed", type=int, default=0, help="volume and click seed")
    parser.add_argument(
        "--parity",
        action="store_true",
        help="instead: masks of the session scenario, default limits against whole + float32",
    )
    parser.add_argument(
        "--malloc",
        choices=("mmap-1mib", "default"),
        default="mmap-1mib",
        help="glibc allocator setting of the child (see the module docstring)",
    )
    add_page_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios and print each checkpoint (MiB), kept for ``--page``."""
    page = Page.from_args(args, "memory")
    with page.tee(fence=True):
        _print_scenarios(args)
    page.write()
    return 0


def _print_scenarios(args: argparse.Namespace) -> None:
    """Print the chosen scenarios' checkpoints."""
    if args.parity:
        print(f"parity on {SESSION_SHAPE} (z, y, x), {args.interactions} refines:")
        print("\n".join(parity(args.interactions, args.seed)))
        return
    if args.scenario == "admission":
        chosen = [int(i) for i in args.cases.split(",") if i] or list(range(len(ADMISSION_CASES)))
        print("set_image measured (MiB over the resident set before it, s) and estimated:")
        for row in admission(chosen):
            print("  " + json.dumps(row))
        return
    names = ("session", "set_image") if args.scenario == "both" else (args.scenario,)
    for name in names:
        shape = SESSION_SHAPE if name == "session" else SET_IMAGE_SHAPE
        print(f"{name} on {shape} (z, y, x), malloc {args.malloc}:")
        rows = measure(name, args.interactions, args.seed, args.malloc)
        for row in rows:
            if not _shown(str(row["at"])):
                continue
            rss = row.get("rss_mib")
            rss_text = f"rss {rss:8.1f} MiB  " if rss is not None else " " * 19
            print(f"  {row['at']:<34} {rss_text}peak {row['peak_mib']:8.1f} MiB")
        grew = growth(rows)
        if grew is not None:
            print(
                f"  growth from refine 1 to {grew['refines']:.0f}: {grew['total_mib']:.1f} MiB "
                f"in all, {grew['per_refine_mib']:.2f} MiB per refine (least-squares slope)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medrefine_lab.benchmarks.memory")
    _add_arguments(parser)
    parser.add_argument("--child", choices=("session", "set_image"), help=argparse.SUPPRESS)
    parser.add_argument("--admission-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.admission_child is not None:
        _admission_child(args.admission_child)
        return 0
    if args.child:
        shape = tuple(int(n) for n in args.shape.split("x")) if args.shape else None
        _child(args.child, args.interactions, args.seed, shape)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
