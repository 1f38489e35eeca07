"""Copies of a user's network to export: as its owner runs it, traceable without warnings.

The owner's module is never changed: the exporter traces a copy in eval mode (an export is of
inference) that computes what the network computes in its own train/eval modes
(:mod:`medrefine.models.modes`: a train-mode norm with running statistics becomes per-image
statistics; train-mode dropout is refused by name), and the parity check compares the export
with another copy run in those modes (:func:`as_owner_runs_it`). A TorchScript module's layers
cannot be replaced: one whose norms or dropout run in train mode is refused by name.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from medrefine.errors import UnsupportedModelError
from medrefine.models.modes import owned_copy, per_image_norms, train_mode_layers

__all__ = ["TraceableInstanceNorm", "as_owner_runs_it", "traceable"]


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
    """An independent copy of a TorchScript module (saved and loaded in memory), modes kept.

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
    return copy_


def _refuse_train_modes(net: torch.jit.ScriptModule) -> None:
    names = train_mode_layers(net)
    if names:
        shown = ", ".join(repr(n or "(the module itself)") for n in names[:5])
        raise UnsupportedModelError(
            f"{shown} of the TorchScript module run in train mode (norms with running "
            "statistics or dropout), where they compute otherwise than the export, which is of "
            "inference; a TorchScript module's layers cannot be replaced: put the module in "
            "eval mode (.eval()) if that is how it runs, or export the nn.Module it was made from"
        )


def traceable(net: nn.Module, spatial_dims: int = 2) -> nn.Module:
    """A copy of ``net`` in eval mode computing what ``net`` computes in its own modes, that
    traces without warnings (TorchScript: an independent copy, :func:`_fresh_script`).
    ``spatial_dims`` picks the per-image norm of a ``SyncBatchNorm`` in train mode.

    Raises:
        UnsupportedModelError: train-mode dropout; train-mode norms or dropout in a
            TorchScript module.
    """
    if isinstance(net, torch.jit.ScriptModule):
        _refuse_train_modes(net)
        return _fresh_script(net).eval()
    out = owned_copy(net)
    per_image_norms(out, spatial_dims)
    _swap_norms(out)
    return out.eval()


def as_owner_runs_it(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with its modes as given, to run as the parity check's reference (a
    train-mode norm would update the running statistics of the module it runs in)."""
    if isinstance(net, torch.jit.ScriptModule):
        return _fresh_script(net)
    return owned_copy(net)
