"""Value types of the simulated user: its configuration, its strokes and the effort they cost.

Coordinates are spatial indices in array order (2D: y, x; 3D: z, y, x), int64. Labels are class
indices 0..K-1 (0 = background). A seed array S is int32 with 0 = no seed and c + 1 = class c.
Rule numbers (R5 ...) refer to the robot-user protocol v1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from medrefine.errors import InputError

Mode = Literal["scribble", "click", "box"]
ClickRule = Literal["auto", "ritm", "cvpr25"]
Coords = npt.NDArray[np.int64]
BoxCorners = tuple[tuple[int, ...], tuple[int, ...]]

#: R4: default minimum error-region size in pixels (2D) and voxels (3D).
DEFAULT_A_MIN = {2: 10, 3: 50}


@dataclass(frozen=True)
class RobotConfig:
    """How the simulated user interacts (protocol R1, R6, R7, R10, R13).

    Attributes:
        mode: "scribble" (R5-R12), "click" (R13a/R13b) or "box" (R13c). The protocol's
            "box(+click)" session is a box robot for k = 1 and a click robot afterwards.
        per_class: R6 per_class mode (one stroke for every class with an error region) if True,
            single mode (only the class with the largest error region) if False.
        a_min: R4/R6 minimum error-region size; None means 10 pixels in 2D, 50 voxels in 3D.
        max_length: R10 L_max, the longest centerline in pixels.
        axis: R7 annotation axis of a 3D volume (0 = z, axial); strokes lie in planes normal to it.
            Also the z axis of the 3D box form (R13c).
        box_jitter: R13c maximum outward jitter per box side in pixels; 0 = tight boxes.
        seed: seed of numpy's default_rng for the box jitter (the protocol uses the case index).
        click_rule: "ritm" (R13a, binary 2D), "cvpr25" (R13b) or "auto" (R13a when the array is
            2D and both gt and pred only hold labels 0 and 1, else R13b).
        click_radius: rendering radius of a click (R13b): 0 = one pixel, 2 for seed-based
            baselines; a disk in 2D, a ball in 3D, always cut to the click's error region.
        first_rounds: rounds of strokes drawn at the first interaction, all refined at once
            (a person's first interaction: several strokes per class): each round draws the
            usual strokes in the error regions the earlier rounds left untouched
            (:meth:`~medrefine_lab.eval.robot.user.Robot.first_interaction`); 1 = the protocol's.
        absent_background: R6b (protocol v1.1, ``docs/protocol.md``): when the start result
            holds no pixel of a class the ground truth has (a structure the network never
            learned or missed entirely), the first interaction also draws a background stroke,
            as for a method with no start result (R5). False: protocol v1.
    """

    mode: Mode = "scribble"
    per_class: bool = True
    a_min: int | None = None
    max_length: int = 64
    axis: int = 0
    box_jitter: int = 0
    seed: int = 0
    click_rule: ClickRule = "auto"
    click_radius: int = 0
    first_rounds: int = 1
    absent_background: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("scribble", "click", "box"):
            raise InputError(f"mode must be 'scribble', 'click' or 'box', got {self.mode!r}")
        if self.click_rule not in ("auto", "ritm", "cvpr25"):
            raise InputError(f"click_rule must be auto, ritm or cvpr25, got {self.click_rule!r}")
        if self.a_min is not None and self.a_min < 1:
            raise InputError(f"a_min must be >= 1 or None, got {self.a_min}")
        if self.max_length < 1:
            raise InputError(f"max_length must be >= 1, got {self.max_length}")
        if not 0 <= self.axis <= 2:
            raise InputError(f"axis must be 0, 1 or 2, got {self.axis}")
        if self.box_jitter < 0 or self.click_radius < 0:
            raise InputError("box_jitter and click_radius must be >= 0")
        if self.first_rounds < 1:
            raise InputError(f"first_rounds must be >= 1, got {self.first_rounds}")

    def resolved_a_min(self, ndim: int) -> int:
        """R4: a_min for an array of `ndim` spatial dimensions."""
        return self.a_min if self.a_min is not None else DEFAULT_A_MIN[ndim]


@dataclass(frozen=True, eq=False)
class Stroke:
    """One mark of the simulated user, in full-array coordinates (y, x) or (z, y, x).

    Attributes:
        label: the class c of the mark: the class a scribble or click assigns (R12), or the
            class a box encloses (R13c).
        pixels: (N, ndim) int64, the seeds the mark paints with `seed_label`, sorted in C
            (raster) order; G == seed_label on all of them. For a box these are background
            seeds on the 2-px ring outside it (R13c), for seed-based methods.
        centerline: (M, ndim) int64, the drawn path in drawing order; one row for a click;
            empty for a box.
        kind: "scribble", "click" or "box".
        box: for a box, (start, stop) with exclusive stop, in array order. In the 3D form (R13c)
            the annotation axis spans z_min..z_max (stop = z_max + 1) and the other two axes hold
            the 2D box of the slice z_mid.
        box_mid: the 3D form's z_mid (slice of the largest class area); None otherwise.
    """

    label: int
    pixels: Coords
    centerline: Coords
    kind: Mode
    box: BoxCorners | None = None
    box_mid: int | None = None

    @property
    def seed_label(self) -> int:
        """The class painted on `pixels`: `label`, or 0 (background) for a box's ring."""
        return 0 if self.kind == "box" else self.label

    def __post_init__(self) -> None:
        for name in ("pixels", "centerline"):
            arr = getattr(self, name)
            if arr.dtype != np.int64 or arr.ndim != 2:
                raise InputError("Stroke coordinates must be (N, ndim) int64 arrays")
            frozen = arr.copy()
            frozen.setflags(write=False)
            object.__setattr__(self, name, frozen)  # a private, read-only copy


def paint(seeds: npt.NDArray[np.integer], strokes: Iterable[Stroke]) -> npt.NDArray[np.int32]:
    """R12: return a copy of the seed array S with every stroke's pixels set to seed_label + 1.

    Args:
        seeds: int array, spatial shape, 0 = no seed, c + 1 = class c. Not modified.
        strokes: strokes whose coordinates index `seeds`, painted in order (later wins).

    Returns:
        int32 array of the same shape.
    """
    out = np.array(seeds, dtype=np.int32, copy=True)
    for stroke in strokes:
        if len(stroke.pixels):
            out[tuple(stroke.pixels.T)] = stroke.seed_label + 1
    return out


def _add_counts(counts: Mapping[int, int], label: int, n: int) -> dict[int, int]:
    new = dict(counts)
    new[label] = new.get(label, 0) + n
    return new


@dataclass(frozen=True)
class Effort:
    """R16: cumulative user effort of a session.

    Attributes:
        painted: class -> painted pixels of scribbles and clicks (box rings are a rendering for
            seed-based methods, not user effort, and are not counted).
        centerline: class -> centerline pixels drawn (a click counts one).
        strokes: number of scribble strokes.
        clicks: number of clicks (including a scribble that degenerated to a click, R11).
        boxes: number of boxes.
    """

    painted: Mapping[int, int] = field(default_factory=dict)
    centerline: Mapping[int, int] = field(default_factory=dict)
    strokes: int = 0
    clicks: int = 0
    boxes: int = 0

    def add(self, strokes: Iterable[Stroke]) -> Effort:
        """Return a new Effort that also counts `strokes`."""
        effort = self
        for s in strokes:
            if s.kind == "box":
                effort = replace(effort, boxes=effort.boxes + 1)
                continue
            effort = Effort(
                painted=_add_counts(effort.painted, s.label, len(s.pixels)),
                centerline=_add_counts(effort.centerline, s.label, len(s.centerline)),
                strokes=effort.strokes + (s.kind == "scribble"),
                clicks=effort.clicks + (s.kind == "click"),
                boxes=effort.boxes,
            )
        return effort

    @property
    def total_painted(self) -> int:
        """Painted pixels over all classes."""
        return sum(self.painted.values())
