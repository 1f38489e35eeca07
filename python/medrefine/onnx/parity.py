"""Parity of an ONNX export with PyTorch: ONNX Runtime (CPU) runs the file on the same inputs.

:func:`checked_export` accepts an export whose largest absolute difference to the reference
stays within the tolerance (:data:`PARITY_TOLERANCE` by default) and refuses it otherwise,
stating the difference, the outputs' scale and the argmax agreement, with a suggested
tolerance. Inputs are ``(1, C, *spatial)`` float32, channel-first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrefine.backends.onnxruntime_backend import OnnxRuntimeBackend
from medrefine.errors import UnsupportedModelError, first_line

__all__ = ["PARITY_TOLERANCE", "ExportResult", "Parity", "checked_export", "compare", "parity"]

PARITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportResult:
    """An exported, checked ONNX file.

    Attributes:
        path: the ``.onnx`` file.
        output: name of its output (``"logits"`` or ``"features"``).
        max_abs_diff: largest absolute difference between ONNX Runtime and PyTorch over every
            checked input.
    """

    path: Path
    output: str
    max_abs_diff: float


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against PyTorch over every checked input and output.

    Attributes:
        max_abs_diff: largest absolute difference (``inf`` when a shape or the number of
            outputs differs).
        scale: largest absolute PyTorch value (what the difference is relative to).
        argmax_agreement: share of pixels whose channel argmax agrees, over outputs of at
            least two channels (1.0 when there are none).
    """

    max_abs_diff: float
    scale: float
    argmax_agreement: float


def compare(
    path: Path,
    reference: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    inputs: Sequence[torch.Tensor],
) -> Parity:
    """Run ONNX Runtime (CPU) on ``path`` and ``reference`` on every input; compare outputs."""
    runtime = OnnxRuntimeBackend(path, ["CPUExecutionProvider"])
    worst, scale, same, total = 0.0, 0.0, 0, 0
    for x in inputs:
        with torch.no_grad():
            want = reference(x)
        wants = (want,) if isinstance(want, torch.Tensor) else tuple(want)
        gots = runtime.features(x)
        if len(gots) != len(wants) or any(
            g.shape != w.shape for g, w in zip(gots, wants, strict=True)
        ):
            return Parity(float("inf"), 0.0, 0.0)
        for got, w in zip(gots, wants, strict=True):
            worst = max(worst, float((got - w).abs().max()))
            scale = max(scale, float(w.abs().max()))
            if w.ndim > 2 and w.shape[1] > 1:
                same += int((got.argmax(1) == w.argmax(1)).sum())
                total += w[:, 0].numel()
    return Parity(worst, scale, same / total if total else 1.0)


def parity(
    path: Path,
    reference: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    inputs: Sequence[torch.Tensor],
) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) on ``path`` and ``reference`` over
    every output (``inf`` when a shape or the number of outputs differs)."""
    return compare(path, reference, inputs).max_abs_diff


def _refusal(p: Parity, tolerance: float) -> str:
    if not np.isfinite(p.max_abs_diff):
        return "ONNX Runtime's outputs differ from PyTorch's in number or shape; not exported"
    suggest = float(f"{p.max_abs_diff * 1.5:.2g}")
    return (
        f"ONNX Runtime differs from PyTorch by {p.max_abs_diff:.3g} (> tolerance "
        f"{tolerance:g}; largest output value {p.scale:.3g}, relative "
        f"{p.max_abs_diff / max(p.scale, 1e-12):.2g}); the outputs' argmax agree on "
        f"{100 * p.argmax_agreement:.4f} % of pixels; not exported. Float rounding in a deep "
        "network reaches a few 1e-3 on real images: if that agreement is enough, pass "
        f"tolerance={suggest:g}; a large difference points at an operator exported wrongly"
    )


def checked_export(
    path: Path,
    what: str,
    outputs: Sequence[str],
    reference: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    inputs: Sequence[torch.Tensor],
    tolerance: float,
) -> ExportResult:
    """The ONNX file at ``path`` checked against ``reference`` on ``inputs`` (:func:`compare`).

    ``what`` names the exported network in the refusals, ``outputs`` the graph's outputs. Past
    ``tolerance`` the file is removed; a graph ONNX Runtime cannot run is kept beside ``path``
    as ``*.rejected.onnx``.
    """
    try:
        checked = compare(path, reference, inputs)
    except Exception as exc:  # ONNX Runtime cannot load or run the exported graph
        kept = path.with_suffix(".rejected.onnx")
        path.replace(kept)
        detail = first_line(exc, 400)
        raise UnsupportedModelError(
            f"ONNX Runtime cannot run the exported {what}: {detail}; the graph is "
            f"kept at {kept} to inspect (e.g. onnxruntime.InferenceSession on it)"
        ) from exc
    if not np.isfinite(checked.max_abs_diff) or checked.max_abs_diff > tolerance:
        path.unlink()
        raise UnsupportedModelError(_refusal(checked, tolerance))
    return ExportResult(path, ", ".join(outputs), checked.max_abs_diff)
