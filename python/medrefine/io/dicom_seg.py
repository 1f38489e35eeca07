"""DICOM-SEG output through highdicom (the ``io`` extra): one segment per class, referencing the
source series."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from medrefine.errors import InputError
from medrefine.io._common import atomic_write, mask_dtype
from medrefine.types import Volume

#: medrefine's version, ``medrefine.__version__`` (python/medrefine/__init__.py, the one place it
#: is written): read from the package, which Python loads before any module in it.
_VERSION = str(sys.modules["medrefine"].__version__)

# A generic coded property for every segment: the class *name* carries the meaning.
_CATEGORY = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
_TYPE = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
_ALGORITHM = hd.AlgorithmIdentificationSequence(
    name="medrefine",
    version=_VERSION,
    family=hd.sr.CodedConcept("123109", "DCM", "Manual Processing"),
)


def _segments(names: Sequence[str]) -> list[Any]:
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=_CATEGORY,
            segmented_property_type=_TYPE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=_ALGORITHM,
        )
        for number, name in enumerate(names, start=1)
    ]


def write_dicom_seg(
    mask: np.ndarray,
    like: Volume,
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write a label mask as a binary DICOM-SEG of ``like``'s DICOM series.

    Args:
        mask: ``(slice, row, column)`` integer labels, the shape of ``like.array``; 0 = background.
        like: a volume read from a DICOM series (its ``dicom_headers`` are referenced).
        class_names: names of classes ``0..K-1`` (background first); segment ``c`` is labelled
            ``class_names[c]``. Default: ``"class 1"``, ... up to the mask's largest label.

    Raises:
        InputError: ``like`` was not read from DICOM, a shape mismatch, or a label without a name.
    """
    target = Path(path)
    if not like.dicom_headers:
        raise InputError(
            f"{target}: a DICOM-SEG references a DICOM series; this image was not read from one "
            "(write .nii.gz, .nrrd, .tif or .png instead)"
        )
    labels = mask_dtype(mask, target)
    sources = [cast(Dataset, ds) for ds in like.dicom_headers]
    want = (len(sources), *np.shape(like.array)[-2:])
    if labels.shape != want:
        raise InputError(f"{target}: mask shape {labels.shape} is not the series' {want}")
    top = int(labels.max())
    names = list(class_names[1:]) if class_names else [f"class {c}" for c in range(1, top + 1)]
    if top > len(names):
        raise InputError(
            f"{target}: label {top} has no class name (names: {list(class_names or [])})"
        )
    if not names:
        raise InputError(f"{target}: a DICOM-SEG needs at least one class besides background")
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segments(names),
        series_instance_uid=generate_uid(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medrefine",
        manufacturer_model_name="medrefine",
        software_versions=_VERSION,
        device_serial_number="0",
        series_description="medrefine mask",
        omit_empty_frames=False,
    )
    return atomic_write(target, lambda tmp: seg.save_as(tmp))
