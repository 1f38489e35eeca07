"""One entry point per direction: :func:`read_volume` and :func:`write_mask`, by file name.

DICOM (:mod:`~medrefine.io.dicom`, :mod:`~medrefine.io.dicom_seg`) is imported when a DICOM file
is read or written: pydicom and highdicom are the ``io`` extra, and without them that call
raises :class:`~medrefine.errors.MissingExtraError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrefine.errors import InputError
from medrefine.extras import require
from medrefine.io._common import existing, is_dicom
from medrefine.io.nifti import read_nifti_volume, write_nifti
from medrefine.io.nrrd_io import read_nrrd, write_nrrd
from medrefine.io.raster import (
    PILLOW_SUFFIXES,
    TIFF_SUFFIXES,
    read_npy,
    read_png,
    read_tiff,
    write_raster,
)
from medrefine.types import Volume

#: File formats by name ending; a folder, or a file with the DICOM preamble, is ``"dicom"``.
SUFFIXES: dict[str, str] = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".npy": "npy",
    ".dcm": "dicom",
    **{s: "pillow" for s in PILLOW_SUFFIXES},
    **{s: "tiff" for s in TIFF_SUFFIXES},
}


def file_format(path: str | Path) -> str:
    """The format of ``path`` by its name: ``"nifti"``, ``"nrrd"``, ``"npy"``, ``"dicom"``,
    ``"pillow"`` (PNG/JPEG/BMP) or ``"tiff"``; ``""`` when the name says nothing."""
    name = Path(path).name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return ""


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read an image file (or DICOM series folder) as a :class:`Volume`.

    Args:
        path: ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr``, ``.png``/``.jpg``/``.bmp``,
            ``.tif``/``.tiff``, ``.npy``, a DICOM series folder, or one DICOM file of a series.
        series_uid: the series to read from a folder holding several.

    Returns:
        The array in the axis order of :mod:`medrefine.io` (spatial axes in array order,
        channels first), spacing in mm and the affine where the format has them.

    Raises:
        NotFoundError: no such path. InputError: an unknown format or a bad file (the message
        names the file and the problem). ResourceError: more voxels than ``MAX_VOXELS``.
        MissingExtraError: a DICOM series without the ``io`` extra (pydicom).
    """
    p = existing(path)
    fmt = "dicom" if p.is_dir() else file_format(p) or ("dicom" if is_dicom(p) else "")
    if fmt == "dicom":
        dicom = require("medrefine.io.dicom", f"reading the DICOM {p}")
        volume: Volume = dicom.read_dicom_series(p, series_uid)
        return volume
    if fmt == "nifti":
        return read_nifti_volume(p)
    if fmt == "nrrd":
        return read_nrrd(p)
    if fmt == "tiff":
        return read_tiff(p)
    if fmt == "pillow":
        return Volume(read_png(p))
    if fmt == "npy":
        return Volume(read_npy(p))
    raise InputError(
        f"{p}: unknown image format (read: {', '.join(sorted(SUFFIXES))} or a DICOM folder)"
    )


def write_mask(
    mask: np.ndarray,
    like: Volume,
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write a label mask with the geometry of the image it was computed on.

    The file appears whole or not at all (written under a temporary name, then renamed).

    Args:
        mask: integer labels, the spatial shape of ``like.array``, array order.
        like: the image as :func:`read_volume` returned it (its spacing, affine and DICOM
            headers are written back).
        path: ``.nii``/``.nii.gz`` (like's affine), ``.nrrd``, ``.dcm`` (DICOM-SEG of like's
            series, one segment per class), ``.png`` (2D), ``.tif``/``.tiff``, ``.npy``.
        class_names: names of classes ``0..K-1`` (DICOM-SEG segment labels).

    Raises:
        InputError: shape mismatch, non-integer labels, unknown or lossy format.
        NotFoundError: the folder does not exist.
        MissingExtraError: ``.dcm`` without the ``io`` extra (highdicom, pydicom).
    """
    target = Path(path)
    labels = np.asarray(mask)
    shape = tuple(like.array.shape[-labels.ndim :]) if labels.ndim else ()
    if labels.ndim not in (2, 3) or shape != labels.shape or like.array.ndim > labels.ndim + 1:
        raise InputError(
            f"{target}: mask shape {labels.shape} does not match the image's spatial shape "
            f"(image {like.array.shape})"
        )
    fmt = file_format(target)
    if fmt == "nifti":
        return write_nifti(labels, like, target)
    if fmt == "nrrd":
        return write_nrrd(labels, like, target)
    if fmt == "dicom":
        seg = require("medrefine.io.dicom_seg", f"writing the DICOM-SEG {target}")
        written: Path = seg.write_dicom_seg(labels, like, target, class_names)
        return written
    if fmt in ("pillow", "tiff", "npy"):
        return write_raster(labels, like, target)
    raise InputError(
        f"{target}: unknown mask format (write .nii.gz, .nii, .nrrd, .dcm, .png, .tif or .npy)"
    )
