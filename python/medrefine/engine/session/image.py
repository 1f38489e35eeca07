"""A session's image: what it knows about it (:class:`ImageState`), loading one, checking a
mark against it, and handing its mask to a site.

:func:`load_image` builds a whole new :class:`ImageState` before anything is kept, so a failed
``set_image`` leaves the session as it was. One refine on the image is
:mod:`medrefine.engine.session.refinement`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from medrefine.backends import FeatureExtractor
from medrefine.engine.budget.admission import admit
from medrefine.engine.budget.cache import FeatureCache, image_digest
from medrefine.engine.budget.features import compute_features
from medrefine.engine.budget.limits import SessionLimits
from medrefine.engine.config import RefineConfig
from medrefine.engine.gate.appearance import bin_index
from medrefine.engine.gate.plan import FeatureGate
from medrefine.engine.head.context import coarse_context, context_map, offset_head
from medrefine.engine.head.pointwise import as_row_head
from medrefine.engine.head.runner import (
    HeadRunner,
    PixelMap,
    argmax_and_max,
    channels_last,
    last_layer,
    resize_outputs,
    rows,
)
from medrefine.engine.refine import constraints
from medrefine.engine.session.history import History, SessionState, snapshot
from medrefine.engine.session.sites import SiteHead, SiteLike
from medrefine.errors import InputError, StateError
from medrefine.models.preprocess import zscore
from medrefine.models.split import SplitModel
from medrefine.packed import PackedMask
from medrefine.records import SiteVersion
from medrefine.types import Box, Click, Mark, Paint, Scribble, relative_spacing


def mask_dtype(num_classes: int) -> type[np.integer]:
    return np.uint8 if num_classes <= 256 else np.int32


def labels_and_top(logits: torch.Tensor) -> tuple[np.ndarray, float, float]:
    """The label mask of ``(K, *shape)`` logits (first maximum wins, as
    :func:`~medrefine.engine.head.runner.label_argmax`; uint8, int32 beyond 256 classes) and the
    lowest and highest per-pixel maximum logit, from one pass over the classes. A NaN or +inf logit
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
            (:func:`medrefine.engine.gate.appearance.bin_index` of ``image``), kept for the
            image's lifetime once a refine with a new class asks for it.
        history: undo/redo over :class:`SessionState`.
        spacing: voxel size per spatial axis (the Volume's), None if not given.
        digest: the image's digest (hex; the feature cache's key, what a site records).
        own_classes: classes the network itself was trained on (those after them were added:
            by :meth:`medrefine.Session.add_class`, or learned by a site).
        offsets: inputs of the runner after the network's features: 1 when the session
            started from a site head with spatial context (its per-image logit offset,
            :func:`~medrefine.engine.head.context.offset_head`), else 0.
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
    offsets: int = 0

    @property
    def head(self) -> torch.nn.Module:
        return self.runner.head

    @property
    def features(self) -> tuple[torch.Tensor, ...]:
        """The network's cached features, each ``(1, C_i, *shape)`` channels-last (the
        runner's inputs less a site head's offset)."""
        inputs = self.runner.features
        return inputs[: len(inputs) - self.offsets]


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
    inputs = features
    if start is not None and start.context is not None:  # its spatial context, once per image
        grid = coarse_context(features, shape, start.windows)
        offset = channels_last(context_map(grid, start.context, shape).to(device))
        head = offset_head(head, int(start.context.shape[0]))
        inputs = (*features, offset)
    runner = HeadRunner(head, inputs, shape, config.loop.head_eval == "full")
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
        _LazyGate(runner.features[: len(features)], runner.pixel_map()),
        functools.lru_cache(maxsize=1)(functools.partial(_colour_cells, image)),
        History(initial, limits.history_depth),
        None if spacing is None else tuple(float(v) for v in spacing),
        key[0],
        model.num_classes,
        len(inputs) - len(features),
    )
    return state, mask


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


def _colour_cells(image: np.ndarray, bins: int) -> np.ndarray:
    """:func:`~medrefine.engine.gate.appearance.bin_index` of ``image``, read-only."""
    return _frozen(bin_index(image, bins))


def accept_mask(img: ImageState, pending: tuple[Mark, ...], site: SiteLike | None) -> SiteVersion:
    """Give ``site`` the current mask of ``img`` as the clinician's answer for it.

    Raises:
        StateError: no site, or marks added since the last refine (the mask shown does not
            answer them yet: refine or undo first).
    """
    if site is None:
        raise StateError(
            "no site: open the session with mr.Session(model, site=mr.Site(model)) to accept"
        )
    if pending:
        raise StateError(
            f"{len(pending)} mark(s) added since the last refine: refine() (or undo) before "
            "accept(), so that the accepted mask is the one shown"
        )
    state = img.history.current
    return site.accept(
        img.features, state.mask.unpack(), img.network_mask, state.class_names, img.digest
    )
