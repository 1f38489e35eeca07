"""Clicks of the simulated user (protocol R13a, R13b).

R13a follows the RITM clicker (binary 2D), R13b the CVPR 2025 MedSegFM evaluation (multi-class,
2D or 3D). Arrays are spatial, axes in array order (2D: y, x; 3D: z, y, x); a click is one
coordinate row in the stroke's centerline.
"""

from __future__ import annotations

import numpy as np

from medrefine.errors import InputError
from medrefine_lab.eval.robot.regions import (
    BoolArray,
    IntArray,
    bbox_slices,
    first_argmax,
    largest_region,
    padded_edt,
    pixels_near,
)
from medrefine_lab.eval.robot.types import RobotConfig, Stroke

#: R13a: a probability map is a positive mask where it exceeds this (RITM's pred_thr).
PROB_THRESHOLD = 0.49


def binarize_probability(prob: np.ndarray) -> BoolArray:
    """R13a: the RITM foreground mask of a probability map (prob > 0.49)."""
    return np.asarray(prob > PROB_THRESHOLD, dtype=bool)


def _click(label: int, point: tuple[int, ...], allowed: BoolArray, radius: int) -> Stroke:
    centre = np.array([point], dtype=np.int64)
    return Stroke(label, pixels_near(point, radius, allowed), centre, "click")


def ritm_click(
    gt: IntArray, pred: IntArray | None, seeds: IntArray, radius: int = 0
) -> list[Stroke]:
    """R13a: one click, positive (label 1) iff max EDT(FN) > max EDT(FP), else negative (0).

    FN = (G == 1) & (P != 1), FP = (G != 1) & (P == 1); both EDTs are taken on the 1-px
    zero-padded masks (the border counts as boundary) and zeroed on already-seeded pixels, so a
    seeded pixel is never clicked again (the RITM not-clicked map). The click is the first argmax
    in raster order. No click (empty list) when no unseeded error pixel is left. Painted pixels:
    the disk/ball of `radius` cut to the clicked error mask and to unseeded pixels.
    """
    fg = gt == 1
    positive_pred = np.zeros_like(fg) if pred is None else pred == 1
    fn, fp = fg & ~positive_pred, ~fg & positive_pred
    unseeded = seeds == 0
    d_fn, d_fp = padded_edt(fn) * unseeded, padded_edt(fp) * unseeded
    best_fn, best_fp = float(d_fn.max()), float(d_fp.max())
    if max(best_fn, best_fp) == 0.0:
        return []
    positive = best_fn > best_fp
    point = first_argmax(d_fn if positive else d_fp)
    allowed = (fn if positive else fp) & unseeded
    return [_click(int(positive), point, allowed, radius)]


def _region_click(gt: IntArray, region: BoolArray, radius: int) -> Stroke:
    """Click at the first EDT maximum of one error region; label = G there (R13b)."""
    box = bbox_slices(region, margin=0)
    local = first_argmax(padded_edt(region[box]))
    point = tuple(s.start + i for s, i in zip(box, local, strict=True))
    label = int(gt[point])
    return _click(label, point, region & (gt == label), radius)


def cvpr25_clicks(gt: IntArray, pred: IntArray | None, config: RobotConfig) -> list[Stroke]:
    """R13b: per foreground class c of G (ascending), one click in the largest region of
    (P == c) xor (G == c) (8-connected in 2D, 26 in 3D) at its first EDT maximum.

    The EDT is that of the region alone with the array border counting as boundary (the
    challenge's zero-padded crop). The click's label is G at the click, so an over-segmentation
    click carries the true class there. As in the challenge, seeds are not consulted: a click
    the method did not honour may be repeated. Single mode keeps the class with the largest
    region (ties: lower class). Painted: disk/ball of click_radius cut to the region and to
    G == label. pred None counts as predicting nothing.
    """
    found = []
    for c in np.unique(gt).tolist():
        if c == 0:
            continue
        wrong = gt == c if pred is None else (pred == c) != (gt == c)
        region, size = largest_region(wrong)
        if size:
            found.append((int(c), region, size))
    if not config.per_class and found:
        found = [min(found, key=lambda f: (-f[2], f[0]))]
    return [_region_click(gt, region, config.click_radius) for _, region, _ in found]


def is_binary_2d(gt: IntArray, pred: IntArray | None) -> bool:
    """R13 "auto" rule: a 2D array whose gt and pred only hold labels 0 and 1."""
    if gt.ndim != 2 or gt.max(initial=0) > 1:
        return False
    return pred is None or int(pred.max(initial=0)) <= 1


def click_strokes(
    gt: IntArray, pred: IntArray | None, seeds: IntArray, config: RobotConfig
) -> list[Stroke]:
    """R13a or R13b, chosen by config.click_rule ("auto": R13a for binary 2D)."""
    rule = config.click_rule
    if rule == "auto":
        rule = "ritm" if is_binary_2d(gt, pred) else "cvpr25"
    if rule == "ritm":
        if not is_binary_2d(gt, pred):
            raise InputError("click_rule 'ritm' (R13a) needs a 2D array with labels 0 and 1")
        return ritm_click(gt, pred, seeds, config.click_radius)
    return cvpr25_clicks(gt, pred, config)
