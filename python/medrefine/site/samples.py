"""What a site keeps of one accepted image: a bounded sample of feature rows and their labels.

The head of a pointwise network maps each pixel's feature vector (its *row*: every cached
feature's channels at that pixel, concatenated) to its logits, so ``(row, label)`` pairs are all
a refit needs. A fixed number of pixels is drawn from three strata of the image:

- *corrected*: the accepted mask differs from the mask the session started from (what the
  clinician taught);
- *boundary*: a neighbour (face-connected) has another label in the accepted mask (where masks
  are wrong first);
- *rest*: everything else, drawn uniformly.

Each stratum gets its share of the budget (:class:`~medrefine.site.config.SiteConfig`); a
stratum with fewer pixels gives all of them and its leftover goes to the others. Every row
carries the number of the image's pixels it stands for (its stratum's size over the rows drawn
from it), so sums over the sample estimate sums over the image: Dice on the sample estimates
the image's Dice without the image.

A row may also carry the features' box means around its pixel (the site's context windows,
:mod:`medrefine.engine.head.context`), after the features: a site head with spatial context
learns from them. No image value is kept: only the network's features at the drawn pixels (and
their box means), their labels, the image's shape and a digest of it (``docs/site.md`` says
what features can still reveal).
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass

import numpy as np

from medrefine.errors import InputError
from medrefine.site.config import SiteConfig

#: A label fits int16 (the session's limits allow at most this many classes).
MAX_LABEL = np.iinfo(np.int16).max


@dataclass(frozen=True, eq=False)
class ImageSample:
    """The rows kept of one accepted image.

    Attributes:
        digest: the image's digest (hex), to tell a repeated image; not invertible.
        shape: the image's spatial shape, array order.
        rows: ``(N, C)`` float16, each row a drawn pixel's features (every feature's channels,
            in the model's feature order), read-only.
        splits: channels of each feature within a row (they sum to ``C``).
        labels: ``(N,)`` int16, the accepted class of each row, an index into ``class_names``.
        class_names: the session's classes when it was accepted (a site maps them by name, so
            a class added in several sessions is one class of the site).
        weights: ``(N,)`` float32, image pixels each row stands for (>= 1).
        accepted_at: seconds since the epoch.
        agreement: Dice between the mask the session started from and the accepted one (mean
            over the foreground classes either holds; 1.0 when neither holds any): how right
            the start was on this image.
        windows: the box sizes (pixels) whose feature means follow the features in each row,
            window by window (``sum(splits) * len(windows)`` channels); () for none (samples
            kept before sites had context).
    """

    digest: str
    shape: tuple[int, ...]
    rows: np.ndarray
    splits: tuple[int, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    weights: np.ndarray
    accepted_at: float
    agreement: float = 1.0
    windows: tuple[int, ...] = ()

    @property
    def feature_channels(self) -> int:
        """Channels of a row that are the network's features (the rest are box means)."""
        return sum(self.splits)

    def to_bytes(self) -> bytes:
        """An ``.npz`` of the sample (no pickling), for storage."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            digest=np.array(self.digest),
            shape=np.asarray(self.shape, np.int64),
            rows=self.rows,
            splits=np.asarray(self.splits, np.int64),
            labels=self.labels,
            class_names=np.asarray(self.class_names, dtype=str),
            weights=self.weights,
            accepted_at=np.float64(self.accepted_at),
            agreement=np.float64(self.agreement),
            windows=np.asarray(self.windows, np.int64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageSample:
        """The sample :meth:`to_bytes` wrote; raises InputError for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                sample = cls(
                    str(z["digest"]),
                    tuple(int(v) for v in z["shape"]),
                    _frozen(z["rows"].astype(np.float16, copy=False)),
                    tuple(int(v) for v in z["splits"]),
                    _frozen(z["labels"].astype(np.int16, copy=False)),
                    tuple(str(v) for v in z["class_names"]),
                    _frozen(z["weights"].astype(np.float32, copy=False)),
                    float(z["accepted_at"]),
                    float(z["agreement"]),
                    tuple(int(v) for v in z["windows"]) if "windows" in z.files else (),
                )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"not a stored image sample: {exc}") from exc
        n = sample.rows.shape[0]
        if sample.rows.ndim != 2 or sample.labels.shape != (n,) or sample.weights.shape != (n,):
            raise InputError("a stored image sample's rows, labels and weights do not match")
        wide = sample.feature_channels * (1 + len(sample.windows))
        if wide != sample.rows.shape[1] or (
            n and int(sample.labels.max()) >= len(sample.class_names)
        ):
            raise InputError("a stored image sample's features or classes do not match its rows")
        return sample


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def boundary(mask: np.ndarray) -> np.ndarray:
    """``mask.shape`` bool: pixels with a face-connected neighbour of another label."""
    out = np.zeros(mask.shape, dtype=bool)
    for axis in range(mask.ndim):
        ahead = [slice(None)] * mask.ndim
        behind = [slice(None)] * mask.ndim
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        differs = mask[tuple(ahead)] != mask[tuple(behind)]
        out[tuple(ahead)] |= differs
        out[tuple(behind)] |= differs
    return out


def draw(
    accepted: np.ndarray, started: np.ndarray, config: SiteConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels a site keeps of an image: flat indices (int64, sorted) and the pixels each
    stands for (float32).

    Args:
        accepted: the accepted label mask, spatial shape, int.
        started: the mask the session started from (same shape).
        config: the budget and the strata's shares.
        seed: seeds the uniform draws within each stratum.
    """
    if accepted.shape != started.shape:
        raise InputError(f"masks of shapes {accepted.shape} and {started.shape} differ")
    corrected = (accepted != started).reshape(-1)
    edge = boundary(accepted).reshape(-1) & ~corrected
    rest = ~(corrected | edge)
    strata = [np.flatnonzero(s) for s in (corrected, edge, rest)]
    shares = [config.corrected_share, config.boundary_share]
    shares.append(1.0 - sum(shares))
    budget = min(config.rows_per_image, accepted.size)
    take = _allocate([s.size for s in strata], shares, budget)
    rng = np.random.default_rng(seed)
    index, weight = [], []
    for members, n in zip(strata, take, strict=True):
        if n == 0:
            continue
        chosen = rng.choice(members, size=n, replace=False) if n < members.size else members
        index.append(chosen)
        weight.append(np.full(n, members.size / n, dtype=np.float32))
    flat = np.concatenate(index).astype(np.int64)
    stands = np.concatenate(weight)
    order = np.argsort(flat)
    return flat[order], stands[order]


def _allocate(sizes: list[int], shares: list[float], budget: int) -> list[int]:
    """Rows per stratum: ``shares`` of ``budget``, each at most its size, leftovers passed on to
    the strata that still have pixels (in proportion to their shares, then to their sizes)."""
    take = [0] * len(sizes)
    left = budget
    open_ = [i for i, s in enumerate(sizes) if s > 0]
    while left > 0 and open_:
        weights = np.asarray([shares[i] for i in open_], dtype=np.float64)
        if weights.sum() <= 0:
            weights = np.asarray([sizes[i] - take[i] for i in open_], dtype=np.float64)
        want = np.floor(left * weights / weights.sum()).astype(int)
        want[int(np.argmax(weights))] += left - int(want.sum())  # what rounding left over
        for i, w in zip(open_, want, strict=True):
            got = min(int(w), sizes[i] - take[i])
            take[i] += got
            left -= got
        open_ = [i for i in open_ if take[i] < sizes[i]]
    return take


def image_sample(
    rows: np.ndarray,
    splits: tuple[int, ...],
    labels: np.ndarray,
    class_names: tuple[str, ...],
    weights: np.ndarray,
    digest: str,
    shape: tuple[int, ...],
    agreement: float = 1.0,
    windows: tuple[int, ...] = (),
) -> ImageSample:
    """An :class:`ImageSample` from drawn ``rows`` ``(N, C)`` (cast to float16: the features,
    then their box means over ``windows``), the channels of each feature in a row, their
    session ``labels`` ``(N,)`` naming ``class_names``, and the pixels each row stands for
    ``(N,)``."""
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise InputError(f"labels must lie in 0..{len(class_names) - 1}")
    if len(class_names) > MAX_LABEL:
        raise InputError(f"a site keeps at most {MAX_LABEL} classes")
    if rows.shape[1] != sum(splits) * (1 + len(windows)):
        raise InputError(
            f"rows of {rows.shape[1]} channels are not features of {sum(splits)} channels and "
            f"their means over {len(windows)} window(s)"
        )
    return ImageSample(
        digest,
        tuple(int(s) for s in shape),
        _frozen(np.ascontiguousarray(rows, dtype=np.float16)),
        tuple(int(c) for c in splits),
        _frozen(labels.astype(np.int16)),
        tuple(class_names),
        _frozen(weights.astype(np.float32)),
        time.time(),
        float(agreement),
        tuple(int(w) for w in windows),
    )


def agreement(started: np.ndarray, accepted: np.ndarray) -> float:
    """Dice of ``started`` against ``accepted`` (label masks of one shape), the mean over the
    foreground classes (``>= 1``) either holds; 1.0 when neither holds any."""
    classes = np.union1d(np.unique(started), np.unique(accepted))
    scores = []
    for c in classes[classes > 0]:
        a, b = started == c, accepted == c
        scores.append(2 * float((a & b).sum()) / float(a.sum() + b.sum()))
    return float(np.mean(scores)) if scores else 1.0


def seed_of(digest: str, base: int) -> int:
    """A per-image seed from the image's digest and the site's seed."""
    return int.from_bytes(hashlib.sha256(f"{base}:{digest}".encode()).digest()[:4], "little")
