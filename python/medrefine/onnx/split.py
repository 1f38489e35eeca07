"""Split an ONNX network: frozen graph in ONNX Runtime, head converted to PyTorch, checked.

Used by :meth:`medrefine.SplitModel.from_onnx`. The split is verified numerically: ONNX Runtime
runs the whole network on a probe input, and the frozen graph followed by the converted head must
reproduce its output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import onnx
import torch
from torch import fx

from medrefine.backends.onnx_file import load
from medrefine.backends.onnxruntime_backend import OnnxBackbone, OnnxRuntimeBackend, model_bytes
from medrefine.errors import InputError, UnsupportedModelError, first_line
from medrefine.models.checks import check_output_shape
from medrefine.models.quiet import quiet_stderr
from medrefine.onnx.convert import convert_head
from medrefine.onnx.cut import cut_graph


@dataclass(frozen=True)
class OnnxSplit:
    """The parts of a split ONNX network.

    Attributes:
        backbone: ``backbone(x)`` -> features, running ``extractor``.
        head: the converted head, ``head(*features)`` -> logits ``(1, K, *spatial)``.
        extractor: ONNX Runtime session of the frozen graph.
        digest: hash of the frozen graph (the feature-cache key of the model).
        channels: the network's output channels (one per class), measured on the probe.
        probe: the input ``(1, C, *spatial)`` float32 the split was checked on.
    """

    backbone: OnnxBackbone
    head: fx.GraphModule
    extractor: OnnxRuntimeBackend
    digest: str
    channels: int = 0
    probe: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


class CheckedBackend(OnnxRuntimeBackend):
    """The frozen graph in ONNX Runtime, whose failures on an input are :class:`InputError`
    naming the shape and the usual remedy (ONNX Runtime raises its own exception types, e.g.
    a Concat of skip connections whose sizes differ on an odd-sized image)."""

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Feature tuple for input ``(1, C, *spatial)`` float32 (see the base class)."""
        try:
            return super().features(x)
        except Exception as exc:  # onnxruntime's Fail, InvalidArgument, RuntimeException
            if isinstance(exc, MemoryError) or type(exc).__module__.split(".")[0] != (
                "onnxruntime"
            ):
                raise
            detail = first_line(exc)
            raise InputError(
                f"ONNX Runtime cannot run the network on {tuple(x.shape)} (batch, channels, "
                f"*spatial): {detail}. If its sizes must be a multiple of the network's "
                "downsampling, pad them: from_onnx(..., preprocessing=Preprocessing("
                "spatial_dims, multiple=M))"
            ) from exc


def probe_input(model: onnx.ModelProto, spatial_dims: int, multiple: int = 1) -> torch.Tensor:
    """Random input ``(1, C, *spatial)`` float32 the network accepts.

    C and fixed spatial sizes are read off the graph input; a dynamic spatial axis gets 64 pixels
    (32 in 3D), rounded up to ``multiple``.
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    if len(sizes) >= 3 and len(sizes) != spatial_dims + 2:
        raise UnsupportedModelError(
            f"spatial_dims={spatial_dims}, but the ONNX network's input has shape {sizes} "
            f"(0 = dynamic): {len(sizes) - 2} spatial axes after batch and channels; pass "
            f"spatial_dims={len(sizes) - 2}"
        )
    if len(sizes) != spatial_dims + 2 or sizes[1] <= 0:
        raise UnsupportedModelError(
            f"cannot tell the input shape from {sizes} (0 = dynamic) for a {spatial_dims}D "
            "network with a known channel count; pass example="
        )
    default = -(-(64 if spatial_dims == 2 else 32) // multiple) * multiple
    shape = [1, sizes[1]] + [s or default for s in sizes[2:]]
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def _verify(whole: OnnxRuntimeBackend, split: OnnxSplit, x: torch.Tensor) -> int:
    """Check the split against the whole network on ``x``; returns the output's channels."""
    try:
        want = whole.features(x)[0]
    except Exception as exc:  # ONNX Runtime raises its own types for a wrong input shape
        raise UnsupportedModelError(
            f"ONNX Runtime cannot run the network on an input {tuple(x.shape)}: {exc}; "
            "pass example= with a shape the network takes"
        ) from exc
    check_output_shape(want.shape, x.shape)
    try:
        with torch.no_grad(), quiet_stderr():  # torch.fx prints its code before it raises
            got = split.head(*split.backbone(x))
    except Exception as exc:  # the converted head itself failed
        raise UnsupportedModelError(
            f"the converted head fails on the features of an input {tuple(x.shape)}: {exc}"
        ) from exc
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=tol):
        diff = (want - got).abs().max() if want.shape == got.shape else "shape"
        raise UnsupportedModelError(
            f"frozen graph + converted head do not reproduce the ONNX network (max diff {diff})"
        )
    return int(want.shape[1])


def split_onnx(
    source: onnx.ModelProto | bytes | str | os.PathLike[str],
    cut: Sequence[str],
    spatial_dims: int,
    example: torch.Tensor | None = None,
    providers: Sequence[str] | None = None,
    multiple: int = 1,
) -> OnnxSplit:
    """Cut ``source`` at ``cut`` (node or tensor names), convert the head, check the result.

    ``example`` is the probe input ``(1, C, *spatial)`` float32 (by default random, see
    :func:`probe_input`); ``multiple`` rounds the default probe size (the model's padding).
    The network's output (its first) must be logits ``(1, K, *spatial)`` of the input's
    spatial shape (:func:`medrefine.models.checks.check_output_shape`).
    """
    model = load(source)
    parts = cut_graph(model, list(cut))
    head = convert_head(parts, spatial_dims)
    extractor = CheckedBackend(parts.frozen, providers)
    split = OnnxSplit(OnnxBackbone(extractor), head, extractor, extractor.digest)
    x = example if example is not None else probe_input(model, spatial_dims, multiple)
    whole = OnnxRuntimeBackend(model_bytes(model), ["CPUExecutionProvider"])
    return replace(split, channels=_verify(whole, split, x), probe=x)
