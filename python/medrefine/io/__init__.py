"""Image files in, label masks out, with the geometry they came with.

:func:`read_volume` reads NIfTI, NRRD, a DICOM series, PNG/JPEG/BMP, TIFF and ``.npy`` into a
:class:`medrefine.Volume`; :func:`write_mask` writes a mask for that volume as NIfTI, NRRD,
DICOM-SEG, PNG, TIFF or ``.npy``. :func:`save_interactions` / :func:`load_interactions` keep a
session's interactions as JSON (format in :mod:`medrefine.io.interactions`).

Axis and orientation convention (the one place it is written; every reader keeps it):

- Arrays are channel-first, spatial axes in the order the file stores its voxels, never resampled
  or reoriented: NIfTI and NRRD give nibabel's/pynrrd's voxel index ``(i, j, k)``; a DICOM series
  gives ``(slice, row, column)`` with slices sorted by position along the slice normal
  (``row x column`` direction cosines), ascending; PNG/JPEG/TIFF give ``(H, W)``, ``(C, H, W)``
  or a page stack ``(Z, H, W)``. The rest of medrefine calls these axes ``(z, y, x)`` / ``(y, x)``,
  and marks use the same indices.
- ``Volume.spacing`` is the step between neighbouring voxels along each array axis, in mm.
- ``Volume.affine`` maps an array index ``(a0, a1, a2, 1)`` to RAS+ world coordinates in mm
  (NIfTI's convention; a DICOM or NRRD LPS frame is turned to RAS+ by negating x and y). PNG,
  JPEG and ``.npy`` carry neither affine nor spacing (None).
- A mask written for a volume has the volume's array shape and index order, so it lies on the
  source image voxel for voxel; its file gets the source affine (NIfTI, NRRD), references the
  source instances (DICOM-SEG), or the source pixel spacing (2D TIFF).

Bad files raise :class:`~medrefine.errors.InputError` (not an image, truncated, 4D, mixed DICOM
series, uneven slice spacing, no pixel data), :class:`~medrefine.errors.NotFoundError` (no such
path) or :class:`~medrefine.errors.ResourceError` (a header declaring more than
:data:`MAX_VOXELS` voxels), each naming the file and the problem.
"""

from medrefine.io._common import MAX_VOXELS
from medrefine.io.dispatch import file_format, read_volume, write_mask
from medrefine.io.interactions import RecordedInteraction, load_interactions, save_interactions
from medrefine.io.nifti import read_nifti
from medrefine.io.raster import read_png

__all__ = [
    "MAX_VOXELS",
    "RecordedInteraction",
    "file_format",
    "load_interactions",
    "read_nifti",
    "read_png",
    "read_volume",
    "save_interactions",
    "write_mask",
]
