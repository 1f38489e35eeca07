"""Pixel files without patient geometry: PNG/JPEG (Pillow), TIFF (tifffile), ``.npy`` (numpy).

Arrays keep the stored dtype and come back channel-first: ``(H, W)``, ``(C, H, W)``; a TIFF
page stack is ``(Z, H, W)``. A 2D TIFF whose resolution unit is the centimetre gives its pixel
spacing in mm; nothing else here carries spacing or an affine.
"""

from __future__ import annotations

import threading
import tokenize
import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from medrefine.errors import InputError, MedrefineError, ResourceError
from medrefine.io._common import atomic_write, check_declared, existing, mask_dtype, spatial
from medrefine.types import Volume

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: Held while Pillow reads a header with its size warning silenced: ``warnings.catch_warnings``
#: swaps the process-wide filter list, and two readers interleaving would leave one's "ignore"
#: installed for good (Python before 3.14 has no per-thread filters). The decode runs outside.
_QUIET_OPEN = threading.Lock()


def read_png(path: str | Path) -> np.ndarray:
    """Pixels of a PNG/JPEG (any Pillow format) as ``(H, W)`` or channel-first ``(C, H, W)``.

    Raises:
        NotFoundError: no such file. InputError: not an image, or truncated.
        ResourceError: more than ``MAX_VOXELS`` values.
    """
    p = existing(path)
    try:
        with _QUIET_OPEN, warnings.catch_warnings():
            # medrefine's own limit (check_declared) replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(p)  # reads the header only
        with opened as im:
            bands = len(im.getbands())
            check_declared(p, (im.size[1], im.size[0], bands))
            im.load()
            arr = np.asarray(im)
    except Image.DecompressionBombError as exc:
        raise ResourceError(f"{p}: the header declares too many pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{p}: not a readable image ({exc})") from exc
    return np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr


def _tiff_spacing(tif: tifffile.TiffFile, ndim: int) -> tuple[float, ...] | None:
    tags = tif.pages[0].tags  # type: ignore[union-attr]
    unit = tags.get("ResolutionUnit")
    if ndim != 2 or unit is None or int(unit.value) != 3 or "XResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn > 0 and yn > 0 and xd > 0 and yd > 0):
        return None  # resolution tags are metadata here, often left empty: no spacing then
    return (10.0 * yd / yn, 10.0 * xd / xn)


def read_tiff(path: str | Path) -> Volume:
    """A TIFF's first series: ``(H, W)``, ``(C, H, W)`` (RGB samples) or ``(Z, H, W)`` pages."""
    p = existing(path)
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            check_declared(p, tuple(int(n) for n in series.shape))
            arr = np.asarray(series.asarray())
            axes = series.axes
            if axes.endswith("S"):
                arr = np.moveaxis(arr, -1, 0)
            arr = spatial(arr, p)
            spacing = _tiff_spacing(tif, arr.ndim)
    except MedrefineError:
        raise
    except MemoryError as exc:
        raise ResourceError(f"{p}: not enough memory to read this TIFF file ({exc})") from exc
    except Exception as exc:  # a corrupt file reaches tifffile's asserts and divisions too
        raise InputError(f"{p}: not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    return Volume(arr, spacing=spacing)


def read_npy(path: str | Path) -> np.ndarray:
    """A ``.npy`` array as saved (no pickles): ``(H, W)``, ``(C, H, W)``/``(D, H, W)`` or
    ``(C, D, H, W)``; its header is checked before the data is read."""
    p = existing(path)
    try:
        with p.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError, tokenize.TokenError) as exc:
        raise InputError(f"{p}: not a .npy file ({exc})") from exc
    if len(shape) not in (2, 3, 4):
        raise InputError(f"{p}: expected a 2D or 3D image (optionally channel-first), got {shape}")
    check_declared(p, tuple(int(n) for n in shape))
    need = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if p.stat().st_size < need:
        raise InputError(
            f"{p}: truncated: the header declares {need} bytes, the file holds {p.stat().st_size}"
        )
    try:
        return np.asarray(np.load(p, allow_pickle=False))
    except ValueError as exc:
        raise InputError(f"{p}: unreadable .npy data ({exc})") from exc


def write_raster(mask: np.ndarray, like: Volume, path: str | Path) -> Path:
    """Write a label mask as PNG (2D), TIFF (2D or a 3D page stack) or ``.npy``.

    A 2D TIFF keeps ``like``'s spacing as its resolution (pixels per centimetre).

    Raises:
        InputError: a lossy format (JPEG), or a 3D mask as PNG.
    """
    target = Path(path)
    labels = mask_dtype(mask, target)
    suffix = target.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        raise InputError(f"{target}: JPEG is lossy and would change labels; write .png or .tif")
    if suffix == ".npy":
        return atomic_write(target, lambda tmp: np.save(tmp, labels))
    if suffix in TIFF_SUFFIXES:
        spacing = like.spacing if labels.ndim == 2 and like.spacing else None
        resolution = (10.0 / spacing[1], 10.0 / spacing[0]) if spacing else None
        return atomic_write(
            target,
            lambda tmp: tifffile.imwrite(
                tmp,
                labels,
                photometric="minisblack",
                compression="zlib",
                resolution=resolution,
                resolutionunit=3 if resolution else None,
            ),
        )
    if labels.ndim != 2:
        raise InputError(f"{target}: PNG holds one 2D mask, got shape {labels.shape}; write .tif")
    return atomic_write(target, lambda tmp: Image.fromarray(labels).save(tmp, format="PNG"))
