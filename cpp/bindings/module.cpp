// The only pybind11 file: it checks arguments, releases the GIL and calls the pure C++ kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "medrefine/geodesic.hpp"
#include "medrefine/region_grow.hpp"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

medrefine::Criterion parse_criterion(const std::string& name) {
  if (name == "neighbour") return medrefine::Criterion::kNeighbour;
  if (name == "seed_mean") return medrefine::Criterion::kSeedMean;
  throw std::invalid_argument("criterion must be 'neighbour' or 'seed_mean', got '" + name + "'");
}

// image: (C, *S), seeds: S with S = (H, W) or (D, H, W); both C-contiguous (enforced by noconvert).
template <typename T>
CArray<std::int32_t> region_grow(const CArray<T>& image, const CArray<std::int32_t>& seeds,
                                 double threshold, const std::string& criterion, int connectivity,
                                 double max_distance, const std::vector<double>& spacing) {
  const int ndim = static_cast<int>(seeds.ndim());
  if (ndim != 2 && ndim != 3) throw std::invalid_argument("seeds must be 2D or 3D");
  if (image.ndim() != ndim + 1) {
    throw std::invalid_argument("image must be (channels, *seeds.shape)");
  }
  std::vector<std::int64_t> shape(static_cast<std::size_t>(ndim));
  for (int a = 0; a < ndim; ++a) {
    shape[a] = seeds.shape(a);
    if (image.shape(a + 1) != seeds.shape(a)) {
      throw std::invalid_argument("image spatial shape must equal seeds.shape");
    }
  }
  medrefine::GrowParams params;
  params.threshold = threshold;
  params.criterion = parse_criterion(criterion);
  params.connectivity = connectivity;
  params.max_distance = max_distance;
  params.spacing = spacing;
  const medrefine::Grid grid = medrefine::Grid::from_shape(shape.data(), ndim);
  CArray<std::int32_t> out(shape);
  const T* image_data = image.data();
  const std::int32_t* seeds_data = seeds.data();
  std::int32_t* out_data = out.mutable_data();
  const std::int64_t channels = image.shape(0);
  {
    py::gil_scoped_release release;
    medrefine::region_grow(image_data, channels, grid, seeds_data, out_data, params);
  }
  return out;
}

template <typename T>
void def_region_grow(py::module_& m) {
  m.def("region_grow", &region_grow<T>, py::arg("image").noconvert(), py::arg("seeds").noconvert(),
        py::arg("threshold"), py::arg("criterion"), py::arg("connectivity"),
        py::arg("max_distance"), py::arg("spacing"),
        "Grow int32 seeds (-1 = unmarked) over a C-contiguous (C, *S) image; returns a new int32 "
        "array of shape S. max_distance = inf for no cap; spacing = [] for distances in steps. "
        "Private: use medrefine.region_grow, which validates its arguments.");
}

// cost, seeds: the same shape S = (H, W) or (D, H, W), C-contiguous (enforced by noconvert).
template <typename T>
CArray<float> geodesic_distance(const CArray<T>& cost, const CArray<std::uint8_t>& seeds,
                                double limit, int connectivity) {
  const int ndim = static_cast<int>(seeds.ndim());
  if (ndim != 2 && ndim != 3) throw std::invalid_argument("seeds must be 2D or 3D");
  if (cost.ndim() != ndim) throw std::invalid_argument("cost must have the shape of seeds");
  std::vector<std::int64_t> shape(static_cast<std::size_t>(ndim));
  for (int a = 0; a < ndim; ++a) {
    shape[a] = seeds.shape(a);
    if (cost.shape(a) != seeds.shape(a)) {
      throw std::invalid_argument("cost must have the shape of seeds");
    }
  }
  const medrefine::Grid grid = medrefine::Grid::from_shape(shape.data(), ndim);
  CArray<float> out(shape);
  const T* cost_data = cost.data();
  const std::uint8_t* seeds_data = seeds.data();
  float* out_data = out.mutable_data();
  {
    py::gil_scoped_release release;
    medrefine::geodesic_distance(cost_data, grid, seeds_data, limit, connectivity, out_data);
  }
  return out;
}

template <typename T>
void def_geodesic_distance(py::module_& m) {
  m.def("geodesic_distance", &geodesic_distance<T>, py::arg("cost").noconvert(),
        py::arg("seeds").noconvert(), py::arg("limit"), py::arg("connectivity"),
        "float32 least path cost from the non-zero uint8 seeds over a C-contiguous cost array of "
        "the same shape; inf beyond limit. Private: use medrefine.geodesic_distance, which "
        "validates its arguments.");
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "medrefine native kernels (private; use the medrefine package facade)";
  m.attr("ABI_VERSION") = 1;
  def_region_grow<std::uint8_t>(m);
  def_region_grow<std::uint16_t>(m);
  def_region_grow<std::int16_t>(m);
  def_region_grow<std::int32_t>(m);
  def_region_grow<float>(m);
  def_region_grow<double>(m);
  def_geodesic_distance<float>(m);
  def_geodesic_distance<double>(m);
}
