"""Image-led propagation of the marks, fused with the network's evidence.

Where the network's features know nothing of a structure (a class it never learned, an image far
from its training data) the adapted head cannot carry a correction beyond the marks; the image
can. For each class ``c`` with drawn pixels, ``D_c`` is the geodesic distance (pixels; the path
cost rises across the image's edges, :func:`medrefine.engine.gate.distance.edge_cost`) to its
nearest drawn pixel. While only one class has drawn pixels, every other class stands ``lone_margin``
pixels behind it (its distance plus that margin): the distances then cancel, and beyond the
marks the network's evidence and the colour models decide, with ``lone_margin / scale`` nats in
the marked class's favour. So one stroke of a new structure takes that structure and its
look-alikes, not the image (``inf`` restores a seed segmentation's rule, where the one seeded
class takes everything it reaches). The fused score of class ``c`` at a pixel ``p`` is

    ``s_c = max(log P_c, -cap) - D_c / scale + w * log q_c(I_p)``

with ``P`` the refined prediction's softmax, its evidence against a class capped at ``cap``
nats (an added class starts about 10^4 logits below the others wherever the head has not been
adapted, which no distance could outweigh): a long ``scale`` leaves the network in charge
except close to the marks, a short one gives the nearest-mark geodesic segmentation. ``q_c`` is
the class's colour model from its marks (:mod:`medrefine.engine.gate.appearance`), weighted ``w``
(``PropagateConfig.appearance``): the distances reach only what the marks touch, the colour
model carries a class to unmarked look-alikes (the next nucleus) that are as far from its marks
as the background is. A class with no drawn pixel takes, at each pixel, the farthest marked
class's distance: it keeps the pixels where the network is sure of it and the marks are all
far, and yields wherever a mark speaks for another class.

When to fuse: for a class the user added (:meth:`medrefine.Session.add_class`) the network has
no features of its own, by the user's own account, so a refine with marks of such a class fuses
(``propagate.kind="new_classes"``, the default); ``"on"`` fuses every refine, ``"off"`` never.
Where the network knows the structure the fusion is harmful: distances grow across every edge of a
textured image (ultrasound speckle) to hundreds of pixels and overrule confident, right
predictions (``docs/design/propagation.md``, with the held-out-marks rule that was measured and
not kept). Settings are :class:`~medrefine.engine.config.PropagateConfig`.
"""

from __future__ import annotations

import numpy as np
import torch

from medrefine.engine.config import PropagateConfig
from medrefine.engine.gate.distance import geodesic_to
from medrefine.types import Spacing

__all__ = ["class_distances", "fuse", "propagates"]


def class_distances(
    index: np.ndarray,
    label: np.ndarray,
    num_classes: int,
    image: np.ndarray,
    edge_weight: float,
    spacing: Spacing | None = None,
    lone_margin: float = float("inf"),
) -> np.ndarray:
    """``(K, *shape)`` float32: each class's geodesic distance (pixels) to its nearest drawn
    pixel (flat ``index`` with class ``label``) over ``image`` ``(C, *shape)``'s edges; a class
    with none takes the per-pixel maximum over the marked classes or, while only one class is
    marked, that class's distance plus ``lone_margin`` pixels (inf: unreachable)."""
    shape = image.shape[1:]
    size = int(np.prod(shape))
    out = np.full((num_classes, *shape), np.inf, dtype=np.float32)
    marked = set(np.unique(label).tolist())
    for c in range(num_classes):
        if c in marked:
            targets = np.zeros(size, dtype=bool)
            targets[index[label == c]] = True
            out[c] = geodesic_to(targets.reshape(shape), image, edge_weight, np.inf, spacing)
    if len(marked) > 1:
        farthest = out[sorted(marked)].max(axis=0)
    elif marked and np.isfinite(lone_margin):
        farthest = out[next(iter(marked))] + np.float32(lone_margin)
    else:
        return out
    for c in range(num_classes):
        if c not in marked:
            out[c] = farthest
    return out


def fuse(
    logits: torch.Tensor,
    distances: torch.Tensor,
    scale: float,
    cap: float = 10.0,
    likelihoods: torch.Tensor | None = None,
    weight: float = 0.0,
) -> torch.Tensor:
    """Fused scores ``max(log_softmax(logits), -cap) - distances / scale + weight *
    likelihoods`` over the class axis (0); ``scale`` in pixels per nat, ``cap`` in nats.

    ``logits`` ``(K, ...)`` float32 and ``distances`` of the same shape (pixels; inf where
    unreachable: that class loses there unless every class is unreachable, when the network's
    own prediction stands); ``likelihoods`` (same shape, nats; None: left out) each class's
    colour-model log-likelihood (:func:`medrefine.engine.gate.appearance.class_log_likelihoods`).
    """
    finite = torch.isfinite(distances)
    unreachable = torch.where(finite.any(0, keepdim=True), 1e9, 0.0)  # (1, ...): per pixel
    penalty = torch.where(finite, distances / scale, unreachable)
    fused = torch.log_softmax(logits, 0).clamp(min=-cap) - penalty
    if likelihoods is not None and weight > 0:
        fused += weight * likelihoods
    return fused


def propagates(config: PropagateConfig, labels: np.ndarray, added_from: int) -> bool:
    """Whether a refine fuses the propagation: always (``"on"``), never (``"off"``), or, by
    default (``"new_classes"``), when some drawn pixel (``labels``, their classes) belongs to a
    class added to the network (``>= added_from``, :meth:`medrefine.Session.add_class`)."""
    if config.kind == "new_classes":
        return bool((labels >= added_from).any())
    return config.kind == "on"
