"""The stroke workload of ``medrefine bench engine``: short strokes in the network's errors.

The simulated user's sessions of the engine bench often stop after about three refines, each
with few marks. A person correcting a poor mask draws more: here ``count`` short strokes (about
12 pixels long, radius 1), each inside a different region the network labels wrongly, classes
alternating (the true class of the region: foreground where the network missed it, background
where it invented it), one refine after each stroke, the marks accumulating. The image is a
512x512 crop of the stained nuclei sample tiled 2x2, on which the nuclei network is wrong on
about 9% of the pixels, so every stroke lands in a real error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medrefine.data import Case
from medrefine.engine.config import RefineConfig
from medrefine.engine.refine.constraints import rasterize
from medrefine.engine.session.session import Session
from medrefine.models.split import SplitModel
from medrefine.samples import load_sample
from medrefine.types import Scribble

HALF_LENGTH = 6  # pixels from a stroke's centre to each end, at most


def stained_512() -> Case:
    """512x512 stained nuclei image (``(3, 512, 512)`` uint8 RGB, labels ``{0, 1}``): the
    stained sample tiled 2x2 and cropped."""
    s = load_sample("nuclei-stained")
    image = np.tile(s.image, (1, 2, 2))[:, :512, :512]
    label = np.tile(s.label, (2, 2))[:512, :512]
    return Case("stained nuclei 512x512", image, label, (1.0, 1.0))


def _stroke(region: np.ndarray, label: int) -> Scribble:
    """A short straight stroke inside ``region`` (``(H, W)`` bool, one connected component):
    through its deepest pixel (nearest the centroid) along its long axis, radius 1 (0 where
    the region is thinner), shortened until every painted pixel lies inside."""
    depth = ndimage.distance_transform_edt(region)
    coords = np.argwhere(region).astype(np.float64)
    mean = coords.mean(axis=0)
    deepest = np.argwhere(depth == depth.max())  # ties: the one nearest the region's centroid
    centre = deepest[int(np.argmin(((deepest - mean) ** 2).sum(axis=1)))]
    coords -= mean
    if len(coords) > 1:
        _, vectors = np.linalg.eigh(coords.T @ coords)
        axis = vectors[:, -1]  # the direction of largest spread
    else:
        axis = np.array([0.0, 1.0])
    flat = region.reshape(-1)
    for radius in (1, 0):
        for half in range(HALF_LENGTH, -1, -1):
            ends = (np.rint(centre + sign * half * axis).astype(int) for sign in (-1, 1))
            a, b = (tuple(int(v) for v in np.clip(e, 0, np.array(region.shape) - 1)) for e in ends)
            stroke = Scribble(label, (a, b), radius=radius)
            if flat[rasterize(stroke, region.shape)].all():
                return stroke
    return Scribble(label, (tuple(int(v) for v in centre),), radius=0)


def error_strokes(label: np.ndarray, mask: np.ndarray, count: int) -> list[Scribble]:
    """``count`` strokes in the regions where ``mask`` (``(H, W)`` network labels) differs from
    ``label`` (``(H, W)`` truth, classes 0/1), classes alternating 1, 0, 1, ..., each class's
    regions taken largest first, one stroke per region. Fewer if the errors run out."""
    regions: dict[int, list[np.ndarray]] = {}
    for cls in (0, 1):
        comps, n = ndimage.label((label == cls) & (mask != cls))
        sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
        order = np.argsort(-sizes, kind="stable") + 1
        regions[cls] = [comps == int(i) for i in order]
    out: list[Scribble] = []
    taken = {0: 0, 1: 0}
    while len(out) < count:
        cls = 1 - len(out) % 2
        if taken[cls] >= len(regions[cls]):
            if taken[1 - cls] >= len(regions[1 - cls]):
                break
            cls = 1 - cls
        out.append(_stroke(regions[cls][taken[cls]], cls))
        taken[cls] += 1
    return out


@dataclass(frozen=True)
class StrokeFigures:
    """One run of the workload: refine wall times (ms) and gradient steps, one per stroke."""

    case: str
    refine_ms: tuple[float, ...]
    iterations: tuple[int, ...]


def measure_strokes(
    case: Case, model: SplitModel, config: RefineConfig, count: int = 12
) -> StrokeFigures:
    """Add the strokes of :func:`error_strokes` one at a time to a session on ``case``, refining
    after each; a first session refines the first stroke untimed (one-time costs)."""
    warm = Session(model, config)
    mask = warm.set_image(case.image)
    strokes = error_strokes(case.label, mask, count)
    warm.add(strokes[0])
    warm.refine()
    session = Session(model, config)
    session.set_image(case.image)
    times, steps = [], []
    for stroke in strokes:
        session.add(stroke)
        t = time.perf_counter()
        result = session.refine()
        times.append(1000 * (time.perf_counter() - t))
        steps.append(result.iterations)
    return StrokeFigures(case.case_id, tuple(times), tuple(steps))
