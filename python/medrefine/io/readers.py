"""PNG (Pillow) and NIfTI (nibabel) readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image, UnidentifiedImageError

from medrefine.errors import InputError


def read_png(path: str | Path) -> np.ndarray:
    """Pixels of a PNG (or any Pillow format) as ``(H, W)`` or channel-first ``(C, H, W)``."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc
    return np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr


def read_nifti(
    path: str | Path,
    dtype: type = np.float32,
) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Voxels ``(i, j, k)`` as ``dtype``, spacing per axis (mm) and the 4x4 affine of a NIfTI."""
    try:
        img: Any = nib.load(path)
        data: np.ndarray = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from exc
    spacing = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return data, spacing, np.asarray(img.affine)
