// The only pybind11 file: it checks arguments, releases the GIL and calls the pure C++ kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "medrefine/geodesic.hpp"
#include "medrefine/mincut.hpp"
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

// terminal: S = (H, W) or (D, H, W); offsets: (K, len(S)) int32; forward, backward: (K, *S); all
// C-contiguous (enforced by noconvert).
std::pair<CArray<std::uint8_t>, double> grid_min_cut(const CArray<double>& terminal,
                                                     const CArray<std::int32_t>& offsets,
                                                     const CArray<double>& forward,
                                                     const CArray<double>& backward) {
  const int ndim = static_cast<int>(terminal.ndim());
  if (ndim != 2 && ndim != 3) throw std::invalid_argument("terminal must be 2D or 3D");
  if (offsets.ndim() != 2 || offsets.shape(1) != ndim) {
    throw std::invalid_argument("offsets must be (K, terminal.ndim)");
  }
  const py::ssize_t count = offsets.shape(0);
  std::vector<std::int64_t> shape(static_cast<std::size_t>(ndim));
  for (int a = 0; a < ndim; ++a) shape[a] = terminal.shape(a);
  for (const CArray<double>* edges : {&forward, &backward}) {
    if (edges->ndim() != ndim + 1 || edges->shape(0) != count) {
      throw std::invalid_argument("forward and backward must be (K, *terminal.shape)");
    }
    for (int a = 0; a < ndim; ++a) {
      if (edges->shape(a + 1) != terminal.shape(a)) {
        throw std::invalid_argument("forward and backward must be (K, *terminal.shape)");
      }
    }
  }
  std::vector<std::array<int, 3>> steps(static_cast<std::size_t>(count), {0, 0, 0});
  for (py::ssize_t k = 0; k < count; ++k) {
    for (int a = 0; a < ndim; ++a) steps[k][3 - ndim + a] = offsets.at(k, a);
  }
  const medrefine::Grid grid = medrefine::Grid::from_shape(shape.data(), ndim);
  CArray<std::uint8_t> out(shape);
  const double* terminal_data = terminal.data();
  const double* forward_data = forward.data();
  const double* backward_data = backward.data();
  std::uint8_t* out_data = out.mutable_data();
  double flow = 0.0;
  {
    py::gil_scoped_release release;
    flow =
        medrefine::grid_min_cut(terminal_data, grid, steps, forward_data, backward_data, out_data);
  }
  return {out, flow};
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
  m.def("grid_min_cut", &grid_min_cut, py::arg("terminal").noconvert(),
        py::arg("offsets").noconvert(), py::arg("forward").noconvert(),
        py::arg("backward").noconvert(),
        "Exact s-t min cut of a grid graph: float64 terminal S (> 0 source capacity, < 0 sink "
        "capacity), int32 offsets (K, ndim), float64 forward/backward (K, *S) arc capacities. "
        "Returns (uint8 S, 1 = sink side, flow). Private: use medrefine.kernels.grid_min_cut, "
        "which validates its arguments.");
}
