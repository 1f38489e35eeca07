// Spatial grids for the kernels: a C-contiguous 2D (y, x) or 3D (z, y, x) pixel grid, the same grid
// with a one-pixel border on every spatial axis (so neighbour look-ups need no bounds checks), and
// the neighbour steps of a connectivity as flat offsets in both.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace medrefine {

// A C-contiguous spatial grid. Always stored as three axes (z, y, x); a 2D grid has z = 1.
struct Grid {
  int ndim = 2;                               // number of spatial axes: 2 or 3
  std::array<std::int64_t, 3> dims{1, 0, 0};  // sizes along z, y, x

  // `shape` holds `ndim` sizes in array order ((y, x) or (z, y, x)).
  static Grid from_shape(const std::int64_t* shape, int ndim) {
    if (ndim != 2 && ndim != 3) {
      throw std::invalid_argument("grid must have 2 or 3 spatial axes");
    }
    Grid grid;
    grid.ndim = ndim;
    for (int a = 0; a < ndim; ++a) {
      if (shape[a] < 0) throw std::invalid_argument("grid sizes must be non-negative");
      grid.dims[3 - ndim + a] = shape[a];
    }
    return grid;
  }

  std::int64_t size() const { return dims[0] * dims[1] * dims[2]; }
};

// One neighbour step: its flat offset in the image, in the padded grid, and its length (in steps
// of 1, or in mm when a spacing is given).
struct Step {
  std::int64_t image;
  std::int64_t padded;
  double length;
  std::array<int, 3> d;  // the offset along z, y, x
};

// A pixel by its flat index in the image and in the padded grid.
struct Node {
  std::int64_t image;
  std::int64_t padded;
};

// The grid with one extra layer of pixels before and after every spatial axis.
class PaddedGrid {
 public:
  explicit PaddedGrid(const Grid& grid) : grid_(grid) {
    for (int a = 0; a < 3; ++a) {
      pad_[a] = (a >= 3 - grid.ndim) ? 1 : 0;
      dims_[a] = grid.dims[a] + 2 * pad_[a];
    }
  }

  const Grid& grid() const { return grid_; }
  std::int64_t size() const { return dims_[0] * dims_[1] * dims_[2]; }

  // Calls f(Node) for every image pixel in C order, with its flat index in the image and here.
  template <typename F>
  void for_each_pixel(F&& f) const {
    const std::array<std::int64_t, 3>& d = grid_.dims;
    std::int64_t i = 0;
    for (std::int64_t z = 0; z < d[0]; ++z) {
      for (std::int64_t y = 0; y < d[1]; ++y) {
        const std::int64_t row = index(z, y, 0);
        for (std::int64_t x = 0; x < d[2]; ++x, ++i) f(Node{i, row + x});
      }
    }
  }

  // Padded flat index of the image pixel (z, y, x).
  std::int64_t index(std::int64_t z, std::int64_t y, std::int64_t x) const {
    return ((z + pad_[0]) * dims_[1] + (y + pad_[1])) * dims_[2] + (x + pad_[2]);
  }

  // Steps to the neighbours of a pixel: every offset in {-1, 0, 1}^ndim, except zero, that moves
  // along at most `connectivity` axes (1: faces, 2: + edges, 3: + corners). `spacing` is empty
  // (every step has length 1) or holds one positive size per spatial axis in array order; a step's
  // length is then the Euclidean norm of the offset scaled by the spacing.
  std::vector<Step> steps(int connectivity, const std::vector<double>& spacing) const {
    const int ndim = grid_.ndim;
    if (connectivity < 1 || connectivity > ndim) {
      throw std::invalid_argument("connectivity must be between 1 and the number of axes");
    }
    if (!spacing.empty() && static_cast<int>(spacing.size()) != ndim) {
      throw std::invalid_argument("spacing must have one entry per spatial axis");
    }
    for (double s : spacing) {
      if (!(s > 0.0) || !std::isfinite(s)) {
        throw std::invalid_argument("spacing entries must be positive and finite");
      }
    }
    std::vector<Step> steps;
    const int zmax = (ndim == 3) ? 1 : 0;
    for (int dz = -zmax; dz <= zmax; ++dz) {
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const std::array<int, 3> d{dz, dy, dx};
          const int moved = (dz != 0) + (dy != 0) + (dx != 0);
          if (moved == 0 || moved > connectivity) continue;
          steps.push_back(make_step(d, spacing));
        }
      }
    }
    return steps;
  }

 private:
  Step make_step(const std::array<int, 3>& d, const std::vector<double>& spacing) const {
    const std::array<std::int64_t, 3>& n = grid_.dims;
    Step step;
    step.image = (d[0] * n[1] + d[1]) * n[2] + d[2];
    step.padded = (d[0] * dims_[1] + d[1]) * dims_[2] + d[2];
    step.length = 1.0;
    step.d = d;
    if (!spacing.empty()) {
      double squares = 0.0;
      for (int a = 3 - grid_.ndim; a < 3; ++a) {
        const double scaled = d[a] * spacing[a - (3 - grid_.ndim)];
        squares += scaled * scaled;
      }
      step.length = std::sqrt(squares);
    }
    return step;
  }

  Grid grid_;
  std::array<std::int64_t, 3> pad_{};
  std::array<std::int64_t, 3> dims_{};
};

}  // namespace medrefine
