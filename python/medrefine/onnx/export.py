"""Export PyTorch networks to ONNX, checked against ONNX Runtime right after export.

The exported graph takes ``"image"`` ``(1, C, *spatial)`` float32 (channel-first, spatial axes in
array order: y, x or z, y, x) with dynamic spatial axes, and returns ``"logits"``
``(1, K, *spatial)`` (whole network) or ``"features"`` (backbone of a zoo model: the head's input,
``(1, head_in_channels, *spatial)``). Right after export, ONNX Runtime (CPU) runs the file on the
example input and on any further check inputs (another size, to prove the axes dynamic); the
largest absolute difference to PyTorch must stay within
:data:`~medrefine.onnx.parity.PARITY_TOLERANCE` (:mod:`medrefine.onnx.parity`). The user's module
is never changed: a copy computing what it computes in its own train/eval modes is exported
(:mod:`medrefine.onnx.traceable`).

PyTorch's TorchScript-based exporter is used: the ``torch.export``-based one needs ``onnxscript``,
which medrefine does not depend on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx
import torch
from torch import nn

from medrefine.errors import InputError, UnsupportedModelError, first_line
from medrefine.models.unet import UNet
from medrefine.models.zoo import load_network
from medrefine.onnx.cut import opset_version
from medrefine.onnx.frozen import frozen_graph, input_layout, write_frozen
from medrefine.onnx.parity import PARITY_TOLERANCE, ExportResult, checked_export
from medrefine.onnx.traceable import as_owner_runs_it, traceable

if TYPE_CHECKING:
    from medrefine.models.split import SplitModel

__all__ = [
    "PARITY_TOLERANCE",
    "ExportResult",
    "Part",
    "TraceableUNet",
    "export_backbone",
    "export_module",
    "export_zoo",
    "odd_sizes",
    "traceable",
    "zoo_example_size",
]

Part = Literal["network", "backbone"]
_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


class TraceableUNet(nn.Module):
    """Trace-friendly wrapper of a :class:`medrefine.models.unet.UNet` (instance norms swapped
    for :class:`~medrefine.onnx.traceable.TraceableInstanceNorm`) returning the logits or, for
    ``part="backbone"``, the head input."""

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


def _tensors_only(net: nn.Module, out: object) -> None:
    """Refuse an output that is not a tensor or a tuple of tensors (ONNX outputs are tensors in
    order: a dict's keys would be lost)."""
    if isinstance(out, dict):
        key = "out" if "out" in out else next(iter(out), "out")
        raise UnsupportedModelError(
            f"{type(net).__name__} returns a dict with keys {list(out)}, not tensors: export a "
            f"module whose forward returns the logits alone, e.g. net(x)[{key!r}]"
        )
    items = out if isinstance(out, (tuple, list)) else (out,)
    if not all(isinstance(t, torch.Tensor) for t in items):
        kinds = sorted({type(t).__name__ for t in items})
        raise UnsupportedModelError(
            f"{type(net).__name__} returns {kinds}, not tensors: export a module that returns "
            "a tensor (or a tuple of tensors)"
        )


def _reads_its_input(path: Path, net: nn.Module) -> None:
    """Refuse (and remove) an export whose graph never reads the image: the module computed
    its output outside PyTorch, which the exporter records as a constant."""
    graph = onnx.load(str(path)).graph
    if any("image" in node.input for node in graph.node):
        return
    path.unlink()
    raise UnsupportedModelError(
        f"the export of {type(net).__name__} does not read its input: its forward computes "
        "outside PyTorch (NumPy, ONNX Runtime, Python numbers), which an export records as "
        "constants; export the PyTorch modules it runs. Not exported"
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
            them). It is never changed: a copy is exported, in eval mode (the export is of
            inference) computing what ``net`` computes in its own modes
            (:func:`~medrefine.onnx.traceable.traceable`).
        example: input used to trace, ``(1, C, *spatial)`` float32.
        output: the output's name (or one name per output of a tuple).
        opset: ONNX operator set, 17 or later.
        checks: further inputs for the parity check (other spatial sizes).
        reference: what the export must reproduce (default: a copy of ``net`` run in its own
            modes).
        tolerance: largest absolute difference to PyTorch accepted (the refusal states the
            difference, the output's scale and the argmax agreement, and suggests a value).

    ``net`` is exported from a copy, so exporting it again gives the same node names (module
    scopes, :func:`~medrefine.onnx.scope_nodes`). A TorchScript module has the scopes it was
    traced with (``/model/2/conv/ConvTranspose`` where the ``nn.Module`` gives
    ``/model/model.2/conv/...``) or none; :func:`~medrefine.onnx.module_nodes` cuts any export
    by parameter names.

    Raises:
        UnsupportedModelError: ``net`` returns a dict, not tensors; train-mode dropout (named);
            PyTorch cannot export ``net``, or its export does not read the image (computed
            outside PyTorch, so a constant; no file is left at ``path`` either way);
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
    copied = traceable(net, dims)
    reference = reference or as_owner_runs_it(net)
    with torch.no_grad():
        _tensors_only(net, reference(example))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _legacy_exporter_warnings(), torch.no_grad():
            torch.onnx.export(
                copied,
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
        detail = first_line(exc)
        raise UnsupportedModelError(
            f"PyTorch cannot export {type(net).__name__}: {detail}"
        ) from exc
    _reads_its_input(path, net)
    inputs = [example, *checks]
    return checked_export(path, type(net).__name__, outputs, reference, inputs, tolerance)


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
    A model split from ONNX (:meth:`~medrefine.SplitModel.from_onnx`) has its frozen graph
    written instead (:mod:`medrefine.onnx.frozen`), with the graph's opset, checked on its
    fixed input size if it has one, else on the odd sizes.
    The metadata holds the backbone digest (the feature-cache identity), the ONNX file's SHA-256,
    input and feature names, shapes (spatial axes named, plus one concrete example) and dtypes,
    the preprocessing and pad multiple, the opset and the parity figure.

    Returns:
        The export and the metadata written.
    """
    prep, dims = model.preprocessing, model.spatial_dims
    channels, gen = _in_channels(model), np.random.default_rng(0)
    frozen, fixed = frozen_graph(model.backbone), None
    if frozen is not None:  # split from ONNX: the frozen graph is the export
        given, fixed = input_layout(frozen)
        channels, opset = given or channels, opset_version(frozen)

    def image(size: Sequence[int]) -> torch.Tensor:
        array = gen.standard_normal((channels, *size)).astype(np.float32)
        return torch.from_numpy(array)[None] if fixed else prep(array)

    example = image(fixed or (max(64 if dims == 2 else 32, 2 * prep.multiple),) * dims)
    with torch.no_grad():
        out = model.backbone(example)
    names = ["features"] if len(out) == 1 else [f"features_{i}" for i in range(len(out))]
    folder = Path(out_dir)
    path = folder / f"{model.name}.backbone.onnx"
    (folder / f"{model.name}.backbone.json").unlink(missing_ok=True)  # never a stale one
    sizes = [fixed] if fixed else odd_sizes(dims, prep.multiple)
    checks = [image(s) for s in sizes]
    if frozen is None:
        result = export_module(
            model.backbone, example, path, names, opset, checks, model.backbone, tolerance
        )
    else:
        write_frozen(frozen, path, names)
        what = f"frozen graph of {model.name}"
        result = checked_export(path, what, names, model.backbone, [example, *checks], tolerance)
    axes: list[int | str] = list(fixed) if fixed else list(_AXES[dims])
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
                "shape": [
                    1,
                    int(t.shape[1]),
                    *(t.shape[2:] if fixed else [f"{n}_{a}" for a in axes]),
                ],
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
