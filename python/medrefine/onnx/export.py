"""Export PyTorch networks to ONNX, checked against ONNX Runtime right after export.

The exported graph takes ``"image"`` ``(1, C, *spatial)`` float32 (channel-first, spatial axes in
array order: y, x or z, y, x) with dynamic spatial axes, and returns ``"logits"``
``(1, K, *spatial)`` (whole network) or ``"features"`` (backbone of a zoo model: the head's input,
``(1, head_in_channels, *spatial)``). Right after export, ONNX Runtime (CPU) runs the file on the
example input and on any further check inputs (another size, to prove the axes dynamic); the
largest absolute difference to PyTorch must stay within :data:`PARITY_TOLERANCE`.

PyTorch's TorchScript-based exporter is used: the ``torch.export``-based one needs ``onnxscript``,
which medrefine does not depend on.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from torch import nn

from medrefine.backends.onnxruntime_backend import OnnxRuntimeBackend
from medrefine.errors import InputError, UnsupportedModelError
from medrefine.models.unet import UNet
from medrefine.models.zoo import load_network

PARITY_TOLERANCE = 1e-3
Part = Literal["network", "backbone"]
_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


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


class TraceableInstanceNorm(nn.Module):
    """Instance norm calling the ATen op directly: same values, shares the module's parameters,
    and skips the Python-side shape checks that the tracer would warn about."""

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(N, C, *spatial)`` per image and channel."""
        return torch.instance_norm(
            x, self.weight, self.bias, None, None, True, 0.0, self.eps, False
        )


def _swap_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if (
            isinstance(child, nn.modules.instancenorm._InstanceNorm)
            and not child.track_running_stats
        ):
            setattr(module, name, TraceableInstanceNorm(child))
        else:
            _swap_norms(child)


def traceable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode that traces without warnings (TorchScript: as is)."""
    if isinstance(net, torch.jit.ScriptModule):
        return net
    out = copy.deepcopy(net).eval()
    _swap_norms(out)
    return out


class TraceableUNet(nn.Module):
    """Trace-friendly wrapper of a :class:`medrefine.models.unet.UNet` (instance norms swapped for
    :class:`TraceableInstanceNorm`) returning the logits or, for ``part="backbone"``, the head
    input."""

    def __init__(self, net: UNet, part: Part = "network") -> None:
        super().__init__()
        self.net, self.part = traceable(net), part

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Head input ``(1, head_in_channels, *spatial)`` for an image ``(1, C, *spatial)``."""
        assert isinstance(self.net, UNet)
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(1, K, *spatial)`` (part ``"network"``) or the head input (``"backbone"``)."""
        f = self.features(x)
        return f if self.part == "backbone" else self.net.head(f)  # type: ignore[operator]


@contextlib.contextmanager
def _legacy_exporter_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        # The TorchScript-based exporter is chosen on purpose (see the module docstring).
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
        )
        # Raised by that exporter's own internal logging set-up, not by anything we call.
        warnings.filterwarnings(
            "ignore", "The feature will be removed", DeprecationWarning, r"torch\.onnx"
        )
        # Instance norm without running statistics always uses the input's own statistics, which
        # is exactly what ONNX InstanceNormalization computes: the exported graph is correct.
        warnings.filterwarnings(
            "ignore", "ONNX export mode is set to TrainingMode.EVAL, but operator 'instance_norm'"
        )
        # TorchScript modules have no Python signature; the exporter then takes the positional
        # example input as it is, which is what we pass.
        warnings.filterwarnings(
            "ignore", "no signature found for <torch.ScriptMethod", UserWarning, r"torch\.onnx"
        )
        yield


def parity(
    path: Path, reference: Callable[[torch.Tensor], torch.Tensor], inputs: Sequence[torch.Tensor]
) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) on ``path`` and ``reference``."""
    runtime = OnnxRuntimeBackend(path, ["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            want = reference(x)
        got = runtime.features(x)[0]
        if got.shape != want.shape:
            return float("inf")
        worst = max(worst, float((got - want).abs().max()))
    return worst


def export_module(
    net: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    output: str = "logits",
    opset: int = 17,
    checks: Sequence[torch.Tensor] = (),
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ExportResult:
    """Export ``net`` (an ``nn.Module`` or TorchScript module) to ``path`` and check it.

    Args:
        net: maps ``(1, C, *spatial)`` float32 to one tensor ``(1, K, *spatial')``; it is put in
            eval mode (the export is of inference).
        example: input used to trace, ``(1, C, *spatial)`` float32.
        output: the output's name.
        opset: ONNX operator set, 17 or later.
        checks: further inputs for the parity check (other spatial sizes).
        reference: what the export must reproduce (default: ``net`` itself).

    Raises:
        UnsupportedModelError: PyTorch cannot export ``net``, or ONNX Runtime differs from
            PyTorch by more than :data:`PARITY_TOLERANCE` (no file is left at ``path``).
    """
    if opset < 17:
        raise InputError(f"opset must be 17 or later, got {opset}")
    path, dims = Path(path), example.ndim - 2
    axes = {i + 2: a for i, a in enumerate(_AXES[dims])}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _legacy_exporter_warnings(), torch.no_grad():
            torch.onnx.export(
                traceable(net),
                (example,),
                str(path),
                input_names=["image"],
                output_names=[output],
                dynamic_axes={"image": axes, output: {k: f"{output}_{a}" for k, a in axes.items()}},
                opset_version=opset,
                dynamo=False,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter raises many types; one clear error instead
        path.unlink(missing_ok=True)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnsupportedModelError(
            f"PyTorch cannot export {type(net).__name__}: {detail}"
        ) from exc
    diff = parity(path, reference or net.eval(), [example, *checks])
    if not np.isfinite(diff) or diff > PARITY_TOLERANCE:
        path.unlink()
        raise UnsupportedModelError(
            f"ONNX Runtime differs from PyTorch by {diff:.3g} (> {PARITY_TOLERANCE}); not exported"
        )
    return ExportResult(path, output, diff)


def zoo_example_size(net: UNet) -> int:
    """A small spatial size (pixels per axis) valid for ``net``: 64 in 2D, 32 in 3D, or two
    strides if that is larger."""
    return max(64 if net.config.spatial_dims == 2 else 32, 2 * net.config.stride)


def export_zoo(
    name: str,
    out_dir: str | os.PathLike[str],
    part: Part = "network",
    size: int | None = None,
    opset: int = 17,
) -> ExportResult:
    """Export zoo model ``name`` (``part="network"``: image -> logits, to ``<name>.onnx``;
    ``"backbone"``: image -> features, to ``<name>.backbone.onnx``) into ``out_dir``.

    Traced at ``size`` pixels per axis (default :func:`zoo_example_size`); the parity check
    also runs an input one stride longer on the last axis.
    """
    net = load_network(name)
    cfg = net.config
    size = size or zoo_example_size(net)
    if size % cfg.stride:
        raise InputError(f"size must be a multiple of the model's stride {cfg.stride}, got {size}")
    gen = torch.Generator().manual_seed(0)
    shape = (1, cfg.in_channels) + (size,) * cfg.spatial_dims
    longer = shape[:-1] + (size + cfg.stride,)
    example, other = torch.randn(shape, generator=gen), torch.randn(longer, generator=gen)
    suffix = ".onnx" if part == "network" else ".backbone.onnx"
    return export_module(
        TraceableUNet(net, part),
        example,
        Path(out_dir) / f"{name}{suffix}",
        "logits" if part == "network" else "features",
        opset,
        checks=[other],
        reference=net if part == "network" else net.features,
    )
