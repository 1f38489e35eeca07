"""What a network must do before it is split, and what the split must then do.

The network, run as its owner runs it (its modes as given, on a copy: :mod:`.modes`), must run
on a probe input and return one logits tensor ``(1, K, *spatial)`` with the input's spatial
shape (:func:`reference`). The split, run as a session runs it (eval mode), must reproduce that
output; where it does not, a second run of the network tells a random network (dropout left
on) from a split that computes otherwise (:func:`agree`). Each failure is an
:class:`~medrefine.errors.UnsupportedModelError` naming the rule and the remedy.

Tensors are channel-first, spatial axes in array order: ``(1, C, y, x)`` or ``(1, C, z, y, x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medrefine.errors import UnsupportedModelError, first_line

__all__ = ["agree", "check_classes", "check_output_shape", "first_conv", "probe", "reference"]

_TOLERANCE = 1e-4  # relative and absolute: float rounding, never a changed layer


def first_conv(net: nn.Module) -> tuple[str, nn.modules.conv._ConvNd] | None:
    """The dotted name and module of ``net``'s first convolution, or None."""
    return next(
        ((n, m) for n, m in net.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None
    )


def probe(net: nn.Module, spatial_dims: int, multiple: int = 1) -> torch.Tensor:
    """Random input ``(1, C, *spatial)`` float32 (seed 0): 64 pixels per axis in 2D, 32 in 3D, at
    least two ``multiple``; C read off the first submodule with ``in_channels``."""
    channels = next(
        (
            int(getattr(m, "in_channels"))  # noqa: B009
            for m in net.modules()
            if isinstance(getattr(m, "in_channels", None), int)
        ),
        None,
    )
    if channels is None:
        raise UnsupportedModelError("cannot tell the network's input channels; pass example=")
    gen = torch.Generator().manual_seed(0)
    size = max(64 if spatial_dims == 2 else 32, 2 * multiple)
    return torch.randn((1, channels) + (size,) * spatial_dims, generator=gen)


def _failure(
    net: nn.Module, x: torch.Tensor, spatial_dims: int, given: bool, exc: Exception
) -> str:
    what = "the example input" if given else "a probe input (random values)"
    head = f"{type(net).__name__} fails on {what} of shape {tuple(x.shape)}: {first_line(exc)}"
    conv = first_conv(net)
    if conv is not None and len(conv[1].kernel_size) != spatial_dims:
        name, module = conv
        dims = len(module.kernel_size)
        return (
            f"{head}; spatial_dims={spatial_dims}, but its first convolution {name!r} is a "
            f"{type(module).__name__} ({dims} spatial axes): pass spatial_dims={dims}"
        )
    if given:
        return f"{head}; pass an example of a shape the network takes"
    return (
        f"{head}; pass example= with an input the network takes (e.g. one of its training "
        "size), or a Preprocessing whose multiple its downsampling needs"
    )


def _one_tensor(out: object) -> torch.Tensor:
    """``out`` if it is one tensor; else the refusal naming what it is and the remedy."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        keys = list(out)
        key = "out" if "out" in out else keys[0] if keys else "out"
        extra = [k for k in keys if k != key]
        aux = f" ({extra} besides the logits: auxiliary outputs are for training)" if extra else ""
        raise UnsupportedModelError(
            f"the network returns a dict with keys {keys}{aux}, not one logits tensor; split a "
            f"module whose forward returns the logits alone, e.g. net(x)[{key!r}] "
            "(torchvision's segmentation models)"
        )
    if isinstance(out, (tuple, list)):
        raise UnsupportedModelError(
            f"the network returns a {type(out).__name__} of {len(out)} items, not one logits "
            "tensor (deep supervision or auxiliary outputs are for training); split a module "
            "whose forward returns the full-resolution logits alone, e.g. net(x)[0]"
        )
    raise UnsupportedModelError(
        f"the network returns a {type(out).__name__}, not a logits tensor (1, K, *spatial)"
    )


def check_output_shape(out: Sequence[int], x: Sequence[int]) -> None:
    """Refuse an output whose spatial shape is not the input's (both ``(1, *, *spatial)``).

    The session pads an image to the preprocessing's multiple, runs the network and cuts its
    output back to the image, pixel for pixel: the output must be ``(1, K, *spatial)`` with the
    input's spatial shape.
    """
    out, x = tuple(int(n) for n in out), tuple(int(n) for n in x)
    if len(out) == len(x) and out[2:] == x[2:]:
        return
    rule = (
        f"the network's output {out} does not have the spatial shape of its input {x}: "
        "medrefine needs one logit per input pixel, (1, K, *spatial) with the input's spatial "
        "shape"
    )
    if len(out) != len(x):
        raise UnsupportedModelError(f"{rule}; its output has {len(out)} axes, not {len(x)}")
    lost = [a - b for a, b in zip(x[2:], out[2:], strict=True)]
    factors = {a / b for a, b in zip(x[2:], out[2:], strict=True) if b}
    if len(factors) == 1 and (f := factors.pop()) > 1 and f == int(f):
        fix = (
            f"it is {int(f)} times smaller, as after a strided layer: upsample the logits to the "
            "input's size at the end of forward (F.interpolate(logits, size=x.shape[2:], "
            "mode='bilinear' or 'trilinear'))"
        )
    elif all(n > 0 and n % 2 == 0 for n in lost):
        fix = (
            f"it lost {[n // 2 for n in lost]} pixels at each border, as convolutions without "
            "padding do: give them padding=kernel_size // 2, or wrap the network in a module "
            "that pads its input by that border (F.pad, mode='reflect') before running it"
        )
    else:
        fix = "make its output the input's size (pad its convolutions, or upsample the logits)"
    raise UnsupportedModelError(f"{rule}; {fix}")


def reference(net: nn.Module, x: torch.Tensor, spatial_dims: int, given: bool) -> torch.Tensor:
    """``net(x)`` as its owner runs it (the modes it has), checked: one tensor of the input's
    spatial shape. ``given``: ``x`` is the user's example (else a :func:`probe`). Run it on a
    copy: a train-mode norm updates its running statistics."""
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # the network itself cannot take this input
        raise UnsupportedModelError(_failure(net, x, spatial_dims, given, exc)) from exc
    want = _one_tensor(out)
    check_output_shape(want.shape, x.shape)
    return want


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape != b.shape or not torch.allclose(a, b, rtol=_TOLERANCE, atol=_TOLERANCE)


def agree(
    want: torch.Tensor, backbone: nn.Module, head: nn.Module, net: nn.Module, x: torch.Tensor
) -> int:
    """Check that ``head(*backbone(x))`` (in eval mode, as a session runs them) reproduces
    ``want``, the :func:`reference` output of ``net`` (whose norms may since have become
    per-image ones, the same values); returns its channel count. Where they differ, ``net``
    runs again to tell a random network from a split that computes otherwise."""
    try:
        with torch.no_grad():
            got = head(*backbone(x))
    except Exception as exc:  # the split graph fails where the network runs
        raise UnsupportedModelError(
            f"the split network fails on an input of shape {tuple(x.shape)}, on which the "
            f"network runs: {first_line(exc)}; torch.fx may have traced data-dependent control "
            "flow wrongly (a branch on a value, a size or isinstance(x, torch.Tensor))"
        ) from exc
    if not isinstance(got, torch.Tensor):
        raise UnsupportedModelError(
            f"backbone + head return a {type(got).__name__}: torch.fx traced the network's "
            "forward differently from how it runs"
        )
    if not _differs(want, got):
        return int(want.shape[1])
    with torch.no_grad():
        again = _one_tensor(net(x))
    if _differs(want, again):
        raise UnsupportedModelError(
            "the network's output changes from run to run on the same input (largest "
            f"difference {float((want - again).abs().max()):.3g}): a random operation runs, e.g. "
            "F.dropout(x, training=True) in its forward; the mask could not be reproduced or "
            "refined. Run it as at inference (no dropout)"
        )
    if want.shape != got.shape:
        raise UnsupportedModelError(
            f"backbone + head return {tuple(got.shape)}, the network {tuple(want.shape)}: "
            "torch.fx traced its forward differently from how it runs"
        )
    trained = sum(m.training for m in net.modules())
    modes = (
        f"; {trained} of its submodules run in train mode and the split runs in eval mode: "
        "a layer other than a norm or dropout that computes differently in train mode "
        "would explain it (put it in eval mode)"
        if trained
        else ""
    )
    raise UnsupportedModelError(
        "backbone + head do not reproduce the network's output (largest difference "
        f"{float((want - got).abs().max()):.3g}){modes}"
    )


def check_classes(num_classes: int, channels: int) -> None:
    """Refuse a ``num_classes`` that differs from the network's output channels (one logit per
    class, background included): a mark of a class the head has no channel for would fail."""
    if num_classes == channels:
        return
    hint = f"pass num_classes={channels}"
    if channels == 1:
        hint = "a single sigmoid channel is not supported: give the network two output logits"
    raise UnsupportedModelError(
        f"num_classes={num_classes}, but the network outputs {channels} channels (one per "
        f"class, background included); {hint}"
    )
