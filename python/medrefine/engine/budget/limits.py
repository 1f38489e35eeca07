"""Bounds a :class:`medrefine.Session` enforces, so one request cannot exhaust a server.

Every bound raises :class:`~medrefine.errors.ResourceError` (gRPC ``RESOURCE_EXHAUSTED``) with
the figure asked for and the limit, before any large allocation. Sizes are bounded twice: by
count (``max_voxels``, 512^3, refuses a 20000 x 20000 image at once) and by cost
(:mod:`medrefine.engine.budget.admission`: ``set_image``'s estimated peak memory and time against
``max_set_image_bytes`` and ``max_set_image_seconds``, 8 GiB and 60 s by default, and against
the memory the machine has available). On the 2-core reference machine the defaults admit a
128x256x256 volume on ``hippocampus-unet3d`` (estimated 35 s, 1.2 GiB; the largest cube is
240^3) and refuse 512^3 (estimated 567 s; it ran for over 600 s holding 11.7 GB). A faster
server raises ``max_set_image_seconds``; one with less memory passes tighter bounds:
``Session(model, limits=SessionLimits(max_set_image_bytes=2 << 30))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from medrefine.errors import InputError, ResourceError
from medrefine.types import Box, Click, Mark, Paint, Scribble


@dataclass(frozen=True)
class SessionLimits:
    """Per-session bounds.

    Attributes:
        history_depth: interactions that can be undone (older states are forgotten; the
            network's own output is always kept, so :meth:`~medrefine.Session.reset` still works).
        max_voxels: pixels (2D) or voxels (3D) of one image.
        max_radius: radius of a click or scribble, pixels.
        max_mark_pixels: pixels one drawn mark may cover before clipping to the image
            (polyline length times the brush's disk or ball); bounds the work of a long, wide
            scribble (a 3D ball of radius 256 alone covers 70 M voxels).
        max_classes: output classes, counting those added by :meth:`~medrefine.Session.add_class`.
        max_marks: marks one session holds (refined on and pending together).
        max_points: points of one scribble, or pixels of one :class:`~medrefine.Paint`.
        max_tile_voxels: None: the backbone sees the whole (padded) image at once. An integer:
            a padded image over this many pixels/voxels runs through the backbone in
            overlapping tiles of at most this size, margins included
            (:mod:`medrefine.backends.tiling`), bounding the peak memory of ``set_image``; a
            backbone that cannot be tiled exactly (instance normalisation) raises
            ``UnsupportedModelError``.
        slab_voxels: a padded image over this many pixels/voxels runs a PyTorch backbone on
            the CPU slab by slab along its first spatial axis (:mod:`medrefine.backends.slabs`:
            equal to the whole pass, instance norms included, with a fraction of its peak
            memory) when the backbone's traced graph allows; None: always whole.
        float16_feature_bytes: features that would take more than this many bytes in float32
            are cached in float16 (half the memory; the head reads them as float32); None:
            always float32. The default keeps every image up to 2^24 voxels of 64 channels
            in float32.
        max_set_image_bytes: the most resident memory ``set_image`` may add at its peak,
            bytes, as :mod:`medrefine.engine.budget.admission` estimates it before computing
            anything; over it the backbone runs in tiles when it can be tiled exactly, else
            ``set_image`` is refused. None: only the machine's available memory bounds it.
        max_set_image_seconds: the most wall time ``set_image`` may take on the reference
            machine (2 cores), seconds, as estimated; over it ``set_image`` is refused. None:
            no bound.
    """

    history_depth: int = 32
    max_voxels: int = 512**3
    max_radius: int = 256
    max_mark_pixels: int = 1 << 24
    max_classes: int = 128
    max_marks: int = 10_000
    max_points: int = 100_000
    max_tile_voxels: int | None = None
    slab_voxels: int | None = 1 << 22
    float16_feature_bytes: int | None = 1 << 30
    max_set_image_bytes: int | None = 8 << 30
    max_set_image_seconds: float | None = 60.0

    def __post_init__(self) -> None:
        for name in (
            "history_depth",
            "max_voxels",
            "max_radius",
            "max_mark_pixels",
            "max_classes",
            "max_marks",
            "max_points",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"SessionLimits.{name} must be an integer >= 0, got {value!r}")
        if self.max_classes < 2 or self.max_voxels < 1:
            raise InputError("SessionLimits needs max_classes >= 2 and max_voxels >= 1")
        seconds = self.max_set_image_seconds
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if seconds is not None and not (number and 0 < seconds < math.inf):
            raise InputError(
                "SessionLimits.max_set_image_seconds must be None or a positive number of "
                f"seconds, got {seconds!r}"
            )
        for name in (
            "max_tile_voxels",
            "slab_voxels",
            "float16_feature_bytes",
            "max_set_image_bytes",
        ):
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, int) or value < 1
            if value is not None and bad:
                raise InputError(
                    f"SessionLimits.{name} must be None or an integer >= 1, got {value!r}"
                )

    def check_image(self, shape: tuple[int, ...]) -> None:
        """Raise if an image of spatial ``shape`` is too small to segment or too large."""
        if any(s < 2 for s in shape):
            raise InputError(f"image of spatial shape {shape} is too small: every axis needs >= 2")
        voxels = math.prod(shape)
        if voxels > self.max_voxels:
            raise ResourceError(
                f"image of spatial shape {shape} has {voxels:,} pixels, more than this "
                f"session's limit of {self.max_voxels:,} (SessionLimits.max_voxels)"
            )

    def check_classes(self, count: int) -> None:
        """Raise if the head would predict ``count`` classes."""
        if count > self.max_classes:
            raise ResourceError(
                f"{count} classes exceed this session's limit of {self.max_classes} "
                "(SessionLimits.max_classes)"
            )

    def check_mark(self, mark: Mark, marks_held: int) -> None:
        """Raise if ``mark`` (with ``marks_held`` already in the session) is over a bound."""
        if marks_held + 1 > self.max_marks:
            raise ResourceError(
                f"a session holds at most {self.max_marks} marks (SessionLimits.max_marks); "
                "refine, reset or start a new image"
            )
        if isinstance(mark, Box):
            return
        radius = mark.radius if isinstance(mark, (Click, Scribble)) else 0
        if radius > self.max_radius:
            raise ResourceError(
                f"{type(mark).__name__} radius {radius} px exceeds the limit of "
                f"{self.max_radius} px (SessionLimits.max_radius)"
            )
        points = len(mark.points) if isinstance(mark, Scribble) else 0
        if isinstance(mark, Paint):
            points = int(mark.pixels.shape[0])
        if points > self.max_points:
            raise ResourceError(
                f"{type(mark).__name__} has {points:,} points, more than the limit of "
                f"{self.max_points:,} (SessionLimits.max_points)"
            )
        covered = _length(mark) * _ball_size(radius, mark.ndim)
        if covered > self.max_mark_pixels:
            raise ResourceError(
                f"{type(mark).__name__} of radius {radius} px would cover about {covered:,} "
                f"pixels, more than the limit of {self.max_mark_pixels:,} "
                "(SessionLimits.max_mark_pixels)"
            )


def _ball_size(radius: int, ndim: int) -> int:
    """Upper bound on the pixels of a disk (2D) or ball (3D) of ``radius``: its bounding box."""
    return (2 * radius + 1) ** ndim


def _length(mark: Mark) -> int:
    """Centre-line pixels of a drawn mark (a scribble's polyline is sampled twice per pixel)."""
    if not isinstance(mark, Scribble):
        return 1
    steps = sum(
        max(2 * max(abs(b - a) for a, b in zip(p, q, strict=True)), 1)
        for p, q in pairwise(mark.points)
    )
    return 1 + steps
