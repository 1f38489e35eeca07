// Reading the example's input images with the field's libraries: libpng for PNG, niftilib
// (nifti2_io) for NIfTI-1/NIfTI-2 (.nii, .nii.gz).
#pragma once

#include <string>

#include "medrefine/client/remote_session.hpp"

namespace medrefine::examples {

/// Reads a PNG or NIfTI file into the array layout medrefine's Python readers produce, so the
/// same file gives the same image whether a viewer opens it in C++ or Python.
///
/// PNG: 8-bit (or 16-bit) samples as stored; grey is `(y, x)`, grey+alpha/RGB/RGBA are
/// channel-first `(C, y, x)`; a palette image is expanded to RGB(A). Spacing is left empty.
/// NIfTI: voxels in niftilib's index order `(i, j, k)` (medrefine's `(z, y, x)`), as float32
/// after the header's `scl_slope`/`scl_inter` (when the slope is finite and non-zero); spacing
/// is `pixdim[1..ndim]` in the file's units (mm for medrefine's samples).
///
/// @throws std::runtime_error naming the file and what is wrong with it.
client::Image read_image_file(const std::string& path);

}  // namespace medrefine::examples
