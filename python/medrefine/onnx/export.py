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
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx
import torch
from torch import nn

from medrefine.backends.onnxruntime_backend import OnnxRuntimeBackend
from medrefine.errors import InputError, UnsupportedModelError
from medrefine.models.unet import UNet
from medrefine.models.zoo import load_network

if TYPE_CHECKING:
    from medrefine.models.split import SplitModel

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


def _fresh_script(net: torch.jit.ScriptModule) -> nn.Module:
    """An independent copy of a TorchScript module (saved and loaded in memory).

    PyTorch's ONNX exporter rewrites a TorchScript module's graph in place (inlining its
    calls), and ``copy.deepcopy`` shares that graph: exported a second time, the module came
    out without module scopes in its node names, so ``scope_nodes`` found nothing. A reloaded
    copy has a graph of its own and keeps the scopes the module has.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated, and still how networks ship
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        torch.jit.save(net, buffer)
        buffer.seek(0)
        copy_: nn.Module = torch.jit.load(buffer)  # type: ignore[no-untyped-call]
    return copy_.eval()


def traceable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode that traces without warnings (TorchScript: an
    independent copy, :func:`_fresh_script`)."""
    if isinstance(net, torch.jit.ScriptModule):
        return _fresh_script(net)
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


def export_module(
    net: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    output: str | Sequence[str] = "logits",
    opset: int = 17,
    checks: Sequence[torch.Tensor] = (),
    reference: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]] | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export ``net`` (an ``nn.Module`` or TorchScript module) to ``path`` and check it.

    Args:
        net: maps ``(1, C, *spatial)`` float32 to one tensor ``(1, K, *spatial')`` (or a tuple of
            them); it is put in eval mode (the export is of inference).
        example: input used to trace, ``(1, C, *spatial)`` float32.
        output: the output's name (or one name per output of a tuple).
        opset: ONNX operator set, 17 or later.
        checks: further inputs for the parity check (other spatial sizes).
        reference: what the export must reproduce (default: ``net`` itself).
        tolerance: largest absolute difference to PyTorch accepted (the refusal states the
            difference, the output's scale and the argmax agreement, and suggests a value).

    ``net`` is exported from a copy, so exporting it again gives the same node names (module
    scopes, :func:`~medrefine.onnx.scope_nodes`). A TorchScript module has the scopes it was
    traced with (``/model/2/conv/ConvTranspose`` where the ``nn.Module`` gives
    ``/model/model.2/conv/...``) or none; :func:`~medrefine.onnx.module_nodes` cuts any export
    by parameter names.

    Raises:
        UnsupportedModelError: PyTorch cannot export ``net`` (no file is left at ``path``);
            ONNX Runtime differs from PyTorch by more than ``tolerance`` (no file is left);
            ONNX Runtime cannot run the export (its error is in the message and the file is
            kept beside ``path`` as ``*.rejected.onnx``).
    """
    if opset < 17:
        raise InputError(f"opset must be 17 or later, got {opset}")
    path, dims = Path(path), example.ndim - 2
    axes = {i + 2: a for i, a in enumerate(_AXES[dims])}
    outputs = [output] if isinstance(output, str) else list(output)
    dynamic = {"image": axes} | {o: {k: f"{o}_{a}" for k, a in axes.items()} for o in outputs}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _legacy_exporter_warnings(), torch.no_grad():
            torch.onnx.export(
                traceable(net),
                (example,),
                str(path),
                input_names=["image"],
                output_names=outputs,
                dynamic_axes=dynamic,
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
    try:
        checked = compare(path, reference or net.eval(), [example, *checks])
    except Exception as exc:  # ONNX Runtime cannot load or run the exported graph
        kept = path.with_suffix(".rejected.onnx")
        path.replace(kept)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
        raise UnsupportedModelError(
            f"ONNX Runtime cannot run the exported {type(net).__name__}: {detail}; the graph is "
            f"kept at {kept} to inspect (e.g. onnxruntime.InferenceSession on it)"
        ) from exc
    if not np.isfinite(checked.max_abs_diff) or checked.max_abs_diff > tolerance:
        path.unlink()
        raise UnsupportedModelError(_refusal(checked, tolerance))
    return ExportResult(path, ", ".join(outputs), checked.max_abs_diff)


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


def odd_sizes(spatial_dims: int, multiple: int) -> list[tuple[int, ...]]:
    """Two spatial sizes, no axis a multiple of ``multiple`` (pixels, array order), on which the
    backbone parity check runs after padding; each axis pads to at least two multiples."""
    a = max(multiple, 16)
    if spatial_dims == 2:
        return [(2 * a + 13, 3 * a + 7), (3 * a - 5, 2 * a + 1)]
    return [(2 * a + 5, 2 * a - 3, 2 * a + 9), (2 * a - 7, 2 * a + 3, 2 * a + 1)]


def _in_channels(model: SplitModel) -> int:
    if model.preprocessing.channels is not None:
        return model.preprocessing.channels
    conv = next(
        (m for m in model.backbone.modules() if isinstance(m, nn.modules.conv._ConvNd)), None
    )
    return int(conv.in_channels) if conv is not None else 1


def export_backbone(
    model: SplitModel,
    out_dir: str | os.PathLike[str],
    tolerance: float = PARITY_TOLERANCE,
    opset: int = 17,
) -> tuple[ExportResult, dict[str, Any]]:
    """Export ``model``'s backbone to ``<out_dir>/<name>.backbone.onnx`` plus the metadata JSON
    ``<name>.backbone.json``, parity-checked on :func:`odd_sizes` images padded as the model's
    preprocessing says.

    The graph takes ``"image"`` ``(1, C, *spatial)`` float32 (spatial sizes a multiple of the
    pad multiple, dynamic) and returns ``"features"`` (one output) or ``"features_0"``, ... .
    The metadata holds the backbone digest (the feature-cache identity), the ONNX file's SHA-256,
    input and feature names, shapes (spatial axes named, plus one concrete example) and dtypes,
    the preprocessing and pad multiple, the opset and the parity figure.

    Returns:
        The export and the metadata written.
    """
    prep, dims = model.preprocessing, model.spatial_dims
    channels, gen = _in_channels(model), np.random.default_rng(0)

    def image(size: Sequence[int]) -> torch.Tensor:
        return prep(gen.standard_normal((channels, *size)).astype(np.float32))

    example = image((max(64 if dims == 2 else 32, 2 * prep.multiple),) * dims)
    with torch.no_grad():
        out = model.backbone(example)
    names = ["features"] if len(out) == 1 else [f"features_{i}" for i in range(len(out))]
    folder = Path(out_dir)
    path = folder / f"{model.name}.backbone.onnx"
    (folder / f"{model.name}.backbone.json").unlink(missing_ok=True)  # never a stale one
    sizes = odd_sizes(dims, prep.multiple)
    checks = [image(s) for s in sizes]
    result = export_module(
        model.backbone, example, path, names, opset, checks, model.backbone, tolerance
    )
    axes = list(_AXES[dims])
    meta: dict[str, Any] = {
        "model": model.name,
        "onnx": path.name,
        "onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "backbone_digest": model.digest(),
        "opset": opset,
        "input": {"name": "image", "shape": [1, channels, *axes], "dtype": "float32"},
        "features": [
            {
                "name": n,
                "shape": [1, int(t.shape[1]), *[f"{n}_{a}" for a in axes]],
                "dtype": "float32",
            }
            for n, t in zip(names, out, strict=True)
        ],
        "example_shapes": {
            "image": list(example.shape),
            **{n: list(t.shape) for n, t in zip(names, out, strict=True)},
        },
        "preprocessing": asdict(prep),
        "pad_multiple": prep.multiple,
        "parity": {
            "max_abs_diff": result.max_abs_diff,
            "tolerance": tolerance,
            "checked_sizes": [list(s) for s in sizes],
        },
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    (folder / f"{model.name}.backbone.json").write_text(json.dumps(meta, indent=2) + "\n")
    return result, meta
