"""Plain data that crosses medrefine's API: volumes, marks and refinement results.

Coordinates are integer pixel indices in array order: 2D ``(y, x)``, 3D ``(z, y, x)``. Labels are
class indices ``0..K-1`` with 0 = background; a mark may carry any class of the model, including
one the network never predicts in this image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from medrefine.errors import InputError

Point = tuple[int, ...]
_COORD_MAX = 2**31 - 1  # no image axis is longer; larger values would overflow int64 arithmetic


def _point(p: Iterable[object], what: str) -> Point:
    try:
        values = tuple(p)
        out = tuple(int(v) for v in values)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(inf)
        raise InputError(f"{what} must be a sequence of finite integers, got {p!r}") from exc
    if any(abs(v) > _COORD_MAX for v in out):
        raise InputError(f"{what} coordinates must lie within +-{_COORD_MAX}, got {p!r}")
    if any(float(v) != o for v, o in zip(values, out, strict=True)):  # type: ignore[arg-type]
        raise InputError(f"{what} must hold whole pixel indices, got {p!r}")
    if len(out) not in (2, 3):
        raise InputError(f"{what} must have 2 (y, x) or 3 (z, y, x) coordinates, got {p!r}")
    return out


def _label(label: object) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise InputError(f"label must be a non-negative integer class index, got {label!r}")
    return int(label)


def _radius(radius: object) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise InputError(f"radius must be a non-negative integer (pixels), got {radius!r}")
    return int(radius)


@dataclass(frozen=True)
class Scribble:
    """A polyline of class ``label`` through ``points``, painted with a ball of ``radius`` pixels.

    Consecutive points are joined by straight segments. In 3D the points are ``(z, y, x)``; a
    scribble drawn on one slice simply keeps ``z`` constant.
    """

    label: int
    points: tuple[Point, ...]
    radius: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _label(self.label))
        object.__setattr__(self, "radius", _radius(self.radius))
        given: object = self.points  # a caller may pass anything
        if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
            raise InputError(f"scribble points must be a sequence of points, got {given!r}")
        pts = tuple(_point(p, "scribble point") for p in given)
        if not pts:
            raise InputError("a scribble needs at least one point")
        if len({len(p) for p in pts}) != 1:
            raise InputError("all points of a scribble must have the same number of coordinates")
        object.__setattr__(self, "points", pts)

    @property
    def ndim(self) -> int:
        return len(self.points[0])


@dataclass(frozen=True)
class Click:
    """A disk (2D) or ball (3D) of class ``label``, centred at ``point``, ``radius`` in pixels."""

    label: int
    point: Point
    radius: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _label(self.label))
        object.__setattr__(self, "radius", _radius(self.radius))
        object.__setattr__(self, "point", _point(self.point, "click point"))

    @property
    def ndim(self) -> int:
        return len(self.point)


@dataclass(frozen=True)
class Box:
    """ "Class ``label`` lies inside this box": ``start`` inclusive, ``stop`` exclusive, per axis.

    Constraint rule: every pixel outside the box is "not ``label``" (enforced in the returned
    mask; the loss sees a band just outside the box plus a sample of the rest), and the box's
    central region (``RefineConfig.box_center_fraction`` of each side) is "``label``".
    """

    label: int
    start: Point
    stop: Point

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _label(self.label))
        start, stop = _point(self.start, "box start"), _point(self.stop, "box stop")
        if len(start) != len(stop):
            raise InputError("box start and stop must have the same number of coordinates")
        if any(b <= a for a, b in zip(start, stop, strict=True)):
            raise InputError(f"box stop {stop} must exceed start {start} on every axis")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def ndim(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class Paint:
    """An explicit set of painted pixels of class ``label`` (e.g. a brush stroke already
    rasterised by a viewer). ``pixels`` is an ``(N, ndim)`` integer array of coordinates."""

    label: int
    pixels: np.ndarray = field(compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _label(self.label))
        try:
            px = np.asarray(self.pixels)
        except ValueError as exc:  # a ragged list: rows of different lengths
            raise InputError(f"paint pixels must be a non-empty (N, 2|3) array ({exc})") from exc
        if px.ndim != 2 or px.shape[1] not in (2, 3) or px.shape[0] == 0:
            raise InputError(f"paint pixels must be a non-empty (N, 2|3) array, got {px.shape}")
        if not np.issubdtype(px.dtype, np.integer):
            raise InputError(f"paint pixels must be integers, got {px.dtype}")
        px = px.astype(np.int64)
        px.setflags(write=False)
        object.__setattr__(self, "pixels", px)

    @property
    def ndim(self) -> int:
        return int(self.pixels.shape[1])


Mark = Union[Scribble, Click, Box, Paint]  # noqa: UP007  (a runtime alias, also for isinstance)


@dataclass(frozen=True)
class Volume:
    """An image with its geometry.

    Attributes:
        array: ``(*spatial)`` or ``(C, *spatial)``, spatial axes in array order.
        spacing: pixel/voxel size per spatial axis in mm.
        affine: 4x4 index-to-world matrix (NIfTI/DICOM patient space), if known.
        dicom_headers: for an image read from a DICOM series, its slices' datasets (pydicom,
            without pixel data) in array order, which a DICOM-SEG written for it references;
            else empty.
    """

    array: np.ndarray = field(compare=False)
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = field(default=None, compare=False)
    dicom_headers: tuple[object, ...] = field(default=(), compare=False, repr=False)


#: Voxel size per spatial axis in units of the finest axis's (:func:`relative_spacing`).
Spacing = tuple[float, ...]


def relative_spacing(spacing: Sequence[float] | None, ndim: int) -> Spacing | None:
    """``spacing`` (voxel size per spatial axis, array order, any unit) divided by its smallest
    entry, or None when it is None or isotropic (every pixel distance then reads the same).

    >>> relative_spacing((3.0, 1.5, 1.5), 3)
    (2.0, 1.0, 1.0)
    """
    if spacing is None:
        return None
    values = tuple(float(v) for v in spacing)
    if len(values) != ndim or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(
            f"spacing must hold {ndim} positive finite voxel sizes (one per spatial axis), "
            f"got {tuple(spacing)}"
        )
    low = min(values)
    if all(v == low for v in values):
        return None
    return tuple(v / low for v in values)


@dataclass(frozen=True)
class ClassChange:
    """How one refine changed one class's pixels, against the mask before it.

    *Inside* is the marks' reach (where the gate let the adapted head act, the marked, enclosed
    and grown pixels, and what a box took from its class: :mod:`medrefine.engine.gate.reach`);
    *outside* is the rest of the image. A class no mark of the session names never gains a
    pixel outside.

    Attributes:
        label: the class.
        gained_inside, gained_outside: pixels that became this class.
        lost_inside, lost_outside: pixels that were this class and became another.
    """

    label: int
    gained_inside: int
    gained_outside: int
    lost_inside: int
    lost_outside: int


@dataclass(frozen=True)
class RefineResult:
    """Outcome of one :meth:`medrefine.Session.refine` call.

    Attributes:
        mask: label mask, spatial shape of the image, uint8 (int32 beyond 256 classes).
        iterations: gradient steps taken (0 when the marks were already satisfied).
        satisfied: the network itself (before marks are written into ``mask``) predicts every
            drawn pixel as its class and no pixel as a class a box excludes. Region-grown hints
            do not count.
        wrong_marks: number of drawn pixels the network still predicts wrongly.
        wrong_where: ``(wrong_marks, ndim)`` int64 coordinates of those pixels.
        marked_pixels: number of drawn (clinician) pixels the refinement honoured or not.
        seconds: wall time of the call.
        loss_trace: objective value at every iteration.
        mode: how the head was evaluated in the loop: ``"pointwise"``, ``"crop"`` or ``"full"``.
        honoured_before: share of drawn pixels the network predicted as their class before
            this refine (1.0 if none); compare :attr:`honoured_fraction`, the share after.
        note: "" or why the refine is not what it seems, e.g. that it did not move the
            network's prediction at any mark (the mask then honours them only by writing them
            in).
        propagation: the length scale (pixels of geodesic distance per nat) at which the
            marks' image-led propagation was fused into the mask, or None when the network's
            prediction stands (:mod:`medrefine.engine.gate.propagate`).
        changes: per class (index = label), the pixels this refine gained and lost inside and
            outside the marks' reach, against the mask before it (:class:`ClassChange`).
        unmarked: the classes no mark of the session names (kept from gaining pixels outside
            the reach).
    """

    mask: np.ndarray = field(compare=False)
    iterations: int
    satisfied: bool
    wrong_marks: int
    wrong_where: np.ndarray = field(compare=False)
    marked_pixels: int
    seconds: float
    loss_trace: tuple[float, ...]
    mode: str
    honoured_before: float = 1.0
    note: str = ""
    propagation: float | None = None
    changes: tuple[ClassChange, ...] = ()
    unmarked: tuple[int, ...] = ()

    @property
    def outside_gain_unmarked(self) -> int:
        """Pixels that classes nobody marked gained outside the marks' reach: 0 by the rule of
        :mod:`medrefine.engine.gate.reach`."""
        return sum(c.gained_outside for c in self.changes if c.label in self.unmarked)

    @property
    def honoured_fraction(self) -> float:
        """Share of drawn pixels the network itself predicts as their class (1.0 if none)."""
        if self.marked_pixels == 0:
            return 1.0
        return 1.0 - self.wrong_marks / self.marked_pixels


@dataclass(frozen=True)
class RefineProgress:
    """A running :meth:`medrefine.Session.refine`, reported before each gradient step.

    Attributes:
        iteration: gradient steps taken so far (0 before the first).
        max_iterations: the most steps this refine may take.
        loss: the objective after the last step (NaN before the first).
        wrong_marks: constraint pixels the head still breaks (drawn pixels predicted as another
            class, plus pixels a box excludes predicted as its class).
    """

    iteration: int
    max_iterations: int
    loss: float
    wrong_marks: int
