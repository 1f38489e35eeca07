"""``medrefine segment`` on a DICOM series: DICOM-SEG and NIfTI out with the series' geometry."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from dicom_maker import Series

import medrefine as mr
from medrefine.cli import main
from medrefine.io import read_volume

MODEL = "hippocampus-unet3d"


def test_segment_a_dicom_series_to_dicom_seg_and_nifti(series: Series, tmp_path: Path) -> None:
    seg_path, nii_path = tmp_path / "mask.dcm", tmp_path / "mask.nii.gz"
    for out in (seg_path, nii_path):
        assert (
            main(["segment", str(series.folder), "--model", MODEL, "--out", str(out), "--quiet"])
            == 0
        )
    expected = mr.Session(mr.load_model(MODEL)).set_image(read_volume(series.folder))
    seg = hd.seg.segread(seg_path)
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(series.uids)
    names = mr.load_model(MODEL).class_names
    assert [d.SegmentLabel for d in seg.SegmentSequence] == list(names[1:])
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.uids), combine_segments=True
    )
    np.testing.assert_array_equal(pixels, expected)
    nii = nib.load(nii_path)
    np.testing.assert_array_equal(np.asarray(nii.dataobj), expected)
    np.testing.assert_allclose(nii.affine, series.affine, atol=1e-5)
