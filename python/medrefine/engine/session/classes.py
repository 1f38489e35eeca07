"""A session's classes and its head's weights: how many classes the head predicts, a new one for
a structure the network never learned (:meth:`medrefine.Session.add_class`), and loading a
state's head (:func:`load_head`, :func:`go` for undo, redo and reset).

Only the head's last weighted layer is extended, by one output row: that needs a head ending in a
convolution or linear layer with one output per class; anything else is refused with
:class:`~medrefine.errors.UnsupportedModelError` naming why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from medrefine.engine.head.runner import last_layer, resize_outputs
from medrefine.engine.session.history import SessionState, snapshot
from medrefine.engine.session.image import ImageState
from medrefine.errors import InputError, UnsupportedModelError
from medrefine.models.quiet import quiet_stderr
from medrefine.records import Interaction

NEW_CLASS_MARGIN = 4.0  # logits a new class starts below every other class, everywhere


def load_head(img: ImageState, state: SessionState) -> None:
    """Give the session's head ``state``'s classes and weights."""
    head = img.head
    now = output_rows(head)
    if now != len(state.class_names):
        resize_outputs(last_layer(head, now), len(state.class_names))
    head.load_state_dict(state.head)


def go(img: ImageState, target: SessionState, move: Callable[[], object]) -> np.ndarray:
    """Load ``target``'s head, then ``move`` the history to it; returns ``target``'s mask (a
    new array). On failure the head is put back and the history is not moved."""
    previous = img.history.current
    try:
        load_head(img, target)
        mask = target.mask.unpack()
        move()
    except BaseException:
        load_head(img, previous)
        raise
    return mask


def output_rows(head: torch.nn.Module) -> int:
    """Classes ``head`` predicts now: the output rows of its last weighted layer (a transposed
    convolution's weight is ``(in, out / groups, *kernel)``)."""
    for module in reversed(list(head.modules())):
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 2:
            if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
                return int(weight.shape[1]) * module.groups
            return int(weight.shape[0])
    raise InputError("the head has no weighted layer")


def extendable_layer(head: torch.nn.Module, k: int) -> torch.nn.Module:
    """The layer ``add_class`` gives one more output: the head's last weighted layer, which
    must be a convolution or linear layer with ``k`` outputs.

    Raises:
        UnsupportedModelError: naming why the head cannot take another class.
    """
    weighted = [m for m in head.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
    last = next((m for m in reversed(weighted) if getattr(m, "weight").ndim >= 2), None)  # noqa: B009
    kind = type(last).__name__
    why = ""
    if last is None:
        why = "it has no weighted layer"
    elif isinstance(last, torch.nn.modules.conv._ConvTransposeNd):
        why = f"its output layer is a transposed convolution ({kind}), not extended yet"
    elif not isinstance(last, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)):
        why = f"its last weighted layer is a {kind}, not a convolution or linear layer"
    elif int(last.weight.shape[0]) != k:
        why = (
            f"its last weighted layer ({kind}) has {int(last.weight.shape[0])} outputs, not one "
            f"per class ({k}): layers after it mix the classes"
        )
    if why:
        raise UnsupportedModelError(
            f"add_class cannot extend this head: {why}; cut the network so that the head ends "
            "in a convolution with one output per class, or mark only the existing classes"
        )
    assert last is not None
    return last


def add_class_step(img: ImageState, state: SessionState, name: str) -> SessionState:
    """A new output channel for a structure the network never learned, starting
    ``NEW_CLASS_MARGIN`` logits below every other class everywhere (the mask is unchanged).
    Returns the state to commit; on failure the head is put back."""
    head = img.head
    k = len(state.class_names)
    floor = state.top_floor - NEW_CLASS_MARGIN
    try:
        layer = extendable_layer(head, k)
        resize_outputs(layer, k + 1)
        try:  # one pixel: the head must now give k + 1 logits
            # torch.fx prints the generated code's traceback to stderr when a traced head
            # fails; the failure is expected here and becomes the typed error below.
            with torch.no_grad(), quiet_stderr():
                got = str(img.runner.evaluator(torch.zeros(1, dtype=torch.int64))().shape[-1])
        except RuntimeError as exc:  # e.g. a residual sum over the old class count
            got = f"fails ({str(exc).splitlines()[0][:120]})"
        if got != str(k + 1):
            raise UnsupportedModelError(
                f"add_class cannot extend this head: with {k + 1} outputs in its last layer it "
                f"{'still returns ' + got + ' classes' if got.isdigit() else got}; an operation "
                "after that layer fixes the class count (e.g. a residual sum): cut the network "
                "so that the head ends in its output convolution"
            )
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias[k] = floor
        params0 = {n: p.detach().clone() for n, p in head.named_parameters()}
        return replace(
            state,
            head=snapshot(head),
            params0=params0,
            class_names=state.class_names + (name,),
            history=state.history + (Interaction("add_class", class_name=name),),
        )
    except BaseException:
        load_head(img, state)
        raise
