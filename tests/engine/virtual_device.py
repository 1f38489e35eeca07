"""CUDA's device rules checked on the CPU: a ``TorchFunctionMode`` with virtual devices.

:class:`VirtualDevice` is a ``TorchFunctionMode`` that gives every tensor a *virtual*
device, ``"session"`` or ``"host"``, and applies CUDA's rules to the virtual devices while the
tensors physically stay on the CPU.

- Before the refines, everything the session keeps on its device is marked ``"session"``: the
  cached features, the head's parameters and buffers, and the weight snapshots of the history.
- A tensor made by medrefine code (a factory such as ``torch.zeros``/``arange``/``tensor``,
  ``torch.from_numpy``, ``.cpu()``) is ``"host"`` unless the call names a device
  (``device=``, ``.to(device)``, ``.cuda()``); ``*_like``/``new_*`` inherit their source's.
  Factories inside PyTorch's own code (the optimiser) are left unmarked (their device is
  PyTorch's business), as is anything autograd makes (gradients).
- Every other op's result is ``"session"`` if any input is, else ``"host"`` if any input is.
- A violation, as CUDA would raise one: an op mixing a ``"session"`` tensor with a ``"host"``
  tensor of at least one dimension (0-dim host tensors mix on CUDA too), a ``"session"`` tensor
  indexed into a host tensor, or ``.numpy()`` of a ``"session"`` tensor (no ``.cpu()`` first).
  Indexing a session tensor with host indices is allowed (CUDA allows it).

Why not simpler: listing every factory call without ``device=`` flags host tensors that are
legitimately on the host (indices into numpy arrays, a mask built in numpy) and misses
``.numpy()`` of a device tensor and tensors brought back with ``.cpu()``; moving factory results
to the ``meta`` device breaks every data-dependent step. The virtual devices find exactly the
ops that would fail on a GPU. What they cannot see: a device hard-coded as a ``torch.device``
(it counts as the session's), and branches that compare devices (on the CPU the session's
device equals the host's), which is why only ``refine`` runs under the mode, after
``set_image`` has built the state on the CPU.

A violation names the innermost medrefine frame (file, line, function) and the op.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

import medrefine as mr

PACKAGE = str(Path(mr.__file__).resolve().parent)
TORCH = str(Path(torch.__file__).resolve().parent)
_DISPATCH = (str(Path(TORCH) / "overrides.py"), str(Path(TORCH) / "_tensor.py"))
SESSION, HOST = "session", "host"

_FACTORIES = {
    torch.zeros,
    torch.ones,
    torch.full,
    torch.empty,
    torch.empty_strided,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.tensor,
    torch.as_tensor,
    torch.scalar_tensor,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
}
_LIKE = {
    torch.zeros_like,
    torch.ones_like,
    torch.full_like,
    torch.empty_like,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    torch.Tensor.new_zeros,
    torch.Tensor.new_ones,
    torch.Tensor.new_full,
    torch.Tensor.new_empty,
    torch.Tensor.new_tensor,
}
_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
_COPIES = {torch.Tensor.copy_}  # across devices on CUDA


@dataclass(frozen=True)
class Violation:
    """An op a GPU run would refuse: the innermost medrefine frame, the op's name, why."""

    where: str
    op: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.op}: {self.why}"


def _medrefine_frame() -> str:
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(PACKAGE):
            rel = Path(name).relative_to(PACKAGE).as_posix()
            return f"medrefine/{rel}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back  # type: ignore[assignment]
    return "outside medrefine"


def _made_by_medrefine() -> bool:
    """The code that called the torch function (past this module's and torch's dispatch
    frames) is medrefine's."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith((__file__, *_DISPATCH)):
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and frame.f_code.co_filename.startswith(PACKAGE)


def _device_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The device a ``.to(...)`` call names (a device, a name or a tensor), else None."""
    for a in (*args, kwargs.get("device"), kwargs.get("other")):
        if isinstance(a, (torch.device, str, torch.Tensor)):
            return a
    return None


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


class VirtualDevice(TorchFunctionMode):
    """CUDA's device rules on virtual devices (see the module docstring); ``violations``
    collects what a GPU run would raise."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        self.violations: list[Violation] = []
        self.devices: dict[int, tuple[torch.device, str]] = {}

    def __enter__(self) -> VirtualDevice:
        # torch.from_numpy does not dispatch to modes: wrap it while the mode is active
        original = self._from_numpy = torch.from_numpy

        def from_numpy(array: np.ndarray) -> torch.Tensor:
            out = original(array)
            if _made_by_medrefine():
                self.tags[out] = HOST
            return out

        torch.from_numpy = from_numpy
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        torch.from_numpy = self._from_numpy

    def mark(self, tensors: Iterable[torch.Tensor], tag: str = SESSION) -> None:
        """Put ``tensors`` on virtual device ``tag``."""
        for t in tensors:
            self.tags[t] = tag

    def mark_device(self, device: torch.device, tag: str = SESSION) -> None:
        """``device`` (this very object) stands for ``tag``'s virtual device."""
        self.devices[id(device)] = (device, tag)

    def device_tag(self, device: object) -> str:
        """The virtual device a device argument names: one read from a tensor (``t.device``)
        or marked is that tensor's; any other CPU device is the host."""
        known = self.devices.get(id(device))
        if known is not None and known[0] is device:
            return known[1]
        return HOST if torch.device(device).type == "cpu" else SESSION  # type: ignore[arg-type]

    def tag(self, t: torch.Tensor) -> str | None:
        """``t``'s virtual device; None for a tensor nobody marked (PyTorch's own)."""
        return self.tags.get(t)

    def _flag(self, func: Callable[..., Any], why: str) -> None:
        self.violations.append(Violation(_medrefine_frame(), _name(func), why))

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, torch.device) and args and isinstance(args[0], torch.Tensor):
            self.mark_device(out, self.tag(args[0]) or HOST)  # t.device: the device t is on
        tag = self._result_tag(func, args, kwargs)
        if tag is not None:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.tags[t] = tag
        return out

    def _result_tag(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | None:
        if func in _FACTORIES:
            if isinstance(args[0] if args else None, torch.Tensor):  # as_tensor(t): t's
                return self.tag(args[0])
            if kwargs.get("device") is not None:
                return self.device_tag(kwargs["device"])
            return HOST if _made_by_medrefine() else None
        if func in _LIKE:
            if kwargs.get("device") is not None:
                return self.device_tag(kwargs["device"])
            return self.tag(args[0])
        if getattr(func, "__self__", None) is torch._C.TensorBase.device:  # t.device
            return None
        if func is torch.Tensor.to:
            device = _device_of(args[1:], kwargs)
            if isinstance(device, torch.Tensor):
                return self.tag(device)
            if device is None:
                return self.tag(args[0])
            return self.device_tag(device)
        if func is torch.Tensor.cpu:
            return HOST
        if func is torch.Tensor.cuda:
            return SESSION
        if func in _NUMPY:
            if self.tag(args[0]) == SESSION:
                self._flag(func, "numpy() of a tensor on the session's device: .cpu() first")
            return None
        if func in _COPIES:
            return self.tag(args[0])
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            return self._indexing(func, args)
        return self._mixed(func, [t for t in tree_flatten((args, kwargs))[0]])

    def _indexing(self, func: Callable[..., Any], args: tuple[Any, ...]) -> str | None:
        target = self.tag(args[0])
        index = [t for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor)]
        if target == HOST and any(self.tag(t) == SESSION for t in index):
            self._flag(func, "a host tensor indexed with indices on the session's device")
        if func is torch.Tensor.__setitem__ and isinstance(args[2], torch.Tensor):
            value = self.tag(args[2])
            if {target, value} == {SESSION, HOST} and args[2].dim() > 0:
                self._flag(func, f"a {value} value written into a {target} tensor")
        return target

    def _mixed(self, func: Callable[..., Any], flat: list[Any]) -> str | None:
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        tags = [self.tag(t) for t in tensors]
        if SESSION in tags:
            host = [t for t, g in zip(tensors, tags, strict=True) if g == HOST and t.dim() > 0]
            if host:
                shapes = ", ".join(str(tuple(t.shape)) for t in host)
                self._flag(func, f"host tensor(s) of shape {shapes} beside session tensors")
            return SESSION
        return HOST if HOST in tags else None


def mark_session_state(mode: VirtualDevice, session: mr.Session) -> None:
    """What ``set_image`` put on the session's device: features, head, weight snapshots."""
    img = session._require_image()
    mode.mark_device(session.device)
    mode.mark(img.runner.features)
    mode.mark(img.head.parameters())
    mode.mark(img.head.buffers())
    state = img.history.current
    mode.mark(state.head.values())
    mode.mark(state.params0.values())


def refine_under_mode(session: mr.Session, marks: list[list[mr.Mark]]) -> list[Violation]:
    """Each group of marks added, then one refine, all under :class:`VirtualDevice`."""
    mode = VirtualDevice()
    mark_session_state(mode, session)
    with mode:
        for group in marks:
            for m in group:
                session.add(m)
            session.refine()
    return mode.violations


def report(violations: list[Violation]) -> str:
    """The distinct violations, one a line, for an assertion message."""
    unique = sorted({str(v) for v in violations})
    return "ops that would mix devices on a GPU:\n  " + "\n  ".join(unique)
