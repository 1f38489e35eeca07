"""Every setting of a site: what it keeps of an accepted image, how it fits and checks its head."""

from __future__ import annotations

from dataclasses import dataclass, field

from medrefine.engine.config import _bound, _check
from medrefine.engine.head.context import CONTEXT_WINDOWS
from medrefine.errors import InputError


@dataclass(frozen=True)
class SiteConfig:
    """How a :class:`~medrefine.site.Site` learns (every field checked when built; a bad value
    raises :class:`~medrefine.errors.InputError` naming it).

    Attributes:
        rows_per_image: pixels (feature rows) kept of each accepted image, 64..65536.
        corrected_share: the part of them drawn from pixels the accepted mask changed against
            the mask the session started from, [0, 1].
        boundary_share: the part drawn from pixels next to a label boundary of the accepted
            mask, [0, 1] (with ``corrected_share`` at most 1; the rest is drawn uniformly).
        max_images: accepted images a version holds, 1..100000; past it the oldest leaves.
        history: versions kept for rollback, 1..10000; older ones' heads and the images only
            they held are deleted.
        fit_steps: full-batch Adam steps of one site-head fit, 1..10000.
        fit_rows: the most rows one fit trains on (an even subsample of the kept ones), 256..2^22.
        lr: Adam's step, (0, 1].
        l2: weight of ``||W - W0||^2`` toward the network's own head, [0, 1e6].
        balance: how far the fit evens the classes' total weights, [0, 1]: 0 weighs every
            row by the pixels it stands for (the image's own class frequencies), 1 gives every
            present class the same total weight.
        folds: image-grouped folds of the held-out check (leave-one-image-out while there are
            no more images than folds), 2..1000.
        check_images: the newest accepted images the held-out check holds out, 2..1000.
        min_images: accepted images needed before a site head may be used, 2..1000.
        tolerance: the most estimated Dice any held-out image may lose against the network's
            head for the site head to be used, [0, 1]; where the network is wrong in kind
            (its own head's held-out Dice has a median below ``wide_below``), the margin the
            mean must gain instead (:mod:`medrefine.site.validate`).
        wide_below: the network is wrong in kind at this site when its own head agrees with
            the accepted masks below this median Dice, [0, 1] (held out, over the images the
            check holds out; before there are enough for a check, the masks sessions started
            from over the last ``wide_images``): refinement then reaches wide (its gate
            may widen to global, :meth:`medrefine.RefineConfig.shifted`), as it does from a
            site head that passed its check.
        wide_images: accepted images that evidence looks at before a check, 1..1000.
        fuse_above: a site head whose held-out Dice against the accepted masks averages at
            least this, [0, 1], is right over most of an image: where the network is wrong in
            kind (``wide_below``), a session started from it fuses every refine with colour
            models seeded by the mask shown (:func:`medrefine.engine.session.sites.fused`);
            otherwise refinement only reaches wide. 1 never fuses.
        seed: seeds every random choice (sampled pixels, fit subsample), 0..2^32-1.
        context_windows: box sizes in pixels (each 4..4096, at most 4) over which each kept
            row also records the features' means, and over which the site head adds a
            linear term (:mod:`medrefine.engine.head.context`): the spatial context a
            pointwise head lacks. () keeps rows and head pointwise.
        context_images: images a fit needs before it adds the context term, 1..1000: its
            weights read image-wide means, which one or two images teach as an image's own
            bias rather than what a class looks like around it.
    """

    rows_per_image: int = field(default=2048, metadata=_bound(64, 65536))
    corrected_share: float = field(default=0.4, metadata=_bound(0.0, 1.0))
    boundary_share: float = field(default=0.3, metadata=_bound(0.0, 1.0))
    max_images: int = field(default=500, metadata=_bound(1, 100000))
    history: int = field(default=32, metadata=_bound(1, 10000))
    fit_steps: int = field(default=100, metadata=_bound(1, 10000))
    fit_rows: int = field(default=4096, metadata=_bound(256, 1 << 22))
    lr: float = field(default=1e-2, metadata=_bound(0.0, 1.0, lo_open=True))
    l2: float = field(default=1e-2, metadata=_bound(0.0, 1e6))
    balance: float = field(default=0.5, metadata=_bound(0.0, 1.0))
    folds: int = field(default=4, metadata=_bound(2, 1000))
    check_images: int = field(default=5, metadata=_bound(2, 1000))
    min_images: int = field(default=2, metadata=_bound(2, 1000))
    tolerance: float = field(default=0.02, metadata=_bound(0.0, 1.0))
    wide_below: float = field(default=0.75, metadata=_bound(0.0, 1.0))
    wide_images: int = field(default=5, metadata=_bound(1, 1000))
    fuse_above: float = field(default=0.75, metadata=_bound(0.0, 1.0))
    seed: int = field(default=0, metadata=_bound(0, 2**32 - 1))
    context_windows: tuple[int, ...] = CONTEXT_WINDOWS
    context_images: int = field(default=4, metadata=_bound(1, 1000))

    def __post_init__(self) -> None:
        _check(self)
        w = self.context_windows
        if not (
            isinstance(w, tuple)
            and len(w) <= 4
            and all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 4096 for v in w)
        ):
            raise InputError(
                f"SiteConfig.context_windows must be a tuple of at most 4 integers in "
                f"[4, 4096], got {w!r}"
            )
        if self.corrected_share + self.boundary_share > 1.0:
            raise InputError(
                "SiteConfig.corrected_share + boundary_share must be at most 1, got "
                f"{self.corrected_share} + {self.boundary_share}"
            )
