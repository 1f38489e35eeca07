"""Export a medrefine zoo model (or its backbone) to ONNX and check it against ONNX Runtime.

    python export/export_onnx.py --model nuclei-unet2d --out DIR [--part network|backbone|both]
                                 [--size PIXELS] [--opset 17]

Writes ``DIR/<model>.onnx`` (input ``"image"`` ``(1, C, *spatial)`` float32 with dynamic spatial
axes -> output ``"logits"`` ``(1, K, *spatial)``) and/or ``DIR/<model>.backbone.onnx`` (-> output
``"features"``, the cached head input), then prints the largest absolute difference between ONNX
Runtime and PyTorch. Exits with status 1, leaving no file, when that exceeds 1e-3.

The backbone file runs a zoo model's frozen part in ONNX Runtime, e.g.
``select_backend(load_model(name), onnx_backbone=DIR / "<model>.backbone.onnx")``; the network
file can be split back with ``SplitModel.from_onnx(path, cut=scope_nodes(path, "head"), ...)``.

For deployment, ``medrefine export onnx --model NAME --out DIR`` writes the same backbone graph
plus its metadata JSON (digest, feature shapes, preprocessing), checked on odd-sized inputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medrefine.errors import MedrefineError
from medrefine.models.zoo import list_models
from medrefine.onnx.export import PARITY_TOLERANCE, Part, export_zoo


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model name")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--part", choices=("network", "backbone", "both"), default="both")
    p.add_argument("--size", type=int, default=None, help="trace size, pixels per spatial axis")
    p.add_argument("--opset", type=int, default=17, help="ONNX operator set (17 or later)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; returns the process exit status."""
    args = _parser().parse_args(argv)
    parts: list[Part] = ["network", "backbone"] if args.part == "both" else [args.part]
    for part in parts:
        try:
            result = export_zoo(args.model, args.out, part, args.size, args.opset)
        except MedrefineError as exc:
            print(f"{args.model} ({part}): export failed: {exc}", file=sys.stderr)
            return 1
        print(
            f"{result.path}: output {result.output!r}, max abs diff vs PyTorch "
            f"{result.max_abs_diff:.2e} (limit {PARITY_TOLERANCE:g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
