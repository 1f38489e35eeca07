"""``medrefine export onnx | tensorrt``: the frozen backbone as a deployable engine.

    medrefine export onnx (--model NAME | --module FILE) --out DIR [--tolerance 1e-3] [--opset 17]

writes ``DIR/<name>.backbone.onnx`` and ``DIR/<name>.backbone.json`` (metadata: backbone digest,
feature names, shapes and dtypes, preprocessing, pad multiple) with
:func:`medrefine.onnx.export.export_backbone`, which runs PyTorch and ONNX Runtime on odd-sized
inputs padded as the preprocessing says and fails (exit status 2, no file) when their largest
absolute difference exceeds ``--tolerance``; the figure is printed.

``--module FILE`` is a Python file defining ``build_model()`` returning a
:class:`medrefine.SplitModel` (or a module-level ``model``).

    medrefine export tensorrt --onnx DIR --precision fp16|fp32 --min S --opt S --max S

builds ``DIR/<name>.backbone.<key>.engine`` from that export with one optimisation profile
(shapes as ``1x1x32x32x32``) through TensorRT's Python API, or reuses the engine already there
when its recorded key (ONNX hash, shapes, precision, TensorRT version, GPU name) and digest match
(:mod:`medrefine.backends.tensorrt_engine`). It needs TensorRT and a CUDA GPU; without them it
fails with an error naming what is missing. Not yet run on hardware.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from medrefine.errors import InputError, ResourceError


def _module_model(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"--module {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"_medrefine_export_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputError(f"--module {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "build_model"):
        return module.build_model()
    if hasattr(module, "model"):
        return module.model
    raise InputError(f"--module {path} defines neither build_model() nor model")


def _onnx(args: argparse.Namespace) -> int:
    import medrefine as mr
    from medrefine.onnx.export import export_backbone

    model = mr.load_model(args.model) if args.model else _module_model(args.module)
    if not isinstance(model, mr.SplitModel):
        raise InputError(f"--module must give a SplitModel, got {type(model).__name__}")
    if args.tolerance <= 0:
        raise InputError(f"--tolerance must be positive, got {args.tolerance}")
    result, meta = export_backbone(model, args.out, args.tolerance, args.opset)
    sizes = ", ".join("x".join(map(str, s)) for s in meta["parity"]["checked_sizes"])
    print(f"wrote {result.path} and {result.path.with_suffix('.json')}")
    print(
        f"max abs diff ONNX Runtime vs PyTorch: {result.max_abs_diff:.2e} "
        f"(tolerance {args.tolerance:g}; odd sizes {sizes}, padded to multiples of "
        f"{meta['pad_multiple']})"
    )
    return 0


def _tensorrt(args: argparse.Namespace) -> int:
    from medrefine.backends.tensorrt_engine import engine_for, missing_tensorrt, parse_shape

    why = missing_tensorrt()  # first: without TensorRT nothing else can be checked
    if why is not None:
        raise ResourceError(f"export tensorrt needs {why}: not found here")
    bounds = [getattr(args, b) for b in ("min", "opt", "max")]
    if any(b is None for b in bounds):
        raise InputError("export tensorrt needs --min, --opt and --max, e.g. 1x1x32x32x32")
    low, opt, high = (parse_shape(b) for b in bounds)
    engine, built = engine_for(args.onnx, args.precision, low, opt, high)
    print(f"{'built' if built else 'up to date'}: {engine} ({args.precision}, {low}..{high})")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``medrefine export onnx`` and ``medrefine export tensorrt`` on ``sub``."""
    export = sub.add_parser("export", help="export the frozen backbone (ONNX, TensorRT)")
    kinds = export.add_subparsers(dest="export", required=True)
    onnx = kinds.add_parser("onnx", help="backbone as ONNX plus metadata, parity-checked")
    source = onnx.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="zoo model name (see medrefine models)")
    source.add_argument("--module", type=Path, help="Python file defining build_model()")
    onnx.add_argument("--out", required=True, type=Path, help="output folder (created)")
    onnx.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest absolute difference to PyTorch accepted (default 1e-3)",
    )
    onnx.add_argument("--opset", type=int, default=17, help="ONNX operator set (17 or later)")
    onnx.set_defaults(func=_onnx)
    trt = kinds.add_parser("tensorrt", help="TensorRT engine (needs TensorRT and a GPU)")
    trt.add_argument("--onnx", required=True, type=Path, help="folder of an ONNX export")
    trt.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    for bound in ("min", "opt", "max"):
        trt.add_argument(f"--{bound}", default=None, help=f"{bound} input shape, e.g. 1x1x64x64")
    trt.set_defaults(func=_tensorrt)
