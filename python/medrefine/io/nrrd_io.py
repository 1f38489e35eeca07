"""NRRD (``.nrrd``, ``.nhdr``) through pynrrd: voxels in the file's ``(i, j, k)`` index order.

The affine comes from ``space directions`` and ``space origin`` (LPS spaces turned to RAS+);
without them, from ``spacings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nrrd
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
from medrefine.io.nifti import affine_of
from medrefine.types import Volume

_LPS = ("left-posterior-superior", "LPS")
_RAS = ("right-anterior-superior", "RAS")


def _affine(header: dict[str, Any], ndim: int) -> np.ndarray | None:
    dirs = header.get("space directions")
    if dirs is None:
        spacings = header.get("spacings")
        if spacings is None:
            return None
        return np.diag([*(float(v) for v in spacings[:ndim]), *[1.0] * (4 - ndim)])
    rows = [
        np.asarray(d, np.float64)
        for d in dirs
        if d is not None and not np.isnan(np.asarray(d, np.float64)).any()
    ]
    if len(rows) != ndim or any(r.shape != (3,) for r in rows):
        return None
    affine = np.eye(4)
    affine[:3, :ndim] = np.stack(rows, axis=1)
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), np.float64)
    space = str(header.get("space", ""))
    if space in _LPS:
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    elif space not in _RAS:
        return None
    return affine


def read_nrrd(path: str | Path) -> Volume:
    """A NRRD as a float32 :class:`Volume`: ``(i, j, k)``, spacing (mm), affine to RAS+ mm.

    Raises:
        NotFoundError: no such file. InputError: not NRRD, truncated, or 4D.
        ResourceError: a header declaring more than ``MAX_VOXELS`` voxels.
    """
    p = existing(path)
    try:
        with p.open("rb") as fh:
            header = nrrd.read_header(fh)
    except Exception as exc:  # NRRDError, UnicodeDecodeError, StopIteration (an empty file), ...
        raise InputError(f"{p}: not a readable NRRD header ({type(exc).__name__}: {exc})") from exc
    check_declared(p, tuple(int(n) for n in header.get("sizes", ())))
    try:
        data, header = nrrd.read(str(p), index_order="F")
    except Exception as exc:  # pynrrd raises NRRDError, ValueError, EOFError, zlib.error
        raise InputError(f"{p}: truncated or corrupt NRRD data ({exc})") from exc
    array = spatial(np.asarray(data, dtype=np.float32), p)
    affine = _affine(header, array.ndim)
    if affine is not None:
        spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(array.ndim))
    elif header.get("spacings") is not None:
        spacing = tuple(float(s) for s in header["spacings"][: array.ndim])
    else:
        spacing = None
    check_geometry(p, spacing, affine)
    return Volume(array, spacing=spacing, affine=affine)


def write_nrrd(mask: np.ndarray, like: Volume, path: str | Path) -> Path:
    """Write a label mask (array order) as gzip NRRD in RAS space with ``like``'s affine."""
    target = Path(path)
    labels = mask_dtype(mask, target)
    affine = affine_of(like)
    header = {
        "space": "right-anterior-superior",
        "space directions": affine[:3, : labels.ndim].T,
        "space origin": affine[:3, 3],
        "encoding": "gzip",
    }
    return atomic_write(target, lambda tmp: nrrd.write(str(tmp), labels, header, index_order="F"))
