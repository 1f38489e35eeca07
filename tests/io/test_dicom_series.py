"""DICOM series in: slice order from positions, rescale, oblique geometry, and every bad series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_maker import Series, hippocampus_stored, write_series

from medrefine.errors import InputError, NotFoundError
from medrefine.io import read_volume, write_mask


def test_an_oblique_series_reads_back_to_the_same_array_and_geometry(series: Series) -> None:
    vol = read_volume(series.folder)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, series.array)
    np.testing.assert_allclose(vol.affine, series.affine, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, series.spacing, atol=1e-9)
    assert tuple(ds.SOPInstanceUID for ds in vol.dicom_headers) == series.uids


def test_one_file_of_a_series_reads_its_whole_series(series: Series) -> None:
    one = sorted(series.folder.iterdir())[5]
    np.testing.assert_array_equal(read_volume(one).array, series.array)


def test_the_affine_puts_each_voxel_where_its_file_says(series: Series) -> None:
    vol = read_volume(series.folder)
    for ds, k in zip(vol.dicom_headers, range(len(vol.dicom_headers)), strict=True):
        full = pydicom.dcmread(
            next(
                f
                for f in series.folder.iterdir()
                if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == ds.SOPInstanceUID
            )
        )
        # pixel (row 3, column 5) of this file, in LPS from its own header
        ipp = np.asarray(full.ImagePositionPatient, float)
        iop = np.asarray(full.ImageOrientationPatient, float)
        lps = (
            ipp
            + 3 * float(full.PixelSpacing[0]) * iop[3:]
            + 5 * float(full.PixelSpacing[1]) * iop[:3]
        )
        ras = vol.affine @ np.array([k, 3, 5, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-6)
        assert vol.array[k, 3, 5] == np.float32(full.pixel_array[3, 5] * 0.5 - 100.0)
        if k >= 3:
            break


def test_a_nifti_written_from_a_dicom_series_keeps_its_geometry(
    series: Series, tmp_path: Path
) -> None:
    vol = read_volume(series.folder)
    mask = (vol.array > np.median(vol.array)).astype(np.uint8)
    out = write_mask(mask, vol, tmp_path / "mask.nii.gz")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, series.affine, atol=1e-5)


def test_a_folder_with_two_series_needs_one_chosen(series: Series, tmp_path: Path) -> None:
    other = write_series(tmp_path / "other", hippocampus_stored()[:5])
    for f in other.folder.iterdir():
        shutil.copy(f, series.folder / f"other-{f.name}")
    with pytest.raises(InputError, match="mixed series: 2 SeriesInstanceUIDs"):
        read_volume(series.folder)
    assert read_volume(series.folder, series_uid=other.series_uid).array.shape[0] == 5
    with pytest.raises(NotFoundError, match=r"no series '1\.2\.3'"):
        read_volume(series.folder, series_uid="1.2.3")


def test_mixed_orientations_in_one_series_are_refused(series: Series) -> None:
    f = sorted(series.folder.iterdir())[0]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.save_as(f)
    with pytest.raises(
        InputError, match=f"{f.name}: mixed series: its orientation differs from the other"
    ):
        read_volume(series.folder)


def test_non_uniform_slice_spacing_is_refused(tmp_path: Path) -> None:
    stored = hippocampus_stored()[:6]
    positions = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0]  # one slice missing
    s = write_series(tmp_path / "gap", stored, positions=positions)
    with pytest.raises(InputError, match=r"non-uniform slice spacing: steps from 2\.5 to 5 mm"):
        read_volume(s.folder)


def test_repeated_positions_are_refused(tmp_path: Path) -> None:
    s = write_series(tmp_path / "dup", hippocampus_stored()[:4], positions=[0.0, 2.5, 2.5, 5.0])
    with pytest.raises(InputError, match="two slices share one position"):
        read_volume(s.folder)


def test_a_slice_without_pixel_data_is_named(series: Series) -> None:
    f = sorted(series.folder.iterdir())[2]
    ds = pydicom.dcmread(f)
    del ds.PixelData
    ds.save_as(f)
    with pytest.raises(InputError, match=f"{f.name}: missing pixel data"):
        read_volume(series.folder)


def test_a_truncated_slice_is_named(series: Series) -> None:
    f = sorted(series.folder.iterdir())[4]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputError, match=f"{f.name}: unreadable"):
        read_volume(series.folder)


def test_a_header_declaring_too_many_voxels_is_refused_before_reading(series: Series) -> None:
    from medrefine.errors import ResourceError

    for f in series.folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Rows, ds.Columns = 65535, 65535
        ds.save_as(f)
    with pytest.raises(ResourceError, match=r"declares shape \(34, 65535, 65535\)"):
        read_volume(series.folder)


def test_a_folder_without_dicom_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="holds no DICOM file"):
        read_volume(tmp_path)
