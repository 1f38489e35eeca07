"""NIfTI-1/2 (``.nii``, ``.nii.gz``) through nibabel: voxels in the file's ``(i, j, k)`` order."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medrefine.errors import InputError
from medrefine.io._common import (
    atomic_write,
    check_declared,
    check_geometry,
    existing,
    mask_dtype,
    spatial,
)
from medrefine.types import Volume

_nib: Any = nib  # nibabel's own annotations are partial


def _load(path: Path) -> Any:
    try:
        img = _nib.load(path)
    except Exception as exc:  # nibabel raises ImageFileError, HeaderDataError, OSError, ...
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (_nib.Nifti1Image, _nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image (nibabel read a {type(img).__name__})")
    shape = tuple(int(n) for n in img.shape)
    check_declared(path, shape)
    stored = img.get_data_dtype()
    if stored.kind not in "biuf":
        raise InputError(
            f"{path}: voxels of type {stored} (NIfTI datatype {int(img.header['datatype'])}): "
            "only real numbers (integer or float) are read, not complex or RGB voxels"
        )
    if not path.name.endswith(".gz"):
        need = (
            int(img.header.get_data_offset()) + int(np.prod(shape)) * img.get_data_dtype().itemsize
        )
        if path.stat().st_size < need:
            raise InputError(
                f"{path}: truncated: the header declares {need} bytes, the file holds "
                f"{path.stat().st_size}"
            )
    return img


def _voxels(path: Path, img: Any, dtype: type) -> np.ndarray:
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: truncated or corrupt voxel data ({exc})") from exc


def read_nifti(
    path: str | Path,
    dtype: type = np.float32,
) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Voxels ``(i, j, k)`` as ``dtype``, spacing per axis (mm) and the 4x4 affine of a NIfTI.

    Raises:
        NotFoundError: no such file. InputError: not a NIfTI file, truncated, or 4D.
        ResourceError: a header declaring more than ``MAX_VOXELS`` voxels.
    """
    p = existing(path)
    img = _load(p)
    data = spatial(_voxels(p, img, dtype), p)
    spacing = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    affine = np.asarray(img.affine, dtype=np.float64)
    check_geometry(p, spacing, affine)
    return data, spacing, affine


def read_nifti_volume(path: str | Path) -> Volume:
    """A NIfTI as a float32 :class:`Volume`: ``(i, j, k)`` (or ``(i, j)``), spacing, affine."""
    data, spacing, affine = read_nifti(path)
    return Volume(data, spacing=spacing, affine=affine)


def affine_of(like: Volume) -> np.ndarray:
    """``like``'s affine, or one built from its spacing (identity where none is known)."""
    if like.affine is not None:
        return np.asarray(like.affine, dtype=np.float64)
    spacing = tuple(like.spacing or ()) + (1.0,) * 3
    return np.diag([*spacing[:3], 1.0])


def write_nifti(mask: np.ndarray, like: Volume, path: str | Path) -> Path:
    """Write a label mask (spatial shape of ``like``, array order) with ``like``'s affine."""
    target = Path(path)
    labels = mask_dtype(mask, target)
    img = _nib.Nifti1Image(labels, affine_of(like))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    return atomic_write(target, lambda tmp: _nib.save(img, tmp))
