"""Readers for the file formats medrefine's datasets and samples use.

Arrays come back channel-first with spatial axes in array order: PNG ``(H, W)`` or ``(C, H, W)``;
NIfTI in nibabel's voxel-index order ``(i, j, k)``, with the header's spacing (mm) and affine.
"""

from medrefine.io.readers import read_nifti, read_png

__all__ = ["read_nifti", "read_png"]
