"""A network run as its owner runs it: in the train/eval modes its submodules were given.

A session runs a split network in eval mode (the head is fine-tuned as at inference, so no
refine updates running statistics), and an ONNX export is of inference too. The layers whose
output depends on the mode are therefore made independent of it, in a copy of the network
(the owner's module is never changed):

- a norm with running statistics in train mode (``BatchNorm``, ``InstanceNorm`` with
  ``track_running_stats=True``) normalises by the input's own statistics; on a batch of one
  image that is each channel's mean and variance over the image, which is what an
  ``InstanceNorm`` without running statistics computes in every mode. It is replaced by one,
  sharing its weight and bias (:func:`per_image_norms`). A norm in eval mode keeps its
  running statistics, and one without running statistics already uses the input's in every
  mode: both stay as they are.
- a layer whose output is random in train mode (dropout with ``p > 0``, ``RReLU``, attention
  or recurrent dropout) is refused by name (:func:`refuse_random`): a network that gives
  another mask on every run cannot be reproduced or refined. Dropout is for training: put the
  layer in eval mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from medrefine.errors import UnsupportedModelError

__all__ = ["owned_copy", "per_image_norms", "random_layers", "refuse_random", "train_mode_layers"]

_INSTANCE_NORMS: dict[int, type[nn.modules.instancenorm._InstanceNorm]] = {
    1: nn.InstanceNorm1d,
    2: nn.InstanceNorm2d,
    3: nn.InstanceNorm3d,
}
_NORM_DIMS = {
    nn.BatchNorm1d: 1,
    nn.BatchNorm2d: 2,
    nn.BatchNorm3d: 3,
    nn.InstanceNorm1d: 1,
    nn.InstanceNorm2d: 2,
    nn.InstanceNorm3d: 3,
}
# TorchScript modules are not instances of their classes; they keep the class name.
_RANDOM_NAMES = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "RReLU"}
_RANDOM_NAMES |= {"FeatureAlphaDropout"}


def _kind(module: nn.Module) -> str:
    """The class name of ``module``, also for a TorchScript module (its ``original_name``)."""
    return str(getattr(module, "original_name", type(module).__name__))


def _is_random(module: nn.Module) -> bool:
    """Whether ``module`` in its current mode gives random output (train-mode dropout)."""
    if not module.training:
        return False
    if isinstance(module, nn.RReLU):
        return module.lower != module.upper
    if isinstance(module, nn.MultiheadAttention):
        return module.dropout > 0
    if isinstance(module, nn.RNNBase):
        return module.dropout > 0 and module.num_layers > 1
    if isinstance(module, nn.modules.dropout._DropoutNd) or _kind(module) in _RANDOM_NAMES:
        return float(getattr(module, "p", 0.5)) > 0  # a traced TorchScript layer hides p
    return False


def random_layers(net: nn.Module) -> list[str]:
    """Dotted names of the submodules whose output is random in their mode (``""``: ``net``)."""
    return [name for name, m in net.named_modules() if _is_random(m)]


def _named(names: list[str]) -> str:
    shown = [repr(n or "(the network itself)") for n in names[:5]]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(shown) + more


def refuse_random(net: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` naming the layers of ``net`` whose output is random
    in their mode (train-mode dropout), with the remedy."""
    names = random_layers(net)
    if names:
        raise UnsupportedModelError(
            f"{_named(names)} of {type(net).__name__} run in train mode with dropout: the "
            "network's output is random, so its mask cannot be reproduced or refined. Dropout "
            "is for training: put them in eval mode (net.eval(), or each layer's .eval())"
        )


def _uses_running_stats_in_eval_only(module: nn.Module) -> bool:
    norms = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
    return (
        isinstance(module, norms)
        and module.training
        and bool(getattr(module, "track_running_stats", False))
    )


def train_mode_layers(net: nn.Module) -> list[str]:
    """Dotted names of the submodules in train mode whose output would change in eval mode:
    norms with running statistics (``BatchNorm``, ``InstanceNorm``; also in a TorchScript
    module) and random layers."""
    found = []
    for name, m in net.named_modules():
        kind = _kind(m)  # a traced TorchScript layer hides track_running_stats: the default
        batch, instance = "BatchNorm" in kind, "InstanceNorm" in kind
        norm = (batch or instance) and bool(getattr(m, "track_running_stats", batch))
        if m.training and (norm or _is_random(m)):
            found.append(name)
    return found


def _per_image(norm: nn.modules.batchnorm._NormBase, spatial_dims: int) -> nn.Module:
    """An ``InstanceNorm`` without running statistics sharing ``norm``'s weight and bias."""
    dims = _NORM_DIMS.get(type(norm), spatial_dims)
    out = _INSTANCE_NORMS[dims](norm.num_features, eps=norm.eps, affine=norm.affine)
    if norm.affine:
        out.weight, out.bias = norm.weight, norm.bias
    return out.train(norm.training)


def per_image_norms(net: nn.Module, spatial_dims: int) -> list[str]:
    """Replace, in place, every norm of ``net`` that uses running statistics in eval mode but
    runs in train mode by an ``InstanceNorm`` without running statistics (the same values on a
    batch of one image, in every mode); returns their dotted names. ``spatial_dims`` (2 or 3)
    picks the ``InstanceNorm`` of a norm that takes any rank (``SyncBatchNorm``)."""
    swapped, made = [], dict[int, nn.Module]()  # a norm used twice is replaced by one
    for name, module in list(net.named_modules(remove_duplicate=False)):
        if not name or not _uses_running_stats_in_eval_only(module):
            continue
        assert isinstance(module, nn.modules.batchnorm._NormBase)
        parent_name, _, child = name.rpartition(".")
        if id(module) not in made:
            made[id(module)] = _per_image(module, spatial_dims)
        setattr(net.get_submodule(parent_name), child, made[id(module)])
        swapped.append(name)
    return swapped


def owned_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net``, modes kept, to split or export without changing ``net``.

    Raises:
        UnsupportedModelError: ``net`` has train-mode layers whose output is random
            (:func:`refuse_random`), or it cannot be copied.
    """
    if not isinstance(net, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(net).__name__}")
    refuse_random(net)
    try:
        with torch.no_grad():
            return copy.deepcopy(net)
    except Exception as exc:  # an attribute deepcopy cannot take (a lock, a file, a session)
        raise UnsupportedModelError(
            f"cannot copy {type(net).__name__} ({type(exc).__name__}: {exc}); the network is "
            "split from a copy so that the original is never changed: keep objects that "
            "cannot be copied (locks, open files, sessions) out of its attributes"
        ) from exc
