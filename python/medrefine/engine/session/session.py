"""Session: one image, the clinician's marks, and the head adapted to them.

Two-phase use: :meth:`Session.set_image` pays for the backbone once (or finds its features in the
cache); :meth:`Session.add` and :meth:`Session.refine` are then cheap. Every interaction can be
undone and redone exactly (mask, marks, head weights). Thread-safe: every public method and
property takes the session's re-entrant lock (``threading.RLock``), so calls on one session run
one at a time; separate sessions run in parallel. Atomic: a call that raises (bad input, a
cancel, ``MemoryError``) leaves the session exactly as it was. Arrays returned are new copies or
read-only. This class holds state and lock; the work is in the modules beside it: the image
(:mod:`~medrefine.engine.session.image`), one refine as prepare, fit and finish
(:mod:`~medrefine.engine.session.refinement`), classes and undo
(:mod:`~medrefine.engine.session.classes`, :mod:`~medrefine.engine.session.history`).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from medrefine.backends import FeatureExtractor
from medrefine.engine.budget.cache import FeatureCache
from medrefine.engine.budget.features import resolve_device
from medrefine.engine.budget.limits import SessionLimits
from medrefine.engine.config import RefineConfig
from medrefine.engine.session import classes, refinement, sites
from medrefine.engine.session.backend import resolve_backend
from medrefine.engine.session.history import SessionState, reset_target
from medrefine.engine.session.image import (
    ImageState,
    accept_mask,
    check_mark,
    load_image,
    warm_up,
)
from medrefine.engine.session.locking import locked
from medrefine.engine.session.sites import SiteLike
from medrefine.errors import InputError, StateError
from medrefine.models.split import SplitModel
from medrefine.records import Interaction, SiteVersion
from medrefine.types import Mark, RefineProgress, RefineResult, Volume


def _visible(name: str) -> bool:
    """Whether ``name`` has a character that shows: not whitespace, a control or format
    character (zero-width space, joiners, direction marks), or unassigned."""
    return any(not c.isspace() and unicodedata.category(c)[0] not in "CZ" for c in name)


def _unchanged(state: SessionState) -> RefineResult:
    """The result of a refine with no new marks: ``state``'s mask and its last refine's figures,
    no gradient step (the marks were already fitted; fitting them again would move the mask)."""
    start = time.perf_counter()
    last = next(i.result for i in reversed(state.history) if i.result is not None)
    seconds = time.perf_counter() - start
    return replace(last, mask=state.mask.unpack(), iterations=0, loss_trace=(), seconds=seconds)


class Session:
    """Interactive refinement of one image with one model.

    Args:
        model: the split network.
        config: refinement settings (a frozen :class:`RefineConfig`).
        cache: feature cache (the process-wide :meth:`FeatureCache.shared` one if None).
        backend: runs the backbone: a FeatureExtractor, a name (``"auto"``, ``"torch"``,
            ``"onnxruntime"``, ``"cuda"``, ``"tensorrt"``: :mod:`~medrefine.engine.session.backend`;
            an unavailable one raises ResourceError naming what is missing), or None (the model's
            own extractor, else PyTorch on the CPU). ``session.backend.name`` says what runs.
        limits: bounds on image size, marks, classes and undo depth
            (:class:`~medrefine.engine.budget.limits.SessionLimits`; its defaults if None).
        device: where the cached features and the adapted head live (``"cpu"``, the default,
            or ``"cuda"``/``"cuda:N"``); a device PyTorch cannot use raises ResourceError
            naming why. The CUDA path has not run on a GPU yet (docs/deploy.md).
        site: a :class:`medrefine.Site` of this model: each image starts from its head where
            that head passed its held-out check (:attr:`head_source` says which and why), and
            :meth:`accept` teaches it.

    Example (a stroke of nucleus, class 1, across a shipped sample; points are ``(y, x)``):

    >>> import medrefine as mr
    >>> session = mr.Session(mr.load_model("nuclei-unet2d"))
    >>> mask = session.set_image(mr.load_sample("nuclei-stained").image)  # (C, y, x) -> (y, x)
    >>> session.add(mr.Scribble(label=1, points=[(10, 10), (10, 30)], radius=1))
    >>> result = session.refine()
    >>> result.mask.shape, bool((result.mask[10, 10:31] == 1).all()), session.can_undo
    ((256, 320), True, True)
    """

    def __init__(
        self,
        model: SplitModel,
        config: RefineConfig | None = None,
        *,
        cache: FeatureCache | None = None,
        backend: FeatureExtractor | str | None = None,
        limits: SessionLimits | None = None,
        device: str | torch.device | None = None,
        site: SiteLike | None = None,
    ) -> None:
        if not isinstance(model, SplitModel):
            raise InputError(f"model must be a SplitModel, got {type(model).__name__}")
        if config is not None and not isinstance(config, RefineConfig):
            raise InputError(f"config must be a RefineConfig, got {type(config).__name__}")
        if limits is not None and not isinstance(limits, SessionLimits):
            raise InputError(f"limits must be a SessionLimits, got {type(limits).__name__}")
        self.model = model
        self._config = config or RefineConfig()
        self.limits = limits or SessionLimits()
        self.limits.check_classes(model.num_classes)
        self.cache = cache if cache is not None else FeatureCache.shared()
        warm_up()
        self.device = resolve_device(device)
        self.backend = resolve_backend(model, backend)
        self._lock = threading.RLock()
        self._img: ImageState | None = None
        self._pending: tuple[Mark, ...] = ()
        self.site = sites.check_site(site, model)
        self._source = ("network", "no image yet")
        self._wide = False  # the site's evidence lets refinement reach wide on this image
        self._fuse = False  # refines fuse colour models seeded by the site head's mask

    @property
    @locked
    def config(self) -> RefineConfig:
        """Refinement settings the next call uses (a frozen :class:`RefineConfig`)."""
        return self._config

    @config.setter
    @locked
    def config(self, config: RefineConfig) -> None:
        """Replace the settings, under the session's lock (between two calls, never during
        one). Raises InputError for anything but a :class:`RefineConfig`; e.g.
        ``session.config = RefineConfig.shifted()`` or ``session.config.with_overrides(...)``."""
        if not isinstance(config, RefineConfig):
            raise InputError(
                f"config must be a RefineConfig (e.g. RefineConfig() or RefineConfig.shifted()), "
                f"got {type(config).__name__}"
            )
        self._config = config

    # ----------------------------------------------------------------- image
    @locked
    def set_image(
        self, image: np.ndarray | Volume, *, channels_last: bool | None = None
    ) -> np.ndarray:
        """Compute (or fetch) the image's features and return the network's own mask.

        Args:
            image: ``(H, W)``, ``(C, H, W)``, ``(D, H, W)`` or ``(C, D, H, W)`` numeric array (or a
                :class:`Volume`), spatial axes in array order; finite values only.
            channels_last: None: ``image`` is channel-first (or has no channel axis), and a
                shape that also reads as a picture with its channels last (``(3, 256, 3)``,
                or ``(47, 40, 3)`` for a 3D model) is refused; True: its last axis is the
                channels; False: channel-first whatever its sizes
                (:meth:`~medrefine.models.preprocess.Preprocessing.layout`).

        Returns:
            Label mask of the image's spatial shape (uint8; int32 beyond 256 classes), a new
            array.

        Raises:
            InputError: not a numeric array, wrong rank, NaN, an ambiguous layout, or an image
                the network cannot take. ResourceError: more pixels than ``limits.max_voxels``.
        """
        array = image.array if isinstance(image, Volume) else image
        if isinstance(array, np.ndarray):
            array = self.model.preprocessing.layout(array, channels_last)
        spacing = image.spacing if isinstance(image, Volume) else None
        start = None if self.site is None else self.site.start()
        head = None if start is None else start.head
        img, mask = load_image(
            array,
            self.model,
            self.backend,
            self.cache,
            self.config,
            self.limits,
            spacing,
            self.device,
            head,
        )
        self._img, self._pending = img, ()
        self._wide = start is not None and start.wide
        self._fuse = start is not None and start.fuse
        if start is None:
            self._source = ("network", "no site")
        else:
            source = "network" if head is None else f"site v{head.version}"
            reach = "reaches wide" if start.wide else "stays local"
            self._source = (source, f"{start.reason}; refinement {reach}: {start.wide_reason}")
        return mask

    @property
    @locked
    def head_source(self) -> tuple[str, str]:
        """Which head the current image started from, and why: ``("network", reason)`` or
        ``("site vN", its held-out check)`` (:meth:`medrefine.Site.start`)."""
        return self._source

    @locked
    def accept(self) -> SiteVersion:
        """Record the current mask as the clinician's answer for this image: the session's
        site keeps a sample of it and refits (:meth:`medrefine.Site.accept`). Returns the
        site's new version. The session itself is unchanged.

        Raises:
            StateError: no image, no site, or marks added since the last refine.
            UnsupportedModelError: a head whose features are not at the image's resolution.
        """
        return accept_mask(self._require_image(), self._pending, self.site)

    def _require_image(self) -> ImageState:
        if self._img is None:
            raise StateError("no image: call set_image() first")
        return self._img

    @property
    def _head(self) -> torch.nn.Module:
        """The adapted head of the current image (the pre-trained one before set_image)."""
        return self._img.head if self._img is not None else self.model.head

    # ----------------------------------------------------------------- marks
    @property
    @locked
    def num_classes(self) -> int:
        """Classes the head currently predicts (grows with :meth:`add_class`)."""
        return len(self.class_names)

    @property
    @locked
    def class_names(self) -> tuple[str, ...]:
        if self._img is None:
            return self.model.class_names
        return self._img.history.current.class_names

    @locked
    def add(self, mark: Mark) -> None:
        """Queue a mark for the next :meth:`refine`; checked now (type, bounds, label,
        dimensions, the session's limits).

        Raises:
            InputError: not a mark, a label the model lacks, or pixels outside the image.
            ResourceError: a radius, point count or mark count over ``limits``.
        """
        img = self._require_image()
        check_mark(img, mark, len(self._pending), self.config, self.limits)
        self._pending = self._pending + (mark,)

    @property
    @locked
    def pending(self) -> tuple[Mark, ...]:
        """Marks added since the last refine."""
        return self._pending

    @property
    @locked
    def marks(self) -> tuple[Mark, ...]:
        """Every mark the current mask was refined on, plus the pending ones."""
        return self._require_image().history.current.marks + self._pending

    # ---------------------------------------------------------------- refine
    @locked
    def refine(
        self,
        progress: Callable[[RefineProgress], None] | None = None,
        *,
        before_commit: Callable[[], None] | None = None,
    ) -> RefineResult:
        """Fine-tune the head on every mark so far and return the new mask.

        Args:
            progress: called before every gradient step with a :class:`RefineProgress`; if it
                raises (e.g. :class:`~medrefine.errors.CancelledError` on a client's cancel or
                a deadline), the refine stops and the session is exactly as before the call.
            before_commit: called once the refine is computed, just before it becomes the
                session's state; if it raises (e.g. a deadline that passed meanwhile), the
                session is exactly as before the call.

        Returns:
            The result; its ``mask`` is a new array (writing into it changes nothing here).
            With no mark added since the last refine, nothing is trained and nothing is added
            to the history: the current mask comes back unchanged, with ``iterations`` 0, an
            empty ``loss_trace`` and the last refine's ``satisfied``/``wrong_marks`` (the head
            is the one that refine left).

        Raises:
            StateError: no image or no marks. NumericalError: the step diverged (non-finite
                head or logits); it was rolled back.
        """
        img = self._require_image()
        if not self._pending and img.history.current.marks:
            return _unchanged(img.history.current)
        config = self._refine_config()
        state = img.history.current
        prepared = refinement.prepare(img, state, self._pending, config)
        with refinement.restoring(img, state):
            outcome = refinement.fit(img, state, prepared, progress)  # the gradient steps
            result, new = refinement.finish(img, state, prepared, outcome)
        if before_commit is not None:
            try:
                before_commit()
            except BaseException:
                classes.load_head(img, state)  # the head fit() trained
                raise
        self._commit(img, new)
        return result

    @locked
    def add_class(self, name: str) -> int:
        """Add an output channel for a structure the network never learned; returns its label.

        The new channel starts below every other class everywhere, so the mask is unchanged until
        marks of the new class are refined on.

        Raises:
            InputError: not a string, no visible character (empty, only spaces or other
                whitespace or invisible format characters), or an existing name.
            ResourceError: over ``limits.max_classes``.
        """
        img = self._require_image()
        state = img.history.current
        if not isinstance(name, str) or not _visible(name) or name in state.class_names:
            raise InputError(
                f"class name must be a new, non-empty string with a visible character, got {name!r}"
            )
        self.limits.check_classes(len(state.class_names) + 1)
        self._commit(img, classes.add_class_step(img, state, name))
        return len(state.class_names)

    # --------------------------------------------------------------- history
    def _refine_config(self) -> RefineConfig:
        """The config this image's refines run with: the session's, as the site's evidence
        changes it (:func:`~medrefine.engine.session.sites.fused` on an image started from a
        site head that is right over most of an image where the network is wrong in kind,
        :func:`~medrefine.engine.session.sites.widened` where the site lets refinement reach
        wide)."""
        if self._fuse:
            return sites.fused(self.config)
        return sites.widened(self.config) if self._wide else self.config

    def _commit(self, img: ImageState, new: SessionState) -> None:
        img.history.commit(new)
        self._pending = ()

    def _go(self, img: ImageState, target: SessionState, move: Callable[[], object]) -> np.ndarray:
        mask = classes.go(img, target, move)
        self._pending = ()
        return mask

    @locked
    def undo(self) -> np.ndarray:
        """Go back one interaction (pending marks are dropped); returns the restored mask (a new
        array). Raises StateError when there is nothing to undo (see ``limits.history_depth``)."""
        img = self._require_image()
        return self._go(img, img.history.undo_target(), img.history.undo)

    @locked
    def redo(self) -> np.ndarray:
        """Re-apply the last undone interaction; returns its mask (a new array)."""
        img = self._require_image()
        return self._go(img, img.history.redo_target(), img.history.redo)

    @locked
    def reset(self) -> np.ndarray:
        """Back to the network's own mask, no marks, pre-trained head (undoable); returns the
        mask (a new array)."""
        img = self._require_image()
        target = reset_target(img.history)
        return self._go(img, target, lambda: img.history.commit(target))

    @property
    @locked
    def can_undo(self) -> bool:
        return self._img is not None and self._img.history.can_undo

    @property
    @locked
    def can_redo(self) -> bool:
        return self._img is not None and self._img.history.can_redo

    @property
    @locked
    def history(self) -> tuple[Interaction, ...]:
        """Every interaction that led to the current mask, oldest first."""
        return self._require_image().history.current.history

    @property
    @locked
    def mask(self) -> np.ndarray:
        """The current mask (a new array)."""
        return self._require_image().history.current.mask.unpack()

    @property
    @locked
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of the current image."""
        return self._require_image().shape
