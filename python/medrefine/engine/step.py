"""The steps behind :class:`medrefine.Session`, as functions of (image state, session state).

Each step builds its whole result before anything is kept: :func:`load_image` returns a new
:class:`ImageState`; :func:`refine_step` (and :func:`medrefine.engine.classes.add_class_step`)
return a new :class:`SessionState` and, on any failure, put the head back as it was (the only
object they change in place). The session swaps the results in only once a step has returned,
so a failed call leaves it exactly as before.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from medrefine.backends import FeatureExtractor
from medrefine.engine import constraints
from medrefine.engine.admission import admit
from medrefine.engine.appearance import bin_index, class_log_likelihoods
from medrefine.engine.cache import FeatureCache, image_digest
from medrefine.engine.classes import load_head, snapshot
from medrefine.engine.distance import relative_spacing
from medrefine.engine.features import compute_features
from medrefine.engine.gate import FeatureGate, GatePlan, loop_settings, plan_gate
from medrefine.engine.head import (
    HeadRunner,
    PixelMap,
    argmax_and_max,
    last_layer,
    resize_outputs,
    rows,
)
from medrefine.engine.history import History, Interaction, PackedMask, SessionState
from medrefine.engine.limits import SessionLimits
from medrefine.engine.pointwise import as_row_head
from medrefine.engine.propagate import class_distances, fuse, propagates
from medrefine.engine.reach import class_changes, hold_unmarked, marked_classes, reach_map
from medrefine.engine.refine import RefineConfig, Refiner
from medrefine.errors import InputError, NumericalError, StateError
from medrefine.models.preprocess import zscore
from medrefine.models.split import SplitModel
from medrefine.types import Box, Click, Mark, Paint, RefineProgress, RefineResult, Scribble

if TYPE_CHECKING:
    from medrefine.site import SiteHead


def mask_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.int32


def labels_and_top(logits: torch.Tensor) -> tuple[np.ndarray, float, float]:
    """The label mask of ``(K, *shape)`` logits (first maximum wins, as
    :func:`~medrefine.engine.head.label_argmax`; uint8, int32 beyond 256 classes) and the lowest
    and highest per-pixel maximum logit, from one pass over the classes. A NaN or +inf logit
    anywhere makes the lowest or highest non-finite."""
    label, best = argmax_and_max(logits)
    low, high = torch.aminmax(best)
    return label.cpu().numpy().astype(mask_dtype(logits.shape[0])), float(low), float(high)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass
class _LazyGate:
    """The feature-similarity gate of one image, built on first use (it costs a pass over the
    features) and kept for the image's lifetime."""

    features: tuple[torch.Tensor, ...]
    pixel_map: PixelMap | None = None
    built: FeatureGate | None = field(default=None, repr=False)

    def __call__(self) -> FeatureGate:
        if self.built is None:
            self.built = FeatureGate(tuple(rows(f) for f in self.features), self.pixel_map)
        return self.built


@dataclass(frozen=True)
class ImageState:
    """Everything a session knows about its current image.

    Attributes:
        shape: spatial shape, array order (2D ``(y, x)``, 3D ``(z, y, x)``).
        image: ``(C, *shape)`` float32, each channel z-scored (edges and region growing read
            it); read-only.
        runner: evaluates the session's adapted head (``runner.head``) over the cached features.
        base: ``(K0, *shape)`` float32 logits of the pre-trained head (the network's own).
        network_mask: the network's own label mask ``shape`` (read-only).
        features_gate: the feature-similarity gate, built on first use.
        colour_cells: each pixel's colour-histogram cell for a number of bins
            (:func:`medrefine.engine.appearance.bin_index` of ``image``), kept for the
            image's lifetime once a refine with a new class asks for it.
        history: undo/redo over :class:`SessionState`.
        spacing: voxel size per spatial axis (the Volume's), None if not given.
        digest: the image's digest (hex; the feature cache's key, what a site records).
        own_classes: classes the network itself was trained on (those after them were added:
            by :meth:`medrefine.Session.add_class`, or learned by a site).
    """

    shape: tuple[int, ...]
    image: np.ndarray
    runner: HeadRunner
    base: torch.Tensor
    network_mask: np.ndarray
    features_gate: Callable[[], FeatureGate]
    colour_cells: Callable[[int], np.ndarray]
    history: History
    spacing: tuple[float, ...] | None = None
    digest: str = ""
    own_classes: int = 0

    @property
    def head(self) -> torch.nn.Module:
        return self.runner.head


def _zscore(x: np.ndarray) -> np.ndarray:
    return zscore(np.asarray(x, dtype=np.float32))  # scale-invariant (relative std floor)


def load_image(
    array: np.ndarray,
    model: SplitModel,
    backend: FeatureExtractor,
    cache: FeatureCache,
    config: RefineConfig,
    limits: SessionLimits,
    spacing: tuple[float, ...] | None = None,
    device: torch.device | None = None,
    start: SiteHead | None = None,
) -> tuple[ImageState, np.ndarray]:
    """A new image state for ``array`` (features from ``cache`` or ``backend``) and the
    network's own mask (a new writable array). Nothing outside the returned state changes.
    ``spacing`` (voxel size per spatial axis, a Volume's) makes gate distances and region
    growing physical. ``device`` holds the features and the session's head (the CPU if None;
    not yet run on a GPU, docs/deploy.md). ``start``: a site's head (and classes) to start
    from instead of the network's own; its mask is then the one returned and reset to."""
    device = torch.device("cpu") if device is None else device
    if not isinstance(array, np.ndarray):
        raise InputError(f"image must be a numpy array or Volume, got {type(array).__name__}")
    if array.dtype.kind not in "uif" or array.size == 0:
        raise InputError(
            f"image must be a non-empty numeric array, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    # One memory layout: a strided view (a channel-last image transposed) sums in another order
    # than its C-order copy, which flipped a pixel of the network's mask.
    array = np.ascontiguousarray(array)
    prep = model.preprocessing
    shape = prep.spatial_shape(array)
    limits.check_image(shape)
    relative_spacing(spacing, len(shape))  # checked here: a bad spacing fails set_image
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    where = "" if device.type == "cpu" else f"@{device}"  # features live on one device
    key = (image_digest(array), model.digest(), prep.digest() + where)
    features = cache.get(key)
    # refused here, before any backbone pass, when over the session's or machine's budget
    limits = admit(model, backend, shape, limits, cached=features is not None)
    x = prep(array)
    inside = (slice(None),) + tuple(slice(0, s) for s in shape)
    if features is None:
        # A head that is not per-pixel (a 3x3 convolution) reads features past the image's
        # edge: keep them as the network computed them on the padded input, not cut to the
        # image (which zero-pads them); the head's output is cut to the image instead.
        keep = shape if as_row_head(model.head) is not None else tuple(x.shape[2:])
        features = compute_features(backend, x, keep, prep.multiple, limits, device)
        cache.put(key, features)
    image = x[0][inside].numpy()
    image = _frozen(np.ascontiguousarray(image if prep.normalize else _zscore(image)))
    head = copy.deepcopy(model.head).to(device).eval()  # W' <- W_h, per image
    class_names = model.class_names
    if start is not None:  # the site's head: its classes, then its weights
        class_names = start.class_names
        if len(class_names) > model.num_classes:
            resize_outputs(last_layer(head, model.num_classes), len(class_names))
        head.load_state_dict(start.state)
    runner = HeadRunner(head, features, shape, config.loop.head_eval == "full")
    logits = runner.predict().cpu()
    # W0, detached: the alpha term ||W - W0|| pulls towards the pre-trained head (a clone
    # still attached to the parameters passed it no gradient; docs/design/no-weight-anchor.md).
    params0 = {k: v.detach().clone() for k, v in head.named_parameters()}
    mask, top_floor, _ = labels_and_top(logits)
    initial = SessionState(
        (),
        snapshot(head),
        params0,
        class_names,
        PackedMask.pack(mask),
        top_floor,
        (),
    )
    state = ImageState(
        shape,
        image,
        runner,
        logits,
        _frozen(mask.copy()),
        _LazyGate(runner.features, runner.pixel_map()),
        functools.lru_cache(maxsize=1)(functools.partial(_colour_cells, image)),
        History(initial, limits.history_depth),
        None if spacing is None else tuple(float(v) for v in spacing),
        key[0],
        model.num_classes,
    )
    return state, mask


def gate_plan(
    img: ImageState, config: RefineConfig, cons: constraints.Constraints, num_classes: int
) -> GatePlan:
    """The gate of one refine (see :func:`medrefine.engine.gate.plan_gate`)."""
    base = img.base
    if base.shape[0] != num_classes:  # classes added since start at the floor
        floor = torch.full((num_classes - base.shape[0], *base.shape[1:]), -1e4, device=base.device)
        base = torch.cat([base, floor])
    reach = img.history.current.reach
    spacing = relative_spacing(img.spacing, len(img.shape))
    return plan_gate(
        config, base, img.network_mask, cons, img.features_gate, reach, img.image, spacing
    )


@functools.cache
def warm_up() -> None:
    """Pay torch's one-time optimizer import (about a second) before the first refine."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def check_mark(
    img: ImageState, mark: Mark, pending: int, config: RefineConfig, limits: SessionLimits
) -> None:
    """Raise unless ``mark`` can be added (type, label, the image's bounds and dimensions,
    ``limits``; ``pending`` marks wait for the next refine)."""
    if not isinstance(mark, (Scribble, Click, Box, Paint)):
        raise InputError(f"mark must be a Scribble, Click, Box or Paint, got {mark!r}")
    state = img.history.current
    if mark.label >= len(state.class_names):
        raise InputError(
            f"mark label {mark.label} is not a class of this model "
            f"(0..{len(state.class_names) - 1}); use add_class() for a new structure"
        )
    limits.check_mark(mark, len(state.marks) + pending)
    if isinstance(mark, Box):
        constraints.build([mark], img.shape, config.marks)
    else:
        constraints.rasterize(mark, img.shape)


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


def reset_target(history: History) -> SessionState:
    """The state a reset commits: the network's own, with the interactions so far plus a reset."""
    entry = Interaction("reset")
    return replace(history.initial, history=history.current.history + (entry,))


def refine_step(
    img: ImageState,
    state: SessionState,
    pending: tuple[Mark, ...],
    config: RefineConfig,
    progress: Callable[[RefineProgress], None] | None = None,
) -> tuple[RefineResult, SessionState]:
    """Fine-tune the head on ``state.marks + pending``; the result and the state to commit.

    On any exception (a cancel from ``progress``, an injected fault, non-finite numbers) the
    head is put back to ``state.head`` and the exception propagates.

    Raises:
        StateError: no marks.
        NumericalError: the adapted head or its logits are not finite (e.g. a huge ``lr``).
    """
    marks = state.marks + pending
    if not marks:
        raise StateError("no marks: add() a scribble, click or box before refine()")
    start = time.perf_counter()
    cons = constraints.build(
        marks,
        img.shape,
        config.marks,
        img.image,
        img.network_mask,
        seed=config.loop.seed,
        spacing=img.spacing,
    )
    k = len(state.class_names)
    plan = gate_plan(img, config, cons, k)
    cfg, hold = loop_settings(config, plan, img.features_gate)
    head = img.head
    try:
        if not cfg.loop.warm_start:
            head.load_state_dict(state.params0, strict=False)
        outcome = Refiner(cfg).run(img.runner, cons, state.params0, hold, progress)
        before = outcome.honoured_before
        if not all(bool(torch.isfinite(p).all()) for p in head.parameters()):
            raise NumericalError(_diverged(cfg, "head weights"))
        logits = plan.refined(img.runner)
        scale = None
        if propagates(config.propagate, cons.label[cons.written], img.own_classes):
            scale, cap = config.propagate.scale, config.propagate.cap
            distances = torch.from_numpy(_distances(img, cons, k, config)).to(logits.device)
            found = _likelihoods(img, cons, k, config)
            likelihoods = None if found is None else torch.from_numpy(found).to(logits.device)
            weight = config.propagate.appearance
            logits = fuse(logits, distances, scale, cap, likelihoods, weight)
        for c, region in zip(cons.box_classes, cons.box_regions, strict=True):
            logits[c][~torch.from_numpy(region)] = -torch.inf
        shown = state.mask.unpack()  # the mask before this refine
        spacing = relative_spacing(img.spacing, len(img.shape))
        reach = reach_map(plan.weights, plan.wrong_index, cons, shown, cfg.gate, spacing)
        marked = marked_classes(marks)
        hold_unmarked(logits, marked, reach, shown)
        # A NaN or +inf from the adapted head reaches every pixel's maximum (the gate's
        # base + g * (adapted - base) keeps it even where g = 0).
        predicted, top_floor, top = labels_and_top(logits)
        if not (math.isfinite(top_floor) and math.isfinite(top)):
            raise NumericalError(_diverged(cfg, "logits"))
        req = cons.required
        wrong = cons.index[req][predicted.reshape(-1)[cons.index[req]] != cons.label[req]]
        mask = predicted
        if cfg.marks.write:
            mask.reshape(-1)[cons.index[cons.written]] = cons.label[cons.written]
        packed = PackedMask.pack(mask)
        result = RefineResult(
            mask=mask,
            iterations=outcome.iterations,
            satisfied=wrong.size == 0,
            wrong_marks=int(wrong.size),
            wrong_where=_frozen(np.stack(np.unravel_index(wrong, img.shape), 1).astype(np.int64)),
            marked_pixels=int(req.sum()),
            seconds=time.perf_counter() - start,
            loss_trace=outcome.loss_trace,
            mode=img.runner.mode,
            honoured_before=1.0 if not req.any() else before / int(req.sum()),
            note=_stuck_note(
                before,
                int(req.sum()) - int(wrong.size),
                int(req.sum()),
                outcome.iterations,
                outcome.loss_trace,
            ),
            propagation=scale,
            changes=class_changes(shown, mask, reach, k),
            unmarked=tuple(c for c in range(k) if c not in marked),
        )
        entry = Interaction("refine", pending, result, packed=packed)
        new = SessionState(
            marks,
            snapshot(head),
            state.params0,
            state.class_names,
            packed,
            top_floor,
            state.history + (entry,),
            max(state.reach, plan.reach or 0.0),
        )
    except BaseException:
        head.load_state_dict(state.head)  # a failed refine changes nothing
        raise
    return result, new


def _distances(
    img: ImageState, cons: constraints.Constraints, k: int, config: RefineConfig
) -> np.ndarray:
    """Each class's geodesic distance to its drawn pixels, ``(k, *shape)`` float32."""
    index, label = cons.index[cons.written], cons.label[cons.written]
    spacing = relative_spacing(img.spacing, len(img.shape))
    prop = config.propagate
    return class_distances(index, label, k, img.image, prop.edge_weight, spacing, prop.lone_margin)


def _likelihoods(
    img: ImageState, cons: constraints.Constraints, k: int, config: RefineConfig
) -> np.ndarray | None:
    """Each class's colour-model log-likelihood, ``(k, *shape)`` float32, or None when the
    fusion leaves appearance out."""
    if config.propagate.appearance <= 0:
        return None
    index, label = cons.index[cons.drawn], cons.label[cons.drawn]
    bins = config.propagate.bins
    return class_log_likelihoods(img.image, index, label, k, bins, img.colour_cells(bins))


def _colour_cells(image: np.ndarray, bins: int) -> np.ndarray:
    """:func:`~medrefine.engine.appearance.bin_index` of ``image``, read-only."""
    return _frozen(bin_index(image, bins))


def _stuck_note(
    before: int, after: int, total: int, iterations: int, losses: tuple[float, ...]
) -> str:
    """Why a refine that took steps did not move the network's prediction at the marks ("" if
    it did, took none, or every drawn pixel was already predicted as its class). ``losses`` is
    the loop's objective per step: flat means the head's output does not answer its weights."""
    if iterations == 0 or after > before or before >= total:
        return ""
    stuck = (
        f"the refinement did not move the network's prediction at the marks: {before} of "
        f"{total} drawn pixels predicted as their class before, {after} after {iterations} "
        "steps; the mask shows the marks only where they are written into it. "
    )
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) >= 2 and max(finite) - min(finite) <= 1e-6 * max(1.0, abs(finite[0])):
        return stuck + (
            "The objective did not change: the head's output does not depend on the weights "
            "being adapted. Check that the head returns logits (SplitModel.output_kind) and "
            "that it can reach the marks (cut earlier)"
        )
    return stuck + (
        "The network is confident against them there: add marks of that class nearby, or "
        "allow more steps (loop.max_iterations) or a larger step (loop.lr)"
    )


def _diverged(cfg: RefineConfig, what: str) -> str:
    return (
        f"the refinement diverged: the adapted {what} are not finite (optimizer "
        f"{cfg.loop.optimizer}, lr {cfg.loop.lr:g}); the step was rolled back, lower the "
        "learning rate"
    )
