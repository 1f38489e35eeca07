"""Session: one image, the clinician's marks, and the head adapted to them.

Two-phase use: :meth:`Session.set_image` pays for the backbone once (or finds its features in the
cache); :meth:`Session.add` and :meth:`Session.refine` are then cheap. Every interaction (a refine,
an added class, a reset) can be undone and redone exactly: the mask, the marks and the head's
weights come back as they were.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from medrefine.backends import FeatureExtractor, TorchBackend
from medrefine.engine import constraints
from medrefine.engine.cache import FeatureCache, image_digest
from medrefine.engine.gate import FeatureGate, GatePlan, loop_settings, plan_gate
from medrefine.engine.head import (
    HeadRunner,
    channels_last,
    label_argmax,
    last_layer,
    resize_outputs,
    rows,
)
from medrefine.engine.history import History, Interaction, SessionState
from medrefine.engine.refine import RefineConfig, Refiner
from medrefine.errors import InputError, StateError
from medrefine.models.split import SplitModel
from medrefine.types import Box, Mark, RefineProgress, RefineResult, Volume

_NEW_CLASS_MARGIN = 4.0  # logits a new class starts below every other class, everywhere


@functools.cache
def _warm_up() -> None:
    """Pay torch's one-time optimizer import (about a second) before the first refine."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _mask_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.int32


class Session:
    """Interactive refinement of one image with one model.

    Args:
        model: the split network.
        config: refinement settings (a frozen :class:`RefineConfig`).
        cache: feature cache (the process-wide :meth:`FeatureCache.shared` one if None).
        backend: runs the backbone (PyTorch on the CPU if None).
    """

    def __init__(
        self,
        model: SplitModel,
        config: RefineConfig | None = None,
        *,
        cache: FeatureCache | None = None,
        backend: FeatureExtractor | None = None,
    ) -> None:
        self.model = model
        self.config = config or RefineConfig()
        self.cache = cache if cache is not None else FeatureCache.shared()
        _warm_up()
        self.backend = backend or model.extractor or TorchBackend(model.backbone)
        self._head = copy.deepcopy(model.head).eval()
        self._shape: tuple[int, ...] | None = None
        self._image: np.ndarray | None = None
        self._runner: HeadRunner | None = None
        self._feature_gate: FeatureGate | None = None
        self._pending: list[Mark] = []
        self._history: History | None = None

    # ----------------------------------------------------------------- image
    def set_image(self, image: np.ndarray | Volume) -> np.ndarray:
        """Compute (or fetch) the image's features and return the network's own mask.

        Args:
            image: ``(H, W)``, ``(C, H, W)``, ``(D, H, W)`` or ``(C, D, H, W)`` numeric array (or a
                :class:`Volume`), spatial axes in array order; finite values only.

        Returns:
            Label mask of the image's spatial shape (uint8; int32 beyond 256 classes).
        """
        array = image.array if isinstance(image, Volume) else image
        if not isinstance(array, np.ndarray):
            raise InputError(f"image must be a numpy array, got {type(array).__name__}")
        if array.dtype.kind not in "uif" or array.size == 0:
            raise InputError(
                f"image must be a non-empty numeric array, got dtype {array.dtype} "
                f"and shape {array.shape}"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InputError("image contains NaN or infinite values")
        prep = self.model.preprocessing
        shape = prep.spatial_shape(array)
        key = (image_digest(array), self.model.digest(), prep.digest())
        features = self.cache.get(key)
        x = prep(array)
        if features is None:
            features = tuple(
                channels_last(self._crop(f, x.shape[2:], shape)) for f in self.backend.features(x)
            )
            self.cache.put(key, features)
        self._shape, self._image = (
            shape,
            x[0][(slice(None),) + tuple(slice(0, s) for s in shape)].numpy(),
        )
        self._head = copy.deepcopy(self.model.head).eval()  # W' <- W_h, per image
        self._runner = HeadRunner(self._head, features, shape, self.config.head_eval == "full")
        self._feature_gate = None
        logits = self._runner.predict()
        params0 = {k: v.clone() for k, v in self._head.named_parameters()}
        mask = self._argmax(logits)
        self._history = History(
            SessionState(
                (), self._snapshot_head(), params0, self.model.class_names, mask, logits, ()
            )
        )
        self._pending = []
        return mask.copy()

    @staticmethod
    def _crop(f: torch.Tensor, padded: torch.Size, shape: tuple[int, ...]) -> torch.Tensor:
        """Drop the padding from features computed at the padded input size."""
        if tuple(f.shape[2:]) != tuple(padded):
            return f
        return f[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape)]

    def _argmax(self, logits: torch.Tensor) -> np.ndarray:
        return label_argmax(logits).astype(_mask_dtype(logits.shape[0]))

    def _snapshot_head(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self._head.state_dict().items()}

    def _require_image(self) -> SessionState:
        if self._history is None or self._shape is None:
            raise StateError("no image: call set_image() first")
        return self._history.current

    # ----------------------------------------------------------------- marks
    @property
    def num_classes(self) -> int:
        """Classes the head currently predicts (grows with :meth:`add_class`)."""
        return len(self.class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._history.current.class_names if self._history else self.model.class_names

    def add(self, mark: Mark) -> None:
        """Queue a mark for the next :meth:`refine`; checked now (bounds, label, dimensions)."""
        self._require_image()
        assert self._shape is not None
        if mark.label >= self.num_classes:
            raise InputError(
                f"mark label {mark.label} is not a class of this model "
                f"(0..{self.num_classes - 1}); use add_class() for a new structure"
            )
        if isinstance(mark, Box):
            constraints.build([mark], self._shape, self.config.constraint_config())
        else:
            constraints.rasterize(mark, self._shape)
        self._pending.append(mark)

    @property
    def pending(self) -> tuple[Mark, ...]:
        """Marks added since the last refine."""
        return tuple(self._pending)

    @property
    def marks(self) -> tuple[Mark, ...]:
        """Every mark the current mask was refined on, plus the pending ones."""
        return self._require_image().marks + tuple(self._pending)

    # ---------------------------------------------------------------- refine
    def refine(self, progress: Callable[[RefineProgress], None] | None = None) -> RefineResult:
        """Fine-tune the head on every mark so far and return the new mask.

        Args:
            progress: called before every gradient step with a :class:`RefineProgress`; if it
                raises (e.g. :class:`~medrefine.errors.CancelledError` on a client's cancel or
                a deadline), the refine stops and the session is exactly as before the call.
        """
        state = self._require_image()
        assert self._runner is not None and self._shape is not None and self._image is not None
        marks = state.marks + tuple(self._pending)
        if not marks:
            raise StateError("no marks: add() a scribble, click or box before refine()")
        start = time.perf_counter()
        cfg = self.config
        assert self._history is not None
        cons = constraints.build(
            marks, self._shape, cfg.constraint_config(), self._image, self._history.initial.mask
        )
        plan = self._gate_plan(cons, len(state.class_names))
        cfg, hold = loop_settings(self.config, plan, self._features_gate)
        if not cfg.warm_start:
            self._head.load_state_dict(state.params0, strict=False)
        try:
            outcome = Refiner(cfg).run(self._runner, cons, state.params0, hold, progress)
        except BaseException:
            self._head.load_state_dict(state.head)  # a failed refine changes nothing
            raise
        logits = plan.apply(self._runner.predict())
        for c, region in zip(cons.box_classes, cons.box_regions, strict=True):
            logits[c][~torch.from_numpy(region)] = -torch.inf
        own = self._argmax(logits)
        flat = own.reshape(-1)
        req = cons.required
        wrong = cons.index[req][flat[cons.index[req]] != cons.label[req]]
        mask = own.copy()
        if cfg.write_marks:
            mask.reshape(-1)[cons.index[cons.written]] = cons.label[cons.written]
        result = RefineResult(
            mask=mask,
            iterations=outcome.iterations,
            satisfied=wrong.size == 0,
            wrong_marks=int(wrong.size),
            wrong_where=np.stack(np.unravel_index(wrong, self._shape), 1).astype(np.int64),
            marked_pixels=int(req.sum()),
            seconds=time.perf_counter() - start,
            loss_trace=outcome.loss_trace,
            mode=self._runner.mode,
        )
        entry = Interaction("refine", tuple(self._pending), result)
        self._commit(
            SessionState(
                marks,
                self._snapshot_head(),
                state.params0,
                state.class_names,
                mask,
                logits,
                state.history + (entry,),
                max(state.reach, plan.reach or 0.0),
            )
        )
        return result

    def _features_gate(self) -> FeatureGate:
        """The feature-similarity gate of this image, built on first use."""
        assert self._runner is not None
        if self._feature_gate is None:
            self._feature_gate = FeatureGate(tuple(rows(f) for f in self._runner.features))
        return self._feature_gate

    def _gate_plan(self, cons: constraints.Constraints, num_classes: int) -> GatePlan:
        assert self._history is not None and self._runner is not None
        initial = self._history.initial
        base = initial.logits
        if base.shape[0] != num_classes:  # classes added since start at the floor
            floor = torch.full((num_classes - base.shape[0], *base.shape[1:]), -1e4)
            base = torch.cat([base, floor])
        return plan_gate(
            self.config,
            base,
            initial.mask,
            cons,
            self._features_gate,
            self._history.current.reach,
            self._image,
        )

    def add_class(self, name: str) -> int:
        """Add an output channel for a structure the network never learned; returns its label.

        The new channel starts below every other class everywhere, so the mask is unchanged until
        marks of the new class are refined on.
        """
        state = self._require_image()
        if not name or name in state.class_names:
            raise InputError(f"class name must be new and non-empty, got {name!r}")
        k = len(state.class_names)
        layer = last_layer(self._head, k)
        resize_outputs(layer, k + 1)
        floor = float(state.logits.max(0).values.min()) - _NEW_CLASS_MARGIN
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            with torch.no_grad():
                bias[k] = floor
        params0 = {n: p.detach().clone() for n, p in self._head.named_parameters()}
        logits = torch.cat([state.logits, torch.full((1,) + state.logits.shape[1:], floor)])
        entry = Interaction("add_class", class_name=name)
        self._commit(
            replace(
                state,
                head=self._snapshot_head(),
                params0=params0,
                class_names=state.class_names + (name,),
                logits=logits,
                history=state.history + (entry,),
            )
        )
        return k

    # --------------------------------------------------------------- history
    def _commit(self, new: SessionState) -> None:
        assert self._history is not None
        self._history.commit(new)
        self._pending.clear()

    def undo(self) -> np.ndarray:
        """Go back one interaction (pending marks are dropped); returns the restored mask."""
        self._require_image()
        assert self._history is not None
        before = self.class_names
        state = self._history.undo()
        return self._restore_from(before, state)

    def redo(self) -> np.ndarray:
        """Re-apply the last undone interaction; returns its mask."""
        self._require_image()
        assert self._history is not None
        before = self.class_names
        state = self._history.redo()
        return self._restore_from(before, state)

    def reset(self) -> np.ndarray:
        """Back to the network's own mask, no marks, pre-trained head (undoable)."""
        state = self._require_image()
        assert self._history is not None
        before = self.class_names
        entry = Interaction("reset")
        self._history.commit(replace(self._history.initial, history=state.history + (entry,)))
        return self._restore_from(before, self._history.current)

    def _restore_from(self, class_names: tuple[str, ...], state: SessionState) -> np.ndarray:
        """Resize the head from ``class_names`` to ``state``'s classes and load its weights."""
        if len(state.class_names) != len(class_names):
            resize_outputs(last_layer(self._head, len(class_names)), len(state.class_names))
        self._head.load_state_dict(state.head)
        self._pending.clear()
        return state.mask.copy()

    @property
    def can_undo(self) -> bool:
        return self._history is not None and self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history is not None and self._history.can_redo

    @property
    def history(self) -> tuple[Interaction, ...]:
        """Every interaction that led to the current mask, oldest first."""
        return self._require_image().history

    @property
    def mask(self) -> np.ndarray:
        """The current mask (a copy)."""
        return self._require_image().mask.copy()

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape of the current image."""
        self._require_image()
        assert self._shape is not None
        return self._shape
