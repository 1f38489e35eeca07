"""Between proto messages (``medrefine.v1``) and medrefine's types: marks, masks, results,
site versions. numpy and protobuf only: :mod:`medrefine.client` uses it without the engine.

Masks travel packed and zlib-compressed (see ``MaskDelta`` in ``proto/medrefine/v1/refine.proto``):
the labels of a box in C order, ``bits`` bits each, least significant bits first. Coordinates are
in array order, 2D ``(y, x)``, 3D ``(z, y, x)``, flattened ``ndim`` per point.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import cast

import numpy as np

from medrefine.errors import InputError, ResourceError
from medrefine.records import Interaction, SiteVersion, Validation
from medrefine.types import Box, ClassChange, Click, Mark, Paint, RefineResult, Scribble
from medrefine.v1 import refine_pb2 as pb

ZLIB_LEVEL = 1  # label masks compress well even at the fastest level
CHUNK_BYTES = 1 << 20  # the largest bulk-data piece in one message (1 MiB)
MAX_WRONG_WHERE = 65536  # pixels of RefineSummary.wrong_where sent at most

DTYPES: dict[int, np.dtype[np.generic]] = {
    pb.DTYPE_UINT8: np.dtype("<u1"),
    pb.DTYPE_INT8: np.dtype("<i1"),
    pb.DTYPE_UINT16: np.dtype("<u2"),
    pb.DTYPE_INT16: np.dtype("<i2"),
    pb.DTYPE_UINT32: np.dtype("<u4"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
}


def dtype_to_proto(dtype: np.dtype[np.generic]) -> pb.DType:
    """The proto enum of a numpy dtype (any byte order); InputError if it has none."""
    for code, known in DTYPES.items():
        if known == dtype.newbyteorder("<"):
            return cast(pb.DType, code)
    raise InputError(f"image dtype {dtype} cannot be sent; use an integer type or float32/64")


def dtype_from_proto(code: int) -> np.dtype[np.generic]:
    """The little-endian numpy dtype of a proto ``DType``; InputError for an unknown one."""
    if code not in DTYPES:
        raise InputError(f"header.dtype {code} is not a supported element type")
    return DTYPES[code]


# ------------------------------------------------------------------------------------ packing


def bits_for(num_classes: int) -> int:
    """Fewest bits (1, 2, 4, 8, 16 or 32) that hold labels ``0..num_classes-1``."""
    for bits in (1, 2, 4, 8, 16, 32):
        if num_classes <= 1 << bits:
            return bits
    raise InputError(f"{num_classes} classes cannot be packed")


def pack(labels: np.ndarray, bits: int) -> bytes:
    """Pack ``labels`` (any shape, C order, values below ``2**bits``) into bytes, LSB first."""
    flat = np.ascontiguousarray(labels).reshape(-1)
    if bits >= 8:
        return flat.astype(f"<u{bits // 8}").tobytes()
    if bits == 1:
        return np.packbits(flat.astype(np.uint8), bitorder="little").tobytes()
    per = 8 // bits
    padded = np.zeros(-(-flat.size // per) * per, np.uint8)
    padded[: flat.size] = flat
    groups = padded.reshape(-1, per)
    packed = groups[:, 0].copy()
    for k in range(1, per):
        packed |= groups[:, k] << np.uint8(k * bits)
    return packed.tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``count`` labels, uint8 (``bits`` <= 8) or int32 (16, 32)."""
    if bits not in (1, 2, 4, 8, 16, 32):
        raise InputError(f"bits_per_label must be 1, 2, 4, 8, 16 or 32, got {bits}")
    need = -(-count * bits // 8)
    if len(data) != need:
        raise InputError(f"packed mask has {len(data)} bytes, {need} expected")
    raw = np.frombuffer(data, np.uint8)
    if bits >= 8:
        out = raw.view(f"<u{bits // 8}")[:count]
        return out.astype(np.uint8 if bits == 8 else np.int32)
    if bits == 1:
        return np.unpackbits(raw, count=count, bitorder="little")
    per = 8 // bits
    low = np.uint8((1 << bits) - 1)
    out = np.empty((raw.size, per), np.uint8)
    for k in range(per):
        np.bitwise_and(raw >> np.uint8(k * bits), low, out=out[:, k])
    return out.reshape(-1)[:count]


def mask_dtype(bits: int) -> type[np.integer]:
    """The mask dtype a session uses for labels of ``bits`` bits (uint8 up to 256 classes)."""
    return np.uint8 if bits <= 8 else np.int32


# --------------------------------------------------------------------------------- mask deltas


def changed_box(old: np.ndarray | None, new: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounding box ``(start, stop)`` of the pixels where ``new`` differs from ``old``.

    ``old`` None (or of another shape) gives the whole mask; no change gives ``start == stop``.
    """
    if old is None or old.shape != new.shape:
        return (0,) * new.ndim, tuple(new.shape)
    diff = old != new
    rows = np.flatnonzero(diff.reshape(diff.shape[0], -1).any(axis=1))
    if rows.size == 0:
        return (0,) * new.ndim, (0,) * new.ndim
    start, stop = [int(rows[0])], [int(rows[-1]) + 1]
    sub = diff[start[0] : stop[0]]  # the rest of the search stays inside the changed rows
    for axis in range(1, new.ndim):
        others = tuple(a for a in range(new.ndim) if a != axis)
        hit = np.flatnonzero(sub.any(axis=others))
        start.append(int(hit[0]))
        stop.append(int(hit[-1]) + 1)
    return tuple(start), tuple(stop)


def encode_delta(
    old: np.ndarray | None, base_version: int, new: np.ndarray, num_classes: int
) -> pb.MaskDelta:
    """The ``MaskDelta`` that turns ``old`` (version ``base_version``; None = none) into ``new``."""
    if old is None or old.shape != new.shape:
        old, base_version = None, 0
    start, stop = changed_box(old, new)
    bits = bits_for(max(num_classes, int(new.max(initial=0)) + 1))
    delta = pb.MaskDelta(
        base_version=base_version, box_start=start, box_stop=stop, bits_per_label=bits
    )
    if any(b <= a for a, b in zip(start, stop, strict=True)):
        return delta
    region = new[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    delta.data = zlib.compress(pack(region, bits), ZLIB_LEVEL)
    return delta


def apply_delta(held: np.ndarray | None, delta: pb.MaskDelta, shape: Sequence[int]) -> np.ndarray:
    """The mask after ``delta``: a new array; ``held`` is the mask of ``delta.base_version``.

    Args:
        held: the client's mask (ignored when ``base_version`` is 0).
        delta: a ``MaskDelta`` from the server.
        shape: the spatial shape of the session's image.
    """
    shape = tuple(int(s) for s in shape)
    dtype = mask_dtype(delta.bits_per_label)
    if delta.base_version == 0:
        out = np.zeros(shape, dtype)
    elif held is None or held.shape != shape:
        raise InputError("mask delta applies to a mask the client does not hold")
    else:
        out = held.astype(dtype, copy=True)
    start, stop = tuple(delta.box_start), tuple(delta.box_stop)
    if len(start) != len(shape) or len(stop) != len(shape):
        raise InputError(f"mask delta box {start}-{stop} does not match shape {shape}")
    if any(b <= a for a, b in zip(start, stop, strict=True)):
        return out
    region = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    count = int(np.prod([b - a for a, b in zip(start, stop, strict=True)]))
    labels = unpack(zlib.decompress(delta.data), delta.bits_per_label, count)
    out[region] = labels.reshape([b - a for a, b in zip(start, stop, strict=True)])
    return out


# -------------------------------------------------------------------------------------- marks


def mark_to_proto(mark: Mark) -> pb.Mark:
    """A medrefine mark as a proto ``Mark`` (coordinates flattened)."""
    if isinstance(mark, Scribble):
        flat = [c for p in mark.points for c in p]
        return pb.Mark(scribble=pb.Scribble(label=mark.label, points=flat, radius=mark.radius))
    if isinstance(mark, Click):
        return pb.Mark(click=pb.Click(label=mark.label, point=mark.point, radius=mark.radius))
    if isinstance(mark, Box):
        return pb.Mark(box=pb.Box(label=mark.label, start=mark.start, stop=mark.stop))
    if isinstance(mark, Paint):
        return pb.Mark(paint=pb.Paint(label=mark.label, pixels=mark.pixels.reshape(-1).tolist()))
    raise InputError(f"not a mark: {type(mark).__name__}")


def _points(flat: Sequence[int], ndim: int, what: str, limit: int) -> np.ndarray:
    if len(flat) == 0 or len(flat) % ndim:
        raise InputError(
            f"{what} must hold a non-empty multiple of {ndim} coordinates, got {len(flat)}"
        )
    if len(flat) // ndim > limit:
        raise ResourceError(f"{what} has {len(flat) // ndim} points, more than the limit {limit}")
    return np.asarray(flat, np.int64).reshape(-1, ndim)


def mark_from_proto(msg: pb.Mark, ndim: int, max_points: int) -> Mark:
    """A proto ``Mark`` as a medrefine mark for an image of ``ndim`` spatial axes.

    Raises:
        InputError: no kind set, or coordinates not a multiple of ``ndim``.
        ResourceError: more than ``max_points`` points or pixels.
    """
    kind = msg.WhichOneof("kind")
    if kind == "scribble":
        s = msg.scribble
        pts = _points(s.points, ndim, "scribble points", max_points)
        return Scribble(s.label, tuple(tuple(p) for p in pts.tolist()), s.radius)
    if kind == "click":
        c = msg.click
        return Click(c.label, tuple(_points(c.point, ndim, "click point", 1)[0]), c.radius)
    if kind == "box":
        b = msg.box
        start = tuple(_points(b.start, ndim, "box start", 1)[0])
        return Box(b.label, start, tuple(_points(b.stop, ndim, "box stop", 1)[0]))
    if kind == "paint":
        pixels = _points(msg.paint.pixels, ndim, "paint pixels", max_points)
        return Paint(msg.paint.label, pixels)
    raise InputError("mark has no kind (scribble, click, box or paint)")


# ------------------------------------------------------------------------------------ results


def summary_to_proto(result: RefineResult) -> pb.RefineSummary:
    """The scalar part of a ``RefineResult`` (the mask travels separately)."""
    where = result.wrong_where[:MAX_WRONG_WHERE]
    return pb.RefineSummary(
        iterations=result.iterations,
        satisfied=result.satisfied,
        wrong_marks=result.wrong_marks,
        marked_pixels=result.marked_pixels,
        seconds=result.seconds,
        loss_trace=result.loss_trace,
        mode=result.mode,
        wrong_where=where.reshape(-1).tolist(),
        wrong_where_truncated=len(where) < len(result.wrong_where),
        honoured_before=result.honoured_before,
        note=result.note,
        changes=[
            pb.ClassChange(
                label=c.label,
                gained_inside=c.gained_inside,
                gained_outside=c.gained_outside,
                lost_inside=c.lost_inside,
                lost_outside=c.lost_outside,
            )
            for c in result.changes
        ],
        unmarked=list(result.unmarked),
    )


def summary_from_proto(msg: pb.RefineSummary, mask: np.ndarray, ndim: int) -> RefineResult:
    """A ``RefineResult`` from its proto summary and the mask it produced."""
    where = np.asarray(msg.wrong_where, np.int64).reshape(-1, ndim)
    return RefineResult(
        mask=mask,
        iterations=msg.iterations,
        satisfied=msg.satisfied,
        wrong_marks=msg.wrong_marks,
        wrong_where=where,
        marked_pixels=msg.marked_pixels,
        seconds=msg.seconds,
        loss_trace=tuple(msg.loss_trace),
        mode=msg.mode,
        honoured_before=msg.honoured_before,
        note=msg.note,
        changes=tuple(
            ClassChange(c.label, c.gained_inside, c.gained_outside, c.lost_inside, c.lost_outside)
            for c in msg.changes
        ),
        unmarked=tuple(msg.unmarked),
    )


KINDS: dict[str, pb.InteractionKind] = {
    "refine": pb.INTERACTION_KIND_REFINE,
    "add_class": pb.INTERACTION_KIND_ADD_CLASS,
    "reset": pb.INTERACTION_KIND_RESET,
}


def history_to_proto(entry: Interaction) -> pb.HistoryEntry:
    """One history entry (a refine's mask is not sent; GetMask serves the current one)."""
    msg = pb.HistoryEntry(
        kind=KINDS[entry.kind],
        marks=[mark_to_proto(m) for m in entry.marks],
        class_name=entry.class_name,
    )
    if entry.result is not None:
        msg.summary.CopyFrom(summary_to_proto(entry.result))
    return msg


# ------------------------------------------------------------------------------- site versions


def version_to_proto(version: SiteVersion) -> pb.SiteVersion:
    """The proto of a site version (every figure of its check)."""
    check = version.validation
    msg = pb.SiteVersion(
        version=version.version,
        kind=version.kind,
        images=version.images,
        class_names=version.class_names,
        created_at=version.created_at,
        checked=check is not None,
        in_use=version.in_use,
    )
    if check is not None:
        msg.reason = check.reason
        msg.checked_images = check.images
        msg.network_dice.extend(check.network)
        msg.site_dice.extend(check.site)
    return msg


def version_from_proto(msg: pb.SiteVersion) -> SiteVersion:
    """The :class:`medrefine.records.SiteVersion` a proto describes (inverse of the above)."""
    check = None
    if msg.checked:
        check = Validation(
            msg.checked_images,
            tuple(msg.network_dice),
            tuple(msg.site_dice),
            msg.in_use,
            msg.reason,
        )
    return SiteVersion(
        int(msg.version), msg.kind, msg.images, tuple(msg.class_names), msg.created_at, check
    )
