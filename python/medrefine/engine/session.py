"""Session: one image, the clinician's marks, and the head adapted to them.

Two-phase use: :meth:`Session.set_image` pays for the backbone once (or finds its features in the
cache); :meth:`Session.add` and :meth:`Session.refine` are then cheap. Every interaction (a refine,
an added class, a reset) can be undone and redone exactly: the mask, the marks and the head's
weights come back as they were.

A session is safe to share between threads: every public method and property takes the
session's lock (a re-entrant ``threading.RLock``), so calls on one session run one at a time,
in arrival order; separate sessions run in parallel. Every call is atomic: one that raises
(bad input, a cancel, a fault such as ``MemoryError``) leaves the session exactly as it was.
Arrays it returns are new copies or read-only. The work lives in :mod:`medrefine.engine.step`;
this class holds the state and the lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from medrefine.backends import FeatureExtractor, TorchBackend
from medrefine.engine import constraints, step
from medrefine.engine.cache import FeatureCache
from medrefine.engine.history import Interaction, SessionState
from medrefine.engine.limits import SessionLimits
from medrefine.engine.refine import RefineConfig
from medrefine.errors import InputError, StateError
from medrefine.models.split import SplitModel
from medrefine.types import Box, Click, Mark, Paint, RefineProgress, RefineResult, Scribble, Volume

_P = ParamSpec("_P")
_R = TypeVar("_R")


@functools.cache
def _warm_up() -> None:
    """Pay torch's one-time optimizer import (about a second) before the first refine."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _locked(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``method`` holding its session's lock."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class Session:
    """Interactive refinement of one image with one model.

    Args:
        model: the split network.
        config: refinement settings (a frozen :class:`RefineConfig`).
        cache: feature cache (the process-wide :meth:`FeatureCache.shared` one if None).
        backend: runs the backbone (PyTorch on the CPU if None).
        limits: bounds on image size, marks, classes and undo depth
            (:class:`~medrefine.engine.limits.SessionLimits`; its defaults if None).

    Example::

        session = mr.Session(mr.load_model("nuclei-unet2d"))
        mask = session.set_image(image)                      # (H, W) -> uint8 labels
        session.add(mr.Click(label=1, point=(40, 52)))       # (y, x)
        result = session.refine()
    """

    def __init__(
        self,
        model: SplitModel,
        config: RefineConfig | None = None,
        *,
        cache: FeatureCache | None = None,
        backend: FeatureExtractor | None = None,
        limits: SessionLimits | None = None,
    ) -> None:
        if not isinstance(model, SplitModel):
            raise InputError(f"model must be a SplitModel, got {type(model).__name__}")
        if config is not None and not isinstance(config, RefineConfig):
            raise InputError(f"config must be a RefineConfig, got {type(config).__name__}")
        if limits is not None and not isinstance(limits, SessionLimits):
            raise InputError(f"limits must be a SessionLimits, got {type(limits).__name__}")
        self.model = model
        self.config = config or RefineConfig()
        self.limits = limits or SessionLimits()
        self.limits.check_classes(model.num_classes)
        self.cache = cache if cache is not None else FeatureCache.shared()
        _warm_up()
        self.backend = backend or model.extractor or TorchBackend(model.backbone)
        self._lock = threading.RLock()
        self._img: step.ImageState | None = None
        self._pending: tuple[Mark, ...] = ()

    # ----------------------------------------------------------------- image
    @_locked
    def set_image(self, image: np.ndarray | Volume) -> np.ndarray:
        """Compute (or fetch) the image's features and return the network's own mask.

        Args:
            image: ``(H, W)``, ``(C, H, W)``, ``(D, H, W)`` or ``(C, D, H, W)`` numeric array (or a
                :class:`Volume`), spatial axes in array order; finite values only.

        Returns:
            Label mask of the image's spatial shape (uint8; int32 beyond 256 classes), a new
            array.

        Raises:
            InputError: not a numeric array, wrong rank, NaN, or an image the network cannot
                take. ResourceError: more pixels than ``limits.max_voxels``.
        """
        array = image.array if isinstance(image, Volume) else image
        spacing = image.spacing if isinstance(image, Volume) else None
        img, mask = step.load_image(
            array, self.model, self.backend, self.cache, self.config, self.limits, spacing
        )
        self._img, self._pending = img, ()
        return mask

    def _require_image(self) -> step.ImageState:
        if self._img is None:
            raise StateError("no image: call set_image() first")
        return self._img

    @property
    def _head(self) -> torch.nn.Module:
        """The adapted head of the current image (the pre-trained one before set_image)."""
        return self._img.head if self._img is not None else self.model.head

    # ----------------------------------------------------------------- marks
    @property
    @_locked
    def num_classes(self) -> int:
        """Classes the head currently predicts (grows with :meth:`add_class`)."""
        return len(self.class_names)

    @property
    @_locked
    def class_names(self) -> tuple[str, ...]:
        if self._img is None:
            return self.model.class_names
        return self._img.history.current.class_names

    @_locked
    def add(self, mark: Mark) -> None:
        """Queue a mark for the next :meth:`refine`; checked now (type, bounds, label,
        dimensions, the session's limits).

        Raises:
            InputError: not a mark, a label the model lacks, or pixels outside the image.
            ResourceError: a radius, point count or mark count over ``limits``.
        """
        img = self._require_image()
        if not isinstance(mark, (Scribble, Click, Box, Paint)):
            raise InputError(f"mark must be a Scribble, Click, Box or Paint, got {mark!r}")
        if mark.label >= self.num_classes:
            raise InputError(
                f"mark label {mark.label} is not a class of this model "
                f"(0..{self.num_classes - 1}); use add_class() for a new structure"
            )
        self.limits.check_mark(mark, len(img.history.current.marks) + len(self._pending))
        if isinstance(mark, Box):
            constraints.build([mark], img.shape, self.config.marks)
        else:
            constraints.rasterize(mark, img.shape)
        self._pending = self._pending + (mark,)

    @property
    @_locked
    def pending(self) -> tuple[Mark, ...]:
        """Marks added since the last refine."""
        return self._pending

    @property
    @_locked
    def marks(self) -> tuple[Mark, ...]:
        """Every mark the current mask was refined on, plus the pending ones."""
        return self._require_image().history.current.marks + self._pending

    # ---------------------------------------------------------------- refine
    @_locked
    def refine(self, progress: Callable[[RefineProgress], None] | None = None) -> RefineResult:
        """Fine-tune the head on every mark so far and return the new mask.

        Args:
            progress: called before every gradient step with a :class:`RefineProgress`; if it
                raises (e.g. :class:`~medrefine.errors.CancelledError` on a client's cancel or
                a deadline), the refine stops and the session is exactly as before the call.

        Returns:
            The result; its ``mask`` is a new array (writing into it changes nothing here).

        Raises:
            StateError: no image or no marks. NumericalError: the step diverged (non-finite
                head or logits); it was rolled back.
        """
        img = self._require_image()
        result, new = step.refine_step(
            img, img.history.current, self._pending, self.config, progress
        )
        self._commit(img, new)
        return result

    @_locked
    def add_class(self, name: str) -> int:
        """Add an output channel for a structure the network never learned; returns its label.

        The new channel starts below every other class everywhere, so the mask is unchanged until
        marks of the new class are refined on.

        Raises:
            InputError: an empty or existing name. ResourceError: over ``limits.max_classes``.
        """
        img = self._require_image()
        state = img.history.current
        if not isinstance(name, str) or not name or name in state.class_names:
            raise InputError(f"class name must be a new, non-empty string, got {name!r}")
        self.limits.check_classes(len(state.class_names) + 1)
        self._commit(img, step.add_class_step(img, state, name))
        return len(state.class_names)

    # --------------------------------------------------------------- history
    def _commit(self, img: step.ImageState, new: SessionState) -> None:
        img.history.commit(new)
        self._pending = ()

    def _go(
        self, img: step.ImageState, target: SessionState, move: Callable[[], object]
    ) -> np.ndarray:
        """Load ``target``'s head, then ``move`` the history to it; on failure the head is put
        back and the history is not moved."""
        previous = img.history.current
        try:
            step.load_head(img, target)
            mask = target.mask.unpack()
            move()
        except BaseException:
            step.load_head(img, previous)
            raise
        self._pending = ()
        return mask

    @_locked
    def undo(self) -> np.ndarray:
        """Go back one interaction (pending marks are dropped); returns the restored mask (a new
        array). Raises StateError when there is nothing to undo (see ``limits.history_depth``)."""
        img = self._require_image()
        return self._go(img, img.history.undo_target(), img.history.undo)

    @_locked
    def redo(self) -> np.ndarray:
        """Re-apply the last undone interaction; returns its mask (a new array)."""
        img = self._require_image()
        return self._go(img, img.history.redo_target(), img.history.redo)

    @_locked
    def reset(self) -> np.ndarray:
        """Back to the network's own mask, no marks, pre-trained head (undoable); returns the
        mask (a new array)."""
        img = self._require_image()
        history = img.history
        entry = Interaction("reset")
        target = replace(history.initial, history=history.current.history + (entry,))
        return self._go(img, target, lambda: history.commit(target))

    @property
    @_locked
    def can_undo(self) -> bool:
        return self._img is not None and self._img.history.can_undo

    @property
    @_locked
    def can_redo(self) -> bool:
        return self._img is not None and self._img.history.can_redo

    @property
    @_locked
    def history(self) -> tuple[Interaction, ...]:
        """Every interaction that led to the current mask, oldest first."""
        return self._require_image().history.current.history

    @property
    @_locked
    def mask(self) -> np.ndarray:
        """The current mask (a new array)."""
        return self._require_image().history.current.mask.unpack()

    @property
    @_locked
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of the current image."""
        return self._require_image().shape
