"""Image files for the web viewer: decoded by the server's readers, masks written by its writers.

``OpenSession`` takes raw pixels, and a browser cannot read NIfTI, DICOM or zipped series, so the
web port decodes what the viewer uploads (or a shipped sample) with :func:`medrefine.io.read_volume`
and hands back the pixels exactly as the viewer then uploads them: C order, little-endian, one of
the proto's element types, with spacing, affine and the SHA-256 ``OpenSession`` takes as its
digest. A mask is written back as NIfTI, or as DICOM-SEG referencing the series it was drawn on
(whose headers the decoder keeps, by digest, in a small :class:`Geometries` store).
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError, NotFoundError, ResourceError
from medrefine.io import file_format, read_volume, write_mask
from medrefine.samples import DATA, SAMPLES
from medrefine.serve import convert
from medrefine.types import Volume

#: Mask file formats the viewer can download, by name: (file suffix, needs a DICOM source).
MASK_FORMATS: dict[str, tuple[str, bool]] = {
    "nifti": (".nii.gz", False),
    "dicom-seg": (".dcm", True),
}
_SUFFIX = re.compile(r"\.[a-z0-9.]{1,10}")  # a format suffix kept from an uploaded file name
_ZIP_MEMBERS = 10_000  # most files taken from one uploaded zip


@dataclass(frozen=True)
class WireImage:
    """An image as the viewer uploads it through ``OpenSession``.

    Attributes:
        meta: JSON-ready description: ``name``, ``shape`` (array order, channels first),
            ``dtype`` (numpy name, little-endian), ``spacing`` (mm per spatial axis, or None),
            ``affine`` (16 values, row-major, or None), ``digest`` (SHA-256 hex of ``data``),
            ``spatial_dims`` (the reader's guess, 2 or 3), ``dicom`` (read from DICOM), and
            ``model`` (the zoo model a shipped sample suits, else None).
        data: the pixels, C order, little-endian.
    """

    meta: dict[str, Any]
    data: bytes


def _sendable(array: np.ndarray) -> np.ndarray:
    """``array`` as C-order, little-endian pixels of a proto element type (bool -> uint8, wider
    or float16 types -> int32/float32/float64 when that holds every value)."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    elif a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        fits = a.size == 0 or (int(a.min()) >= info.min and int(a.max()) <= info.max)
        a = a.astype(np.int32 if fits else np.float64)
    elif a.dtype.kind == "f" and a.dtype.itemsize < 4:
        a = a.astype(np.float32)
    out = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    convert.dtype_to_proto(out.dtype)  # InputError for anything else (complex, strings)
    return out


def wire_image(volume: Volume, name: str, model: str | None = None) -> WireImage:
    """The upload form of ``volume`` (see :class:`WireImage`)."""
    array = _sendable(volume.array)
    spatial = array.ndim if array.ndim <= 3 else 3
    fmt = file_format(name)
    if fmt in ("pillow", "tiff") and array.ndim >= 2:
        spatial = 2
    meta = {
        "name": name,
        "shape": list(array.shape),
        "dtype": array.dtype.name,
        "spacing": None if volume.spacing is None else [float(s) for s in volume.spacing],
        "affine": None
        if volume.affine is None
        else [float(v) for v in np.asarray(volume.affine).reshape(-1)],
        "digest": hashlib.sha256(array.data).hexdigest(),
        "spatial_dims": spatial,
        "dicom": bool(volume.dicom_headers),
        "model": model,
    }
    return WireImage(meta, array.tobytes())


def list_samples() -> list[dict[str, Any]]:
    """The shipped samples: name, the model each suits and file name."""
    return [
        {"name": s.name, "model": s.model, "file": f"{s.name}{s.suffix}"}
        for s in sorted(SAMPLES.values(), key=lambda s: s.name)
    ]


def read_sample(name: str) -> tuple[Volume, str, str]:
    """A shipped sample's file read by :func:`read_volume`: (volume, file name, model)."""
    if name not in SAMPLES:
        raise NotFoundError(f"no sample named {name!r}; samples: {sorted(SAMPLES)}")
    s = SAMPLES[name]
    file = f"{s.name}{s.suffix}"
    return read_volume(DATA / file), file, s.model


def _safe_name(name: str, index: int) -> str:
    """A file name for an upload that keeps only its format suffix (no path, no odd characters)."""
    base = Path(name.replace("\\", "/")).name
    suffix = next(
        (s for s in (".nii.gz", ".nii", ".nrrd", ".nhdr") if base.lower().endswith(s)),
        Path(base).suffix.lower(),
    )
    return f"{index:05d}{suffix if _SUFFIX.fullmatch(suffix) else ''}"


def _unzip(data: bytes, folder: Path, max_bytes: int) -> None:
    """Extract the files of a zip (any folder depth) side by side into ``folder``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(f"the uploaded zip cannot be read: {exc}") from exc
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > _ZIP_MEMBERS:
        raise ResourceError(f"the zip holds {len(members)} files, more than {_ZIP_MEMBERS}")
    if sum(m.file_size for m in members) > max_bytes:
        raise ResourceError(f"the zip unpacks to more than the server's limit of {max_bytes} bytes")
    for i, member in enumerate(members):
        if Path(member.filename).name.startswith("."):
            continue
        (folder / _safe_name(member.filename, i)).write_bytes(archive.read(member))


def decode_upload(files: Sequence[tuple[str, bytes]], max_bytes: int) -> Volume:
    """Read uploaded files with the server's readers.

    Args:
        files: (file name, content) pairs: one image file (NIfTI, NRRD, PNG/JPEG, TIFF, ``.npy``,
            one DICOM file), one ``.zip`` of a DICOM series, or the files of a DICOM series folder.
        max_bytes: the server's image limit; a zip may unpack to at most this.

    Returns:
        The volume as :func:`medrefine.io.read_volume` gives it.

    Raises:
        InputError: no file, an unknown format or a damaged file (named as uploaded).
        ResourceError: a zip beyond the limits.
    """
    if not files:
        raise InputError("no file uploaded")
    with tempfile.TemporaryDirectory(prefix="medrefine-upload-") as tmp:
        folder = Path(tmp)
        if len(files) == 1 and files[0][0].lower().endswith(".zip"):
            _unzip(files[0][1], folder, max_bytes)
            target = folder
        elif len(files) == 1:
            target = folder / _safe_name(files[0][0], 0)
            target.write_bytes(files[0][1])
        else:
            for i, (name, content) in enumerate(files):
                if not Path(name).name.startswith("."):
                    (folder / _safe_name(name, i)).write_bytes(content)
            target = folder
        try:
            volume = read_volume(target)
        except (InputError, NotFoundError) as exc:
            shown = files[0][0] if len(files) == 1 else f"{len(files)} files"
            raise type(exc)(f"{shown}: {str(exc).replace(str(folder), 'upload')}") from exc
        # The headers reference no temporary file after this point: pixel data is already read.
        return volume


class Geometries:
    """The geometry (spacing, affine, DICOM headers) of recently decoded images, by digest,
    so that a mask drawn on one can be written as DICOM-SEG. At most ``size`` are kept."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[str, Volume] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, digest: str, volume: Volume) -> None:
        shape = np.shape(volume.array)
        like = Volume(
            np.broadcast_to(np.zeros((), np.uint8), shape),  # the shape only, no pixels kept
            spacing=volume.spacing,
            affine=volume.affine,
            dicom_headers=volume.dicom_headers,
        )
        with self._lock:
            self._items[digest] = like
            self._items.move_to_end(digest)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, digest: str) -> Volume | None:
        with self._lock:
            return self._items.get(digest)


def _geometry(meta: dict[str, Any], ndim: int) -> Volume:
    """A volume of ``meta``'s shape, spacing and affine (no pixels), as the viewer sent it."""
    try:
        shape = tuple(int(s) for s in meta["shape"])
        spacing = meta.get("spacing")
        affine = meta.get("affine")
        spacing_t = None if spacing is None else tuple(float(s) for s in spacing)
        affine_a = None if affine is None else np.asarray(affine, np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the mask's image geometry is malformed: {exc}") from exc
    if spacing_t is not None and len(spacing_t) != ndim:
        raise InputError(f"spacing has {len(spacing_t)} values for a {ndim}D mask")
    return Volume(np.broadcast_to(np.zeros((), np.uint8), shape), spacing_t, affine_a)


def encode_mask(
    data: bytes,
    meta: dict[str, Any],
    fmt: str,
    geometries: Geometries,
) -> tuple[str, bytes]:
    """Write a mask file with the server's writers.

    Args:
        data: the labels, uint8, C order, of ``meta["mask_shape"]`` (spatial, array order).
        meta: ``mask_shape``, ``class_names``, ``name`` and the image's ``digest``, ``shape``,
            ``spacing`` and ``affine`` as :func:`wire_image` gave them.
        fmt: a key of :data:`MASK_FORMATS`.
        geometries: where a DICOM source's headers are found by digest.

    Returns:
        The file name to offer and the file's bytes.

    Raises:
        InputError: an unknown format, a malformed request, a mask of the wrong size, or
        DICOM-SEG for an image not read from DICOM (or no longer held).
    """
    if fmt not in MASK_FORMATS:
        raise InputError(f"unknown mask format {fmt!r}; formats: {sorted(MASK_FORMATS)}")
    suffix, needs_dicom = MASK_FORMATS[fmt]
    try:
        mask_shape = tuple(int(s) for s in meta["mask_shape"])
        names = [str(n) for n in meta.get("class_names") or []]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"mask_shape and class_names are malformed: {exc}") from exc
    if len(mask_shape) not in (2, 3) or int(np.prod(mask_shape)) != len(data):
        raise InputError(f"the mask has {len(data)} bytes, its shape {list(mask_shape)} needs more")
    labels = np.frombuffer(data, np.uint8).reshape(mask_shape)
    like = geometries.get(str(meta.get("digest", "")))
    if needs_dicom and (like is None or not like.dicom_headers):
        raise InputError(
            "DICOM-SEG needs the DICOM series the mask was drawn on: open the series again "
            "(this server holds no DICOM headers for this image)"
        )
    if like is None:
        like = _geometry(meta, len(mask_shape))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(meta.get("name") or "image")).name)
    stem = re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", stem) or "image"
    with tempfile.TemporaryDirectory(prefix="medrefine-mask-") as tmp:
        path = write_mask(labels, like, Path(tmp) / f"mask{suffix}", names or None)
        return f"{stem}.mask{suffix}", path.read_bytes()
