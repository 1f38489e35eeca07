"""Real files made in the test: an oblique DICOM series written with pydicom from a shipped MRI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

import medrefine as mr

SLOPE, INTERCEPT = 0.5, -100.0


def oblique_rotation() -> np.ndarray:
    """A rotation of 20 degrees about z, then 30 degrees about x (columns: unit vectors)."""
    a, b = np.deg2rad(20.0), np.deg2rad(30.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ rz


@dataclass(frozen=True)
class Series:
    """A DICOM series on disk and what it must read back as.

    Attributes:
        folder: the series folder (files in shuffled order, names unrelated to position).
        array: expected float32 ``(slice, row, column)`` values after rescale.
        affine: expected index -> RAS+ mm matrix, built here from the writing geometry.
        spacing: expected ``(slice, row, column)`` mm.
        uids: SOP Instance UIDs in slice order.
        series_uid: the SeriesInstanceUID.
    """

    folder: Path
    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    uids: tuple[str, ...]
    series_uid: str


def write_series(
    folder: Path,
    stored: np.ndarray,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.7),
    origin_lps: tuple[float, float, float] = (-30.0, 12.5, 40.0),
    positions: list[float] | None = None,
    series_uid: str | None = None,
) -> Series:
    """Write int16 ``stored`` ``(slice, row, column)`` as one MR slice per file, oblique.

    ``positions`` (mm along the normal, one per slice) defaults to uniform steps of
    ``spacing[0]``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rot = oblique_rotation()
    row_dir, col_dir, normal = rot[:, 0], rot[:, 1], rot[:, 2]  # LPS unit vectors
    n = stored.shape[0]
    positions = positions if positions is not None else [k * spacing[0] for k in range(n)]
    study, series, frame = generate_uid(), series_uid or generate_uid(), generate_uid()
    uids = []
    order = np.random.default_rng(7).permutation(n)
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        uid = generate_uid()
        uids.append(uid)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = "MR", "anon", "Anon^Test"
        ds.PatientBirthDate, ds.PatientSex, ds.AccessionNumber = "", "O", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.ReferringPhysicianName = (
            "20240101",
            "120000",
            "1",
            "",
        )
        ds.SeriesNumber, ds.InstanceNumber = 3, int(order[k]) + 1
        ds.ImagePositionPatient = [float(v) for v in np.add(origin_lps, positions[k] * normal)]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [spacing[1], spacing[2]]  # row spacing, column spacing
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
        ds.PixelData = np.ascontiguousarray(stored[k], dtype="<i2").tobytes()
        ds.save_as(folder / f"img{order[k]:03d}.dcm", enforce_file_format=True)
    lps = np.eye(4)
    lps[:3, 0] = normal * spacing[0]
    lps[:3, 1] = col_dir * spacing[1]
    lps[:3, 2] = row_dir * spacing[2]
    lps[:3, 3] = origin_lps
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    array = stored.astype(np.float32) * np.float32(SLOPE) + np.float32(INTERCEPT)
    return Series(folder, array, ras, spacing, tuple(uids), series)


def hippocampus_stored() -> np.ndarray:
    """The shipped hippocampus-007 MRI as int16 ``(34, 47, 40)`` stored values (MRI intensities
    rounded, so value = stored * SLOPE + INTERCEPT is exact)."""
    image = mr.load_sample("hippocampus-007").image
    return np.rint((image - INTERCEPT) / SLOPE).astype(np.int16)
