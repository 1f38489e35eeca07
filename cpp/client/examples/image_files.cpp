#include "image_files.hpp"

#include <nifti2_io.h>
#include <png.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace medrefine::examples {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Interleaved `(y, x, C)` samples -> channel-first `(C, y, x)`; one channel stays `(y, x)`.
template <typename T>
client::Image channel_first(const std::vector<T>& interleaved, int64_t height, int64_t width,
                            int64_t channels, client::DType dtype) {
  client::Image image;
  image.dtype = dtype;
  image.shape = channels == 1 ? std::vector<int64_t>{height, width}
                              : std::vector<int64_t>{channels, height, width};
  image.data.resize(interleaved.size() * sizeof(T));
  auto* out = reinterpret_cast<T*>(image.data.data());
  const int64_t plane = height * width;
  for (int64_t p = 0; p < plane; ++p) {
    for (int64_t c = 0; c < channels; ++c) out[c * plane + p] = interleaved[p * channels + c];
  }
  return image;
}

client::Image read_png(const std::string& path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    throw std::runtime_error(path + ": not a readable PNG (" + png.message + ")");
  }
  // Keep the file's own channels and bit depth; a palette becomes the colours it indexes.
  png.format &= ~static_cast<png_uint_32>(PNG_FORMAT_FLAG_COLORMAP);
  const int64_t channels = PNG_IMAGE_SAMPLE_CHANNELS(png.format);
  const int64_t height = png.height, width = png.width;
  const bool wide = (png.format & PNG_FORMAT_FLAG_LINEAR) != 0;
  if (wide) {
    std::vector<std::uint16_t> samples(PNG_IMAGE_SIZE(png) / 2);
    if (!png_image_finish_read(&png, nullptr, samples.data(), 0, nullptr)) {
      throw std::runtime_error(path + ": corrupt PNG (" + png.message + ")");
    }
    return channel_first(samples, height, width, channels, client::DType::kUint16);
  }
  std::vector<std::uint8_t> samples(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, samples.data(), 0, nullptr)) {
    throw std::runtime_error(path + ": corrupt PNG (" + png.message + ")");
  }
  return channel_first(samples, height, width, channels, client::DType::kUint8);
}

template <typename T>
void widen(const void* data, int64_t count, float* out) {
  const T* in = static_cast<const T*>(data);
  for (int64_t v = 0; v < count; ++v) out[v] = static_cast<float>(in[v]);
}

/// niftilib's voxel values (native byte order) as float32, in the file's order (i fastest).
std::vector<float> voxels_as_float(const nifti_image& nim, const std::string& path) {
  std::vector<float> out(static_cast<size_t>(nim.nvox));
  switch (nim.datatype) {
    case NIFTI_TYPE_UINT8:
      widen<std::uint8_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_INT8:
      widen<std::int8_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_UINT16:
      widen<std::uint16_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_INT16:
      widen<std::int16_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_UINT32:
      widen<std::uint32_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_INT32:
      widen<std::int32_t>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_FLOAT32:
      widen<float>(nim.data, nim.nvox, out.data());
      break;
    case NIFTI_TYPE_FLOAT64:
      widen<double>(nim.data, nim.nvox, out.data());
      break;
    default:
      throw std::runtime_error(path + ": NIfTI datatype " + nifti_datatype_string(nim.datatype) +
                               " is not a scalar real type");
  }
  const double slope = nim.scl_slope, inter = nim.scl_inter;
  if (std::isfinite(slope) && slope != 0.0 && !(slope == 1.0 && inter == 0.0)) {
    const double offset = std::isfinite(inter) ? inter : 0.0;
    for (float& v : out) v = static_cast<float>(v * slope + offset);
  }
  return out;
}

client::Image read_nifti(const std::string& path) {
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> nim(nifti_image_read(path.c_str(), 1),
                                                           nifti_image_free);
  if (!nim || nim->data == nullptr) {
    throw std::runtime_error(path + ": not a readable NIfTI file");
  }
  int64_t ndim = nim->dim[0];
  while (ndim > 2 && nim->dim[ndim] == 1) --ndim;  // trailing singleton axes (t = 1)
  if (ndim != 2 && ndim != 3) {
    throw std::runtime_error(path + ": a 2D or 3D NIfTI image is needed, this one has " +
                             std::to_string(nim->dim[0]) + " axes");
  }
  const std::vector<float> file_order = voxels_as_float(*nim, path);
  client::Image image;
  image.dtype = client::DType::kFloat32;
  for (int64_t a = 1; a <= ndim; ++a) {
    image.shape.push_back(nim->dim[a]);
    image.spacing.push_back(nim->pixdim[a]);
  }
  // The file stores i fastest; medrefine's arrays are C-order over (i, j, k): transpose.
  const int64_t nx = nim->dim[1], ny = nim->dim[2], nz = ndim == 3 ? nim->dim[3] : 1;
  image.data.resize(file_order.size() * sizeof(float));
  auto* out = reinterpret_cast<float*>(image.data.data());
  for (int64_t k = 0; k < nz; ++k) {
    for (int64_t j = 0; j < ny; ++j) {
      for (int64_t i = 0; i < nx; ++i)
        out[(i * ny + j) * nz + k] = file_order[(k * ny + j) * nx + i];
    }
  }
  return image;
}

}  // namespace

client::Image read_image_file(const std::string& path) {
  if (ends_with(path, ".png")) return read_png(path);
  if (ends_with(path, ".nii") || ends_with(path, ".nii.gz")) return read_nifti(path);
  throw std::runtime_error(path + ": unknown image type (expected .png, .nii or .nii.gz)");
}

}  // namespace medrefine::examples
