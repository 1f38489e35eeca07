"""DICOM series (one folder of single-frame slices) through pydicom (the ``io`` extra;
:mod:`medrefine.io.dispatch` imports this module only to read DICOM).

Slices are sorted by their position along the slice normal (``ImagePositionPatient`` projected on
``row x column`` of ``ImageOrientationPatient``); the array is ``(slice, row, column)`` float32
with ``RescaleSlope``/``RescaleIntercept`` applied; the affine maps that index to RAS+ mm (DICOM's
LPS patient axes with x and y negated).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from medrefine.errors import InputError, NotFoundError
from medrefine.io._common import check_declared, existing, is_dicom
from medrefine.types import Volume

__all__ = ["LPS_TO_RAS", "is_dicom", "read_dicom_series"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


def _header(path: Path) -> Any | None:
    """The dataset of ``path`` without pixel data; None if it is not a DICOM file at all."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises several types on truncated or corrupt headers
        raise InputError(f"{path}: unreadable DICOM header ({exc})") from exc


def _series(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    found: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            ds = _header(f)
            if ds is not None and "SeriesInstanceUID" in ds:
                found[str(ds.SeriesInstanceUID)].append((f, ds))
    return found


def _choose(folder: Path, series_uid: str | None) -> list[tuple[Path, Any]]:
    found = _series(folder)
    if not found:
        raise InputError(f"{folder}: holds no DICOM file with a SeriesInstanceUID")
    if series_uid is None:
        if len(found) > 1:
            raise InputError(
                f"{folder}: mixed series: {len(found)} SeriesInstanceUIDs "
                f"({', '.join(sorted(found))}); choose one with series_uid="
            )
        return next(iter(found.values()))
    if series_uid not in found:
        raise NotFoundError(f"{folder}: no series {series_uid!r} (found {sorted(found)})")
    return found[series_uid]


def _decimals(path: Path, ds: Any, name: str, count: int) -> np.ndarray | None:
    """The decimal-string attribute ``name`` of ``ds`` as ``(count,)`` float64, parsed from the
    file's own text where pydicom has not converted it yet (its conversion of a malformed value
    warns and hands the text back); None when ``ds`` has no such attribute.

    Raises:
        InputError: the value is not ``count`` finite numbers (names ``path`` and ``name``).
    """
    elem = ds.get_item(name)
    if elem is None:
        return None
    raw = elem.value
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    parts = raw.strip(" \0").split("\\") if isinstance(raw, str) else raw
    if not isinstance(parts, (list, tuple, MultiValue)):
        parts = [parts]
    try:
        values = np.asarray([float(str(v).strip()) for v in parts], np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.size != count or not np.isfinite(values).all():
        raise InputError(f"{path}: {name} must be {count} finite numbers, got {str(raw)[:80]!r}")
    return values


def _check_geometry(slices: list[tuple[Path, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Orientation (row direction, column direction) shared by every slice, and their normal."""
    for f, ds in slices:
        missing = [a for a in _GEOMETRY if a not in ds]
        if missing:
            raise InputError(f"{f}: no {', '.join(missing)}: not a slice of an image series")
    orients = [_required(f, ds, "ImageOrientationPatient", 6) for f, ds in slices]
    for (f, ds), o in zip(slices, orients, strict=True):
        if min(np.linalg.norm(o[:3]), np.linalg.norm(o[3:])) < 1e-3:
            raise InputError(f"{f}: ImageOrientationPatient holds a zero direction ({o.tolist()})")
        spacing = _required(f, ds, "PixelSpacing", 2)
        if (spacing <= 0).any():
            raise InputError(f"{f}: PixelSpacing must be positive, got {spacing.tolist()}")
    sizes = [(int(ds.Rows), int(ds.Columns)) for _, ds in slices]
    # The orientation and size most slices share is the series'; name a file that differs.
    keys = [tuple(np.round(o, 3)) for o in orients]
    iop = orients[keys.index(max(set(keys), key=keys.count))]
    size = max(set(sizes), key=sizes.count)
    for (f, _), o, sz in zip(slices, orients, sizes, strict=True):
        if not np.allclose(o, iop, atol=1e-4):
            raise InputError(f"{f}: mixed series: its orientation differs from the other slices'")
        if sz != size:
            raise InputError(f"{f}: mixed series: {sz[0]}x{sz[1]} pixels, the others {size}")
    return iop.reshape(2, 3), np.cross(iop[:3], iop[3:])


def _required(path: Path, ds: Any, name: str, count: int) -> np.ndarray:
    """:func:`_decimals` of an attribute :func:`_check_geometry` has found present."""
    values = _decimals(path, ds, name, count)
    assert values is not None
    return values


def _sorted(folder: Path, slices: list[tuple[Path, Any]], normal: np.ndarray) -> list[Any]:
    pos = [float(np.dot(_required(f, ds, "ImagePositionPatient", 3), normal)) for f, ds in slices]
    order = np.argsort(pos, kind="stable")
    ranked = [slices[i] for i in order]
    steps = np.diff(np.sort(pos))
    if len(steps) and steps.min() < 1e-3:
        raise InputError(f"{folder}: two slices share one position: a mixed or repeated series")
    if len(steps) and steps.max() - steps.min() > 1e-2 * steps.mean() + 1e-3:
        raise InputError(
            f"{folder}: non-uniform slice spacing: steps from {steps.min():.4g} to "
            f"{steps.max():.4g} mm (missing slices?)"
        )
    return ranked


def _pixels(path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise InputError(f"{path}: unreadable DICOM file ({exc})") from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(f"{path}: missing pixel data")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # truncated pixel data, unsupported transfer syntax
        raise InputError(f"{path}: unreadable pixel data ({exc})") from exc
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(f"{path}: pixel data of shape {arr.shape}: only single-frame grey slices")
    slope = _decimals(path, ds, "RescaleSlope", 1)
    intercept = _decimals(path, ds, "RescaleIntercept", 1)
    a = np.float32(1.0 if slope is None else slope[0])
    b = np.float32(0.0 if intercept is None else intercept[0])
    return (arr.astype(np.float32) * a + b).astype(np.float32)


def _thickness(path: Path, ds: Any) -> float:
    """The slice step (mm) of a one-slice series: SpacingBetweenSlices, else SliceThickness,
    else 1; a value that is not a positive number is refused."""
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        found = _decimals(path, ds, name, 1)
        if found is not None:
            if found[0] <= 0:
                raise InputError(f"{path}: {name} must be positive, got {found[0]:g}")
            return float(found[0])
    return 1.0


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM series: a folder (one series, or ``series_uid``) or one of its files.

    Returns:
        float32 ``(slice, row, column)`` volume; spacing ``(slice step, row, column)`` in mm;
        affine index -> RAS+ mm; ``dicom_headers`` the slices' datasets without pixel data,
        in array order.

    Raises:
        NotFoundError: no such path or series. InputError: no DICOM file, mixed series,
        non-uniform slice spacing, missing or truncated pixel data. ResourceError: too many voxels.
    """
    p = existing(path)
    if p.is_file():
        ds = _header(p)
        if ds is None or "SeriesInstanceUID" not in ds:
            raise InputError(f"{p}: not a DICOM image file")
        p, series_uid = p.parent, series_uid or str(ds.SeriesInstanceUID)
    slices = _choose(p, series_uid)
    dirs, normal = _check_geometry(slices)
    ranked = _sorted(p, slices, normal)
    first = ranked[0][1]
    check_declared(p, (len(ranked), int(first.Rows), int(first.Columns)), "series")
    array = np.stack([_pixels(f) for f, _ in ranked])
    ipp = [_required(f, ds, "ImagePositionPatient", 3) for f, ds in ranked]
    row_mm, col_mm = (float(v) for v in _required(ranked[0][0], first, "PixelSpacing", 2))
    if len(ipp) > 1:
        step = (ipp[-1] - ipp[0]) / (len(ipp) - 1)
    else:
        step = normal * _thickness(ranked[0][0], first)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = (
        step,
        dirs[1] * row_mm,
        dirs[0] * col_mm,
        ipp[0],
    )
    spacing = (float(np.linalg.norm(step)), row_mm, col_mm)
    headers = tuple(ds for _, ds in ranked)
    return Volume(array, spacing=spacing, affine=LPS_TO_RAS @ lps, dicom_headers=headers)
