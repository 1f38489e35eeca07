"""Benchmark ``medrefine bench backends``: set_image with PyTorch eager against ONNX Runtime.

Cases: the nuclei model on 512x512 (the fluorescence sample tiled 2x2) and the hippocampus model
on 128^3 (a sample resampled), the same images as ``medrefine bench engine``. Every configuration
(PyTorch eager on the CPU; ONNX Runtime's CPU provider at several graph optimisation levels and
intra-op thread counts) runs ``Session.set_image`` with an empty feature cache, so each call pays
for the backbone; the configurations take turns (round robin, after one untimed warm-up each) so
a change in the machine's load hits them alike. Reported per configuration: median and p95 (ms),
the ratio of PyTorch's median to its median (above 1: faster than PyTorch), and the share of
pixels on which its mask agrees with PyTorch's.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.table import Table

import medrefine as mr
from medrefine.backends import FeatureExtractor, OnnxRuntimeBackend, TorchBackend
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.session.backend import onnx_graph
from medrefine_lab.benchmarks.page import Page, add_page_option

#: ONNX Runtime settings tried: (graph optimisation level, intra-op threads; 0 = its default).
ORT_CONFIGS = (("all", 0), ("all", 2), ("extended", 2), ("basic", 2), ("all", 1))


@dataclass(frozen=True)
class BackendFigures:
    """set_image times (ms) of one configuration on one case."""

    case: str
    config: str
    times_ms: tuple[float, ...]
    agreement: float  # share of pixels whose label equals PyTorch's

    @property
    def median(self) -> float:
        return float(np.median(self.times_ms))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.times_ms, 95))


def _extractors(
    model: mr.SplitModel, configs: Sequence[tuple[str, int]]
) -> dict[str, FeatureExtractor]:
    graph = onnx_graph(model)
    out: dict[str, FeatureExtractor] = {"torch eager": TorchBackend(model.backbone)}
    for level, threads in configs:
        backend = OnnxRuntimeBackend(graph, ["CPUExecutionProvider"], threads, level)
        out[f"onnxruntime {level}, {threads or 'default'} threads"] = backend
    return out


def measure(
    case: str,
    image: np.ndarray,
    model_name: str,
    repeats: int,
    configs: Sequence[tuple[str, int]] = ORT_CONFIGS,
) -> list[BackendFigures]:
    """Time ``set_image`` of ``image`` ``repeats`` times per configuration (PyTorch first)."""
    model = mr.load_model(model_name)
    sessions = {
        name: mr.Session(model, cache=FeatureCache(max_bytes=0), backend=extractor)
        for name, extractor in _extractors(model, configs).items()
    }
    masks = {name: s.set_image(image) for name, s in sessions.items()}  # warm-up, untimed
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            t = time.perf_counter()
            session.set_image(image)
            times[name].append(1000 * (time.perf_counter() - t))
    reference = masks["torch eager"]
    return [
        BackendFigures(case, name, tuple(times[name]), float((masks[name] == reference).mean()))
        for name in sessions
    ]


def machine() -> str:
    """One line naming the machine and the library versions."""
    import onnxruntime as ort  # optional dependency ([cpu] or [gpu]); only this command needs it

    return (
        f"{platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{ort.__version__}"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``backends`` on the ``medrefine bench`` subparsers."""
    parser = sub.add_parser("backends", help="set_image: PyTorch eager vs ONNX Runtime (CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed set_image per config")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--case", choices=("2d", "3d", "both"), default="both")
    add_page_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print median/p95 per configuration and the ratio to PyTorch eager."""
    from medrefine_lab.benchmarks.engine import case_2d, case_3d

    torch.set_num_threads(args.threads)
    cases = {"2d": (case_2d, "nuclei-fluo-unet2d"), "3d": (case_3d, "hippocampus-unet3d")}
    chosen = list(cases) if args.case == "both" else [args.case]
    page = Page.from_args(args, "backends")
    page.text(machine())
    for key in chosen:
        make, model_name = cases[key]
        case = make()
        rows = measure(case.case_id, case.image, model_name, args.repeats)
        base = rows[0].median
        table = Table(title=f"set_image, {case.case_id} ({model_name}), {args.repeats} runs each")
        for col in ("backend", "median ms", "p95 ms", "torch / this", "mask agreement"):
            table.add_column(col)
        for r in rows:
            ratio = f"{base / r.median:.2f}x"
            table.add_row(r.config, f"{r.median:.0f}", f"{r.p95:.0f}", ratio, f"{r.agreement:.4%}")
        page.table(table)
    page.write()
    return 0
