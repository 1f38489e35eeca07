"""Damaged files: every reader answers a Volume or a typed error naming the file, never a raw
exception from the library underneath (found by mutating valid files byte by byte)."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import tifffile
from dicom_maker import Series
from PIL import Image

from medrefine.errors import InputError, MedrefineError
from medrefine.io import read_volume

RNG = np.random.default_rng(0)
VOLUME = (RNG.random((6, 8, 10)) * 1000).astype(np.int16)
PLANE = (RNG.random((24, 32)) * 255).astype(np.uint8)


def _valid_files(folder: Path) -> list[Path]:
    """One small valid file of each format the readers take."""
    files = {
        "a.nii": lambda p: nib.save(nib.Nifti1Image(VOLUME, np.diag([0.5, 0.6, 2.0, 1])), p),
        "b.nrrd": lambda p: nrrd.write(str(p), VOLUME, {"encoding": "raw"}),
        "c.npy": lambda p: np.save(p, VOLUME),
        "d.png": lambda p: Image.fromarray(PLANE).save(p),
        "e.tif": lambda p: tifffile.imwrite(p, VOLUME),
        "f.tiff": lambda p: tifffile.imwrite(p, PLANE),
    }
    for name, write in files.items():
        write(folder / name)
    return [folder / name for name in files]


def _read_or_typed_error(path: Path) -> np.ndarray | str:
    """The pixels read, or the typed error's class name; any other exception fails the test."""
    try:
        return read_volume(path).array
    except MedrefineError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return type(exc).__name__


def test_zeroed_header_bytes_read_or_fail_typed(tmp_path: Path) -> None:
    # Before the readers caught them: tifffile's ZeroDivisionError and AssertionError, numpy's
    # tokenize.TokenError from a .npy header.
    outcomes = set()
    for good in _valid_files(tmp_path):
        data = good.read_bytes()
        bad = tmp_path / "bad" / good.name
        bad.parent.mkdir(exist_ok=True)
        for at in range(0, min(len(data), 320), 2):
            bad.write_bytes(data[:at] + bytes(8) + data[at + 8 :])
            got = _read_or_typed_error(bad)
            outcomes.add(got if isinstance(got, str) else "read")
    assert outcomes == {"InputError", "read"}


def test_a_truncated_file_fails_typed_or_reads_every_pixel(tmp_path: Path) -> None:
    # A cut PNG trailer or a cut TIFF page list leaves every pixel there (tifffile stores a
    # stack's pixels before its page list); nothing may read back as other pixels. An empty
    # NRRD raised StopIteration from pynrrd before its header read was caught.
    for good in _valid_files(tmp_path):
        data, whole = good.read_bytes(), read_volume(good).array
        bad = tmp_path / "bad" / good.name
        bad.parent.mkdir(exist_ok=True)
        for end in range(0, len(data), max(1, len(data) // 97)):
            bad.write_bytes(data[:end])
            got = _read_or_typed_error(bad)
            if not isinstance(got, str):
                np.testing.assert_array_equal(got, whole, err_msg=f"{good.name} cut at {end}")


def _overwrite_value(path: Path, keyword: str, text: bytes) -> None:
    """Put ``text`` (same length) at the start of ``keyword``'s value in the file itself, as a
    damaged file would hold it (pydicom refuses to write a malformed decimal string)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    elem = ds.get_item(keyword)
    assert elem is not None and elem.value_tell is not None
    data = bytearray(path.read_bytes())
    data[elem.value_tell : elem.value_tell + len(text)] = text
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("ImageOrientationPatient", b"0.x"),
        ("ImagePositionPatient", b"1e9q"),
        ("PixelSpacing", b"nan\\"),
        ("RescaleSlope", b"inf"),
    ],
)
def test_a_malformed_number_in_one_slice_is_named(
    series: Series, keyword: str, text: bytes
) -> None:
    victim = sorted(series.folder.iterdir())[3]
    _overwrite_value(victim, keyword, text)
    # pydicom would warn and hand back text here; the suite turns warnings into errors, so a
    # warning would fail this test as surely as a ValueError.
    with pytest.raises(InputError, match=rf"{victim.name}: {keyword} must be"):
        read_volume(series.folder)


def test_a_zero_pixel_spacing_is_refused(series: Series) -> None:
    victim = sorted(series.folder.iterdir())[0]
    ds = pydicom.dcmread(victim)
    ds.PixelSpacing = [0, 1]
    ds.save_as(victim)
    with pytest.raises(InputError, match="PixelSpacing must be positive"):
        read_volume(series.folder)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nifti_voxel_size_that_is_not_a_number_is_refused(tmp_path: Path, bad: float) -> None:
    image = nib.Nifti1Image(VOLUME, None)
    image.header["pixdim"][1:4] = [bad, 1.0, 1.0]
    path = tmp_path / "v.nii"
    nib.save(image, path)
    with pytest.raises(InputError, match=r"v\.nii: the header declares voxel sizes"):
        read_volume(path)


def test_complex_nifti_voxels_are_refused_not_cast(tmp_path: Path) -> None:
    path = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(VOLUME.astype(np.complex64), np.eye(4)), path)
    with pytest.raises(InputError, match="only real numbers"):
        read_volume(path)


def test_nrrd_geometry_without_extent_is_refused(tmp_path: Path) -> None:
    flat = tmp_path / "flat.nrrd"
    nrrd.write(str(flat), VOLUME, {"space directions": np.zeros((3, 3)), "space": "RAS"})
    with pytest.raises(InputError, match=r"flat\.nrrd: the header declares voxel sizes"):
        read_volume(flat)
    spacings = tmp_path / "s.nrrd"
    nrrd.write(str(spacings), VOLUME, {"spacings": [1.0, np.nan, 1.0]})
    with pytest.raises(InputError, match=r"s\.nrrd: the header declares"):
        read_volume(spacings)


def test_a_tiff_with_a_zero_resolution_reads_without_spacing(tmp_path: Path) -> None:
    # A zero denominator gave a 0 mm pixel, which set_image refused far from the file.
    path = tmp_path / "r.tif"
    tifffile.imwrite(path, PLANE, resolution=((12345, 7), (12345, 7)), resolutionunit="CENTIMETER")
    data = path.read_bytes()
    assert data.count(struct.pack("<II", 12345, 7)) == 2
    path.write_bytes(data.replace(struct.pack("<II", 12345, 7), struct.pack("<II", 12345, 0)))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, PLANE)
    assert volume.spacing is None
