"""Where the adapted head may overrule the network: a per-pixel gate in [0, 1].

The refined logits are ``logits0 + g * (logits_adapted - logits0)``: the network's own prediction
where ``g = 0``, the adapted head's where ``g = 1``. The gate is built from the *contradicted*
marks, the required pixels whose class the pre-trained network gets wrong:

- ``"spatial"``: ``g = exp(-d^2 / (2 sigma^2))``, ``d`` the Euclidean distance (pixels) to the
  nearest contradicted mark (``gate.kind`` picks the gate; settings are ``RefineConfig.gate``).
- ``"feature"``: ``g = exp(-d_f^2 / tau)``, ``d_f^2`` the mean squared difference of the
  channel-standardised features of a pixel and of the nearest prototype of the contradicted
  marks (k-means centres, per class), so a correction spreads to look-alikes anywhere in the
  image and nowhere else. Features coarser than the image (a head that upsamples) are read at
  each image pixel from the feature pixel nearest to it on that feature's own grid
  (:class:`FeatureGate`, :class:`medrefine.engine.head.runner.PixelMap`), several resolutions
  included: the gate keeps the features' resolution and costs no upsampled copy of them.
- ``"adaptive"``: the spatial gate with a width set by how far the network mask is from the
  contradicted marks (:func:`adaptive_sigma`): narrow for boundary errors, global (no gate)
  when the network misses whole structures. While it is narrower than ``gate.local_width`` the
  distance is geodesic, its path cost raised by the image's gradient
  (:func:`medrefine.engine.gate.distance.edge_cost`), so a boundary correction fills the marked
  structure up to its edge and does not spill past it.
  Three guards: the width passes ``gate.anchor_reach`` only on enough contradicted pixels of two
  classes (:func:`enough_evidence`; with fewer, e.g. a click, it is ``gate.fallback``); a
  reading beyond ``gate.local_width`` opens the gate to that width, each further one doubles
  it, and only the reading after ``gate.steps`` of them makes it global; the width never
  shrinks within a session and never passes ``gate.widest`` (24 px by default: no step past the
  first; infinite for an image far from the network's training data,
  :meth:`medrefine.RefineConfig.shifted`). A gate wider than ``gate.anchor_reach`` also drops
  the anchor on unmarked pixels (:func:`loop_settings`), which would otherwise hold them at the
  network's wrong answer.

Words: a *reach* is always a distance in pixels (the adaptive width, ``GatePlan.reach``,
``gate.anchor_reach``); ``gate.factor`` is the dimensionless multiplier of the median distance;
the *network mask* is the pre-trained network's label mask of the image; *global* means no gate
(the adapted head decides everywhere). On an image with a spacing every distance is in units of
the finest axis's voxel size (:func:`medrefine.types.relative_spacing`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from medrefine.engine.config import RefineConfig
from medrefine.engine.gate.distance import euclidean_map, geodesic_map
from medrefine.engine.head.runner import HeadRunner, PixelMap
from medrefine.engine.refine.constraints import Constraints
from medrefine.types import Spacing

Rows = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class GatePlan:
    """The gate of one refine, decided before the loop from the marks and the network's mask.

    Attributes:
        base: the network's logits ``(K, *shape)`` (pre-trained head).
        weights: the gate ``(1, *shape)`` in [0, 1], or None when the adapted head decides
            everywhere (no gate, or an adaptive gate that found the network missing whole
            structures).
        reach: the adaptive gate's width in pixels (inf when global), else None.
        wrong_index, wrong_labels: the contradicted marks (flat pixel index, int64; the class
            the clinician gave them).
    """

    base: torch.Tensor
    weights: torch.Tensor | None
    reach: float | None = None
    wrong_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    wrong_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def is_global(self) -> bool:
        return self.weights is None

    def apply(self, adapted: torch.Tensor) -> torch.Tensor:
        """Refined logits ``base + g * (adapted - base)``."""
        if self.weights is None:
            return adapted
        # The mask is made where the network's logits are kept (the host); the gate is built
        # there from distance maps, the adapted logits come from the head's device.
        g, adapted = self.weights.to(self.base.device), adapted.to(self.base.device)
        out = adapted - self.base  # one whole-image temporary instead of three
        return out.mul_(g).add_(self.base)

    def refined(self, runner: HeadRunner) -> torch.Tensor:
        """Refined logits ``(K, *shape)``: :meth:`apply` on the adapted head's logits, which are
        evaluated only over the box where the gate is open when the runner can (the ``crop``
        mode, and the ``pointwise`` mode for a box under half the image; the network's logits
        are the answer everywhere else)."""
        if self.weights is None or runner.mode not in ("crop", "pointwise"):
            return self.apply(runner.predict())
        g = self.weights[0].to(self.base.device)
        axes = []
        for axis in range(g.ndim):
            other = tuple(a for a in range(g.ndim) if a != axis)
            open_ = torch.nonzero(g.amax(dim=other) > 0 if other else g > 0).reshape(-1)
            if open_.numel() == 0:
                return self.base.clone()
            axes.append((int(open_[0]), int(open_[-1]) + 1))
        lo, hi = np.asarray([a for a, _ in axes]), np.asarray([b for _, b in axes])
        if runner.mode == "pointwise" and 2 * math.prod((hi - lo).tolist()) > g.numel():
            return self.apply(runner.predict())  # half the image or more: one pass, in place
        box = (slice(None),) + tuple(slice(a, b) for a, b in axes)
        out = self.base.clone()
        base = self.base[box]
        out[box] = base + g[box[1:]] * (runner.predict_box(lo, hi).to(base.device) - base)
        return out


def plan_gate(
    config: RefineConfig,
    base: torch.Tensor,
    network_mask: np.ndarray,
    cons: Constraints,
    feature_gate: Callable[[], FeatureGate],
    min_reach: float = 0.0,
    image: np.ndarray | None = None,
    spacing: Spacing | None = None,
) -> GatePlan:
    """Decide the gate for ``cons`` given the network's logits ``base`` ``(K, *shape)`` and its
    label mask ``network_mask`` (``shape``).

    ``image`` is the normalised image ``(C, *shape)`` float32: with it, a local adaptive gate
    follows its edges (:mod:`medrefine.engine.gate.distance`); without it, the gate is Euclidean.
    ``spacing`` (from :func:`medrefine.types.relative_spacing`, None = isotropic)
    makes every distance physical, in units of the finest axis's voxel size.

    ``min_reach`` is the widest adaptive reach of the session so far (pixels): the reach never
    shrinks, so a correction made global is not taken back by a later, local mark.
    """
    gate = config.gate
    shape = cons.shape
    req = cons.required
    wrong = network_mask.reshape(-1)[cons.index[req]] != cons.label[req]
    index, labels = cons.index[req][wrong], cons.label[req][wrong]
    if gate.kind == "none":
        return GatePlan(base, None, None, index, labels)
    if gate.kind == "adaptive" and min_reach == float("inf"):  # global already
        return GatePlan(base, None, float("inf"), index, labels)
    if index.size == 0:  # the network already honours every mark
        return GatePlan(base, torch.zeros((1, *shape)), None, index, labels)
    if gate.kind == "spatial":
        g = spatial_gate(shape, index, gate.sigma, spacing=spacing)
    elif gate.kind == "adaptive":
        reach = adaptive_sigma(
            network_mask,
            index,
            labels,
            gate.sigma,
            gate.factor,
            gate.local_width / gate.factor,
            spacing,
        )
        if reach > gate.anchor_reach and not enough_evidence(labels, gate.evidence):
            reach = max(gate.sigma, gate.fallback)  # too little to act widely
        if reach > gate.local_width:  # a far reading: widen step by step, then go global
            widest = gate.local_width * 2 ** max(gate.steps - 1, 0)
            if gate.steps == 0 or min_reach >= widest:
                reach = float("inf")
            else:
                reach = gate.local_width if min_reach < gate.local_width else 2 * min_reach
        reach = min(max(min_reach, reach), gate.widest)
        if reach == float("inf"):
            return GatePlan(base, None, reach, index, labels)
        # Below local_width the gate follows edges; the wider steps are for a network that
        # misses whole structures, where the correction must spread past them.
        follow = image if reach < gate.local_width else None
        g = spatial_gate(shape, index, reach, follow, gate.edges, spacing)
        return GatePlan(base, g.reshape((1, *shape)), reach, index, labels)
    else:
        g = feature_gate()(index, gate.tau, gate.prototypes, config.loop.seed, labels)
    return GatePlan(base, g.reshape((1, *shape)), None, index, labels)


def loop_settings(
    config: RefineConfig, plan: GatePlan, feature_gate: Callable[[], FeatureGate]
) -> tuple[RefineConfig, Callable[[np.ndarray], torch.Tensor] | None]:
    """The config the loop runs with under ``plan``, and how firmly each anchor pixel (flat
    index ``(A,)``) is held at the network's answer (``(A,)`` float32 in [0, 1]; None: fully).

    An adaptive gate wider than ``gate.anchor_reach`` means the network is wrong over a wide
    area: the loop gets ``loop.wide_iterations`` and the anchor is dropped or, with
    ``gate.anchor_relax``, released where a pixel's features resemble a contradicted mark
    (``1 - similarity``).
    """
    gate, loop = config.gate, config.loop
    if gate.kind != "adaptive" or (plan.reach or 0.0) <= gate.anchor_reach:
        return config, None
    wide = replace(loop, max_iterations=max(loop.max_iterations, loop.wide_iterations))
    config = replace(config, loop=wide)
    if not (gate.anchor_relax and plan.wrong_index.size):
        return replace(config, objective=replace(config.objective, anchor_weight=0.0)), None
    fg = feature_gate()
    protos = fg.prototypes(plan.wrong_index, gate.prototypes, loop.seed, plan.wrong_labels)
    tau = gate.tau
    return config, lambda pixels: 1.0 - fg.similarity(pixels, protos, tau)


def enough_evidence(labels: np.ndarray, pixels: int) -> bool:
    """At least two classes have ``pixels`` or more contradicted mark pixels each (``labels``:
    their classes): enough for a wide gate or a global change, which a few pixels of one class
    would otherwise turn into "everything is that class"."""
    return int((np.bincount(labels) >= pixels).sum()) >= 2


def _window(
    shape: tuple[int, ...], index: np.ndarray, margin: float, spacing: Spacing | None = None
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding box of flat ``index`` grown by ``margin`` pixels (clipped; fewer voxels along a
    coarse axis of ``spacing``), and the points in it."""
    coords = np.stack(np.unravel_index(index, shape), 1)
    steps = np.ones(len(shape)) if spacing is None else np.asarray(spacing)
    pad = np.ceil(margin / steps).astype(np.int64)
    lo = np.maximum(coords.min(0) - pad, 0)
    hi = np.minimum(coords.max(0) + pad + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)), coords - lo


def spatial_gate(
    shape: tuple[int, ...],
    index: np.ndarray,
    sigma: float,
    image: np.ndarray | None = None,
    edges: float = 0.0,
    spacing: Spacing | None = None,
) -> torch.Tensor:
    """``exp(-d^2 / 2 sigma^2)`` over ``shape`` as ``(P,)`` float32; ``d`` is the distance
    (pixels; physical with ``spacing``) to the nearest of the flat ``index`` pixels: Euclidean,
    or, given the normalised ``image`` ``(C, *shape)`` and ``edges`` > 0, geodesic over its edges
    (:func:`medrefine.engine.gate.distance.edge_cost`), so the gate stops where the image
    changes. Computed in a window of 4 sigma around them (the gate is below 4e-4 beyond)."""
    limit = 4 * sigma
    window, local = _window(shape, index, float(np.ceil(limit)), spacing)
    marks = np.zeros(tuple(w.stop - w.start for w in window), dtype=bool)
    marks[tuple(local.T)] = True
    if image is None or edges <= 0:
        d = euclidean_map(marks, spacing)
    else:
        d = geodesic_map(marks, image[(slice(None), *window)], edges, limit, spacing)
    gate = np.zeros(shape, dtype=np.float32)
    # on the grid the distances were computed on, then upsampled: the same values, fewer exps
    gate[window] = d.map(lambda v: np.exp(-(v**2) / (2 * sigma * sigma))).full()
    return torch.from_numpy(gate).reshape(-1)


def adaptive_sigma(
    network_mask: np.ndarray,
    index: np.ndarray,
    labels: np.ndarray,
    floor: float,
    factor: float,
    cap: float,
    spacing: Spacing | None = None,
) -> float:
    """Gate width (a reach, pixels) from how far the network is from the contradicted marks.

    For each contradicted mark pixel of class c, the distance (pixels; physical with
    ``spacing``) to the nearest pixel the network predicts as c (``network_mask``): about 1-3
    near a boundary error, the size of the structure when the network missed it whole, infinite
    when it never predicts c. The width is ``factor`` times the median of those distances, at
    least ``floor``. Distances beyond ``cap`` are taken as infinite (they are searched in a
    window of that size).
    """
    window, local = _window(network_mask.shape, index, float(np.ceil(cap)) + 1, spacing)
    crop = network_mask[window]
    dists = np.full(index.size, np.inf)
    for c in np.unique(labels):
        sel = labels == c
        d = euclidean_map(crop == c, spacing).at(local[sel])
        dists[sel] = np.where(d <= cap, d, np.inf)
    return max(floor, factor * float(np.median(dists)))


def kmeans(x: torch.Tensor, k: int, iterations: int = 8, seed: int = 0) -> torch.Tensor:
    """At most ``k`` centres ``(k, C)`` of the rows of ``x`` (``(N, C)``), k-means++ seeded."""
    n = x.shape[0]
    if n <= k:
        return x.clone()
    gen = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(n, (1,), generator=gen))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        i = int(
            torch.multinomial(d2 / d2.sum() if d2.sum() > 0 else torch.ones(n), 1, generator=gen)
        )
        centres.append(x[i])
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iterations):
        assign = torch.cdist(x, c).argmin(1)
        for j in range(c.shape[0]):
            members = x[assign == j]
            if members.shape[0]:
                c[j] = members.mean(0)
    return c


class FeatureGate:
    """Similarity to prototypes in channel-standardised feature space.

    ``rows``: the cached features as ``(P_i, C_i)`` row views (C order). When a feature is
    coarser than the image (``pixel_map`` given, :meth:`HeadRunner.pixel_map`), an image pixel
    reads the row of the feature pixel nearest to it on that feature's grid: the gate is then
    piecewise constant over each feature pixel, at the features' own resolution (no upsampled
    copy is kept; several resolutions are concatenated per pixel as at one). Without it, row
    ``i`` of every feature is image pixel ``i``.
    """

    def __init__(self, rows: Rows, pixel_map: PixelMap | None = None) -> None:
        self.rows, self.pixel_map = rows, pixel_map
        self.pixels = rows[0].shape[0] if pixel_map is None else pixel_map.pixels
        # Per-channel spread from a fixed sample of each feature's pixels (cheap, deterministic).
        self.inv_var = tuple(
            1.0
            / r[torch.linspace(0, r.shape[0] - 1, min(r.shape[0], 20000)).long()]
            .float()
            .var(0)
            .clamp_min(1e-6)
            for r in rows
        )
        self.channels = sum(r.shape[1] for r in rows)

    def _scaled(self, index: torch.Tensor) -> torch.Tensor:
        pm = self.pixel_map
        return torch.cat(
            [
                r[index if pm is None else pm.rows_of(i, index)].float() * iv.sqrt()
                for i, (r, iv) in enumerate(zip(self.rows, self.inv_var, strict=True))
            ],
            1,
        )

    def prototypes(
        self, index: np.ndarray, prototypes: int, seed: int = 0, labels: np.ndarray | None = None
    ) -> torch.Tensor:
        """At most ``prototypes`` k-means centres per class (``labels``) of the standardised
        features of the flat ``index`` pixels, ``(n, C)``."""
        marked = self._scaled(torch.from_numpy(index))
        groups = (
            [np.arange(index.size)]
            if labels is None
            else [np.flatnonzero(labels == c) for c in np.unique(labels)]
        )
        return torch.cat(
            [kmeans(marked[torch.from_numpy(g)], prototypes, seed=seed) for g in groups]
        )

    def similarity(self, pixels: np.ndarray, protos: torch.Tensor, tau: float) -> torch.Tensor:
        """``exp(-d^2 / (C tau))`` at the flat ``pixels`` ``(A,)``, ``d^2`` the squared distance
        of their standardised features to the nearest of ``protos``."""
        d2 = torch.cdist(self._scaled(torch.from_numpy(pixels)), protos).pow(2).min(1).values
        return torch.exp(-d2 / (self.channels * tau))

    def __call__(
        self,
        index: np.ndarray,
        tau: float,
        prototypes: int,
        seed: int = 0,
        labels: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Gate ``(P,)`` for the contradicted marks at flat ``index`` (grouped by ``labels``)."""
        protos = self.prototypes(index, prototypes, seed, labels)
        n, chunk = self.pixels, 1 << 16
        return torch.cat(
            [
                self.similarity(np.arange(a, min(a + chunk, n)), protos, tau)
                for a in range(0, n, chunk)
            ]
        )
