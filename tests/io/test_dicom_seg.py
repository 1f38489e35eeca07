"""DICOM-SEG out, read back with highdicom: the source instances referenced, a segment a class."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from dicom_maker import Series

import medrefine as mr
from medrefine.errors import InputError
from medrefine.io import read_volume, write_mask

NAMES = ("background", "anterior", "posterior")


def _mask(shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[10:20, 15:30, 10:25] = 1
    mask[12:18, 5:12, 28:36] = 2
    return mask


def test_the_seg_references_every_source_instance_and_names_each_class(
    series: Series, tmp_path: Path
) -> None:
    vol = read_volume(series.folder)
    mask = _mask(vol.array.shape)
    out = write_mask(mask, vol, tmp_path / "mask.dcm", class_names=NAMES)
    seg = hd.seg.segread(out)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == set(series.uids)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["anterior", "posterior"]
    assert seg.StudyInstanceUID == vol.dicom_headers[0].StudyInstanceUID
    back = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.uids), combine_segments=True
    )
    np.testing.assert_array_equal(back, mask)


def test_a_seg_needs_a_dicom_source(tmp_path: Path) -> None:
    case = mr.load_sample("hippocampus-007")
    vol = mr.Volume(case.image, spacing=case.spacing, affine=case.affine)
    with pytest.raises(InputError, match="was not read from one"):
        write_mask(case.label, vol, tmp_path / "mask.dcm")
    assert not list(tmp_path.iterdir())


def test_a_label_without_a_class_name_is_refused(series: Series, tmp_path: Path) -> None:
    vol = read_volume(series.folder)
    with pytest.raises(InputError, match="label 2 has no class name"):
        write_mask(_mask(vol.array.shape), vol, tmp_path / "m.dcm", class_names=NAMES[:2])
    assert not list(tmp_path.glob("*.dcm")) and not list(tmp_path.glob(".*"))
