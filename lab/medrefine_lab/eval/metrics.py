"""Accuracy metrics of the robot-user protocol (R14, R15).

Label arrays are integer class indices 0..K-1 (0 = background), spatial axes in array order
(2D: y, x; 3D: z, y, x). Only foreground classes present in the ground truth are scored;
absent classes are left out (R14).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from medrefine.errors import InputError

LabelArray = npt.NDArray[np.integer]


def _present_classes(gt: LabelArray, pred: LabelArray, num_classes: int) -> list[int]:
    if gt.shape != pred.shape:
        raise InputError(f"gt has shape {gt.shape}, pred has {pred.shape}")
    for name, arr in (("gt", gt), ("pred", pred)):
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= num_classes):
            raise InputError(f"{name} holds labels outside 0..{num_classes - 1}")
    return [c for c in range(1, num_classes) if np.any(gt == c)]


def _overlap_per_class(
    gt: LabelArray, pred: LabelArray, num_classes: int, score: Callable[[int, int, int], float]
) -> dict[int, float]:
    out: dict[int, float] = {}
    for c in _present_classes(gt, pred, num_classes):
        g, p = gt == c, pred == c
        out[c] = score(int(np.count_nonzero(g & p)), int(g.sum()), int(p.sum()))
    return out


def dice_per_class(gt: LabelArray, pred: LabelArray, num_classes: int) -> dict[int, float]:
    """R14: Dice 2|G_c & P_c| / (|G_c| + |P_c|) for every class c in 1..K-1 present in gt."""
    return _overlap_per_class(gt, pred, num_classes, lambda i, g, p: 2.0 * i / (g + p))


def iou_per_class(gt: LabelArray, pred: LabelArray, num_classes: int) -> dict[int, float]:
    """R15 (RITM comparability): IoU |G_c & P_c| / |G_c | P_c| for every class present in gt."""
    return _overlap_per_class(gt, pred, num_classes, lambda i, g, p: i / (g + p - i))


def _mean(scores: dict[int, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def mean_dice(gt: LabelArray, pred: LabelArray, num_classes: int) -> float:
    """R14: mean of dice_per_class; NaN when gt holds no foreground class."""
    return _mean(dice_per_class(gt, pred, num_classes))


def mean_iou(gt: LabelArray, pred: LabelArray, num_classes: int) -> float:
    """Mean of iou_per_class; NaN when gt holds no foreground class."""
    return _mean(iou_per_class(gt, pred, num_classes))


def dice_auc(dices_over_k: Sequence[float]) -> float:
    """R14 (CVPR25): trapezoid area under Dice over k = 1..N with unit steps (N = 5 in the
    paper table, so the area lies in [0, 4]). Needs at least two values."""
    d = np.asarray(dices_over_k, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise InputError("dice_auc needs a 1D sequence of at least two scores")
    return float(np.sum((d[1:] + d[:-1]) / 2.0))


@dataclass(frozen=True)
class NoC:
    """R15 number of clicks/interactions to reach a score.

    Attributes:
        k: first interaction (1-based) whose score is >= tau, or n_max if none is.
        reached: False when no score within the first n_max reached tau (a case "never
            reaching tau"; RITM counts k == n_max instead, which also counts a case that
            reaches tau exactly at n_max).
    """

    k: int
    reached: bool


def noc(scores: Sequence[float], tau: float, n_max: int = 20) -> NoC:
    """R15: NoC@tau of one case. scores[i] is the score after interaction k = i + 1 (the start
    result P0 is not an interaction); only the first n_max scores count."""
    if n_max < 1:
        raise InputError(f"n_max must be >= 1, got {n_max}")
    hits = np.flatnonzero(np.asarray(scores[:n_max], dtype=np.float64) >= tau)
    if len(hits) == 0:
        return NoC(k=n_max, reached=False)
    return NoC(k=int(hits[0]) + 1, reached=True)


def _surface(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Boundary voxels: in the mask with a face neighbour outside it or beyond the border."""
    structure = ndi.generate_binary_structure(mask.ndim, 1)
    return np.asarray(mask & ~ndi.binary_erosion(mask, structure=structure, border_value=0))


def _nsd(
    g: npt.NDArray[np.bool_], p: npt.NDArray[np.bool_], spacing: Sequence[float], tol: float
) -> float:
    sg, sp = _surface(g), _surface(p)
    if not sg.any() or not sp.any():
        return 0.0
    to_p = ndi.distance_transform_edt(~sp, sampling=spacing)
    to_g = ndi.distance_transform_edt(~sg, sampling=spacing)
    close = np.count_nonzero(to_p[sg] <= tol) + np.count_nonzero(to_g[sp] <= tol)
    return float(close / (np.count_nonzero(sg) + np.count_nonzero(sp)))


def nsd_per_class(
    gt: LabelArray,
    pred: LabelArray,
    num_classes: int,
    spacing: Sequence[float],
    tolerance_mm: float = 2.0,
) -> dict[int, float]:
    """R14 optional NSD@tolerance for every class present in gt, voxel-surface approximation.

    The surface of a mask is its voxels with a face neighbour outside it (the array border
    counts as outside); NSD = (surface voxels of G within tolerance of P's surface + those of P
    within tolerance of G's) / (all surface voxels of both). Distances are Euclidean in mm with
    `spacing` per axis in array order. An empty prediction scores 0. (The challenge code weighs
    surfels by area; this counts voxels.)
    """
    if len(spacing) != gt.ndim:
        raise InputError(f"spacing needs {gt.ndim} values (array order), got {len(spacing)}")
    return {
        c: _nsd(gt == c, pred == c, spacing, tolerance_mm)
        for c in _present_classes(gt, pred, num_classes)
    }
