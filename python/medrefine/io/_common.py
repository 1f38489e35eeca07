"""Shared checks of the readers and writers: size limits and writes that never leave half a file."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from medrefine.errors import InputError, NotFoundError, ResourceError

#: The most voxels (pixels in 2D, all channels counted) a file may declare: 2**30, i.e. 4 GiB
#: as float32. A header declaring more is refused before any voxel is read.
MAX_VOXELS = 1 << 30


def existing(path: str | Path) -> Path:
    """``path`` as a :class:`Path`; raises :class:`NotFoundError` naming it if it does not exist."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{p}: no such file or directory")
    return p


def check_declared(path: Path, shape: tuple[int, ...], what: str = "header") -> None:
    """Refuse a ``shape`` declared by a file's ``what`` before reading its voxels.

    Raises:
        InputError: a negative or zero extent. ResourceError: more than :data:`MAX_VOXELS`.
    """
    if any(int(n) <= 0 for n in shape):
        raise InputError(f"{path}: the {what} declares an empty or negative shape {shape}")
    count = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if count > MAX_VOXELS:
        raise ResourceError(
            f"{path}: the {what} declares shape {shape} ({count:.3g} voxels), more than the "
            f"{MAX_VOXELS} voxels medrefine reads from one file"
        )


def check_geometry(
    path: Path, spacing: tuple[float, ...] | None, affine: np.ndarray | None
) -> None:
    """Refuse geometry a file's header declares that no voxel grid can have: a voxel size that
    is not a positive finite number, or an affine with a non-finite entry or a singular spatial
    part (a zero direction). Both may be None (the format carries none).

    Raises:
        InputError: naming the file and the values.
    """
    if spacing is not None and not all(np.isfinite(v) and v > 0 for v in spacing):
        raise InputError(
            f"{path}: the header declares voxel sizes {tuple(float(v) for v in spacing)}: "
            "each must be a positive finite number of mm"
        )
    if affine is not None:
        if not np.isfinite(affine).all():
            raise InputError(f"{path}: the header declares a non-finite affine {affine.tolist()}")
        if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
            raise InputError(
                f"{path}: the header declares a singular affine (a zero or repeated direction) "
                f"{affine[:3, :3].tolist()}"
            )


def spatial(array: np.ndarray, path: Path) -> np.ndarray:
    """``array`` with length-1 trailing axes beyond the third dropped; 2D or 3D only.

    Raises:
        InputError: more than three axes of length > 1 (a 4D series where a 3D image is expected).
    """
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise InputError(
            f"{path}: expected a 2D or 3D image, got shape {array.shape} "
            "(a 4D file: split it into one 3D file per time point or channel)"
        )
    return array


def mask_dtype(mask: np.ndarray, path: Path) -> np.ndarray:
    """A label mask as the smallest unsigned type that holds it (uint8 or uint16).

    Raises:
        InputError: not an integer array, a negative label, or labels beyond 65535.
    """
    m = np.asarray(mask)
    if m.dtype == bool:
        return m.astype(np.uint8)
    if not np.issubdtype(m.dtype, np.integer):
        raise InputError(f"{path}: a mask must hold integer labels, got dtype {m.dtype}")
    if m.size and int(m.min()) < 0:
        raise InputError(f"{path}: a mask must hold labels >= 0, got {int(m.min())}")
    top = int(m.max()) if m.size else 0
    if top > np.iinfo(np.uint16).max:
        raise InputError(f"{path}: labels up to {top} do not fit a mask file (at most 65535)")
    return m.astype(np.uint8 if top <= 255 else np.uint16)


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    parent = path.parent
    if not parent.is_dir():
        raise NotFoundError(f"{path}: the folder {parent} does not exist")
    # Keep the whole suffix (.nii.gz) so libraries that choose the encoding by name still do;
    # the library creates the file, so it gets the usual permissions.
    suffix = "".join(path.suffixes)
    base = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = parent / f".{base}.{secrets.token_hex(6)}.partial{suffix}"
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary name in ``path``'s folder, then rename it to ``path``.

    A failed write leaves no file behind and ``path`` (if it existed) unchanged.
    """
    target = Path(path)
    with _temporary(target) as tmp:
        write(tmp)
        tmp.replace(target)  # os.replace: atomic within one file system
    return target


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128); needs no DICOM
    library, so a file is recognised before the ``io`` extra is asked for."""
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False
