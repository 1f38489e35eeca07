"""Benchmark ``medrefine bench memory``: resident memory of a long 3D session and of set_image.

Each scenario runs in a fresh child process (``python -m medrefine.benchmarks.memory --child``),
so one scenario's allocations never count against another. The child reports its resident set
(``VmRSS``) and its peak so far (``VmHWM``) from ``/proc/self/status`` after each checkpoint; the
parent adds ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` as a cross-check.

Scenarios (``hippocampus-unet3d``, a smooth synthetic volume, no feature cache):

- ``session``: ``set_image`` on ``(128, 256, 256)`` (z, y, x), then ``--interactions`` refines of
  one click each (labels cycle through the classes, positions drawn from a seeded generator).
- ``set_image``: ``set_image`` alone on ``(256, 256, 128)``.

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

Run it as ``medrefine bench memory`` or ``python -m medrefine.benchmarks.memory``.
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


def _child(scenario: str, interactions: int, seed: int) -> None:
    import medrefine as mr

    _report("start")
    model = mr.load_model("hippocampus-unet3d")
    session = mr.Session(model, cache=mr.FeatureCache(max_bytes=0))
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
        if (i + 1) % 10 == 0 or i == 0:
            _report(f"refine {i + 1}")


def parity(interactions: int, seed: int) -> list[str]:
    """The ``session`` scenario whole + float32, slabs + float32 and with the default limits
    (slabs + float16), in this process: set_image seconds of each, and the share of voxels whose
    mask agrees after set_image and after each refine (see the module docstring)."""
    import time

    import medrefine as mr

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
        session = mr.Session(model, cache=mr.FeatureCache(max_bytes=0), limits=limits)
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


#: glibc setting the child runs with unless ``--malloc default``: allocations over 1 MiB are
#: mapped and unmapped on their own, so freed ones leave the resident set.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def measure(
    scenario: str, interactions: int = 50, seed: int = 0, malloc: str = "mmap-1mib"
) -> list[dict[str, Any]]:
    """Run ``scenario`` in a child process; its checkpoints, then the child's ru_maxrss."""
    cmd = [sys.executable, "-m", "medrefine.benchmarks.memory", "--child", scenario]
    cmd += ["--interactions", str(interactions), "--seed", str(seed)]
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
        "--scenario", choices=("session", "set_image", "both"), default="both", help="what to run"
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


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios and print each checkpoint (MiB)."""
    if args.parity:
        print(f"parity on {SESSION_SHAPE} (z, y, x), {args.interactions} refines:")
        print("\n".join(parity(args.interactions, args.seed)))
        return 0
    names = ("session", "set_image") if args.scenario == "both" else (args.scenario,)
    for name in names:
        shape = SESSION_SHAPE if name == "session" else SET_IMAGE_SHAPE
        print(f"{name} on {shape} (z, y, x), malloc {args.malloc}:")
        for row in measure(name, args.interactions, args.seed, args.malloc):
            rss = row.get("rss_mib")
            rss_text = f"rss {rss:8.1f} MiB  " if rss is not None else " " * 19
            print(f"  {row['at']:<34} {rss_text}peak {row['peak_mib']:8.1f} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medrefine.benchmarks.memory")
    _add_arguments(parser)
    parser.add_argument("--child", choices=("session", "set_image"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.interactions, args.seed)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
