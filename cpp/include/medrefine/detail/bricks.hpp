// Bricks of 64 pixels, each a uint64 bit mask, so that a growth step moves many pixels at once.
// A brick is 4 x 4 x 4 pixels in 3D and 1 x 8 x 8 in 2D; bit = (lz * by + ly) * bx + lx for the
// pixel (lz, ly, lx) inside it. The brick grid has one layer of empty bricks around the image.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "medrefine/grid.hpp"

namespace medrefine {
namespace detail {

using Bits = std::uint64_t;

// A cache-line prefetch hint. A macro, not a function: GCC drops __builtin_prefetch from helper
// functions it deems free of side effects.
#if defined(__GNUC__)
#define MEDREFINE_PREFETCH(address) __builtin_prefetch(address)
#else
#define MEDREFINE_PREFETCH(address) ((void)(address))
#endif

// Index of the lowest set bit of a nonzero mask.
inline int lowest_bit(Bits bits) {
#if defined(__GNUC__)
  return __builtin_ctzll(bits);
#else
  int k = 0;
  for (; (bits & 1) == 0; bits >>= 1) ++k;
  return k;
#endif
}

class BrickGrid {
 public:
  explicit BrickGrid(const Grid& grid) : grid_(grid) {
    const int log2[3] = {grid.ndim == 3 ? 2 : 0, grid.ndim == 3 ? 2 : 3, grid.ndim == 3 ? 2 : 3};
    for (int a = 0; a < 3; ++a) {
      log2_[a] = log2[a];
      shape_[a] = 1 << log2[a];
      count_[a] = ((grid.dims[a] + shape_[a] - 1) >> log2[a]) + 2;
    }
    stride_ = {count_[1] * count_[2], count_[2], 1};
  }

  const Grid& grid() const { return grid_; }
  std::int64_t size() const { return count_[0] * count_[1] * count_[2]; }
  // Pixels per brick along z, y, x; bricks per axis (padding included); brick index strides.
  const std::array<int, 3>& shape() const { return shape_; }
  const std::array<std::int64_t, 3>& count() const { return count_; }
  const std::array<std::int64_t, 3>& stride() const { return stride_; }

  // Brick index (padded) of the pixel (z, y, x), and the pixel's bit in it.
  std::int64_t brick(std::int64_t z, std::int64_t y, std::int64_t x) const {
    return ((z >> log2_[0]) + 1) * stride_[0] + ((y >> log2_[1]) + 1) * stride_[1] +
           ((x >> log2_[2]) + 1);
  }
  int bit(std::int64_t z, std::int64_t y, std::int64_t x) const {
    const int lz = static_cast<int>(z & (shape_[0] - 1));
    const int ly = static_cast<int>(y & (shape_[1] - 1));
    const int lx = static_cast<int>(x & (shape_[2] - 1));
    return (lz * shape_[1] + ly) * shape_[2] + lx;
  }
  // Flat image offset of bit `b` from its brick's first pixel.
  std::int64_t pixel_offset(int b) const {
    const std::int64_t lx = b % shape_[2], ly = (b / shape_[2]) % shape_[1];
    const std::int64_t lz = b / (shape_[1] * shape_[2]);
    return (lz * grid_.dims[1] + ly) * grid_.dims[2] + lx;
  }

 private:
  Grid grid_;
  std::array<int, 3> log2_{};
  std::array<int, 3> shape_{};
  std::array<std::int64_t, 3> count_{};
  std::array<std::int64_t, 3> stride_{};
};

// The pixels of a brick that one step moves into one destination brick, and how their bits move.
struct Part {
  Bits mask;  // source bits
  int left;   // moved bits = ((bits & mask) << left) >> right, one of the two is 0
  int right;
  std::int64_t brick;  // destination brick, relative to the source brick
  int edge;            // index of the step's direction in the edge list (see edge_directions)
  bool forward;        // the step is that direction itself, not its opposite
};

// One direction per pair of opposite steps: the one whose first nonzero component is positive.
inline std::array<int, 3> canonical(const std::array<int, 3>& d) {
  const int sign = d[0] != 0 ? d[0] : (d[1] != 0 ? d[1] : d[2]);
  return {d[0] * sign, d[1] * sign, d[2] * sign};
}

inline std::vector<std::array<int, 3>> edge_directions(const std::vector<Step>& steps) {
  std::vector<std::array<int, 3>> edges;
  for (const Step& step : steps) {
    const std::array<int, 3> e = canonical(step.d);
    bool known = false;
    for (const auto& k : edges) known = known || k == e;
    if (!known) edges.push_back(e);
  }
  return edges;
}

// Splits every step into parts: the pixels that stay in the brick, and those that cross into each
// neighbouring brick (up to 2^k parts for a step along k axes).
inline std::vector<Part> make_parts(const BrickGrid& bricks, const std::vector<Step>& steps) {
  const std::vector<std::array<int, 3>> edges = edge_directions(steps);
  const std::array<int, 3>& shape = bricks.shape();
  std::vector<Part> parts;
  for (const Step& step : steps) {
    const std::array<int, 3> e = canonical(step.d);
    int edge = 0;
    while (edges[static_cast<std::size_t>(edge)] != e) ++edge;
    const std::size_t first = parts.size();
    for (int b = 0; b < 64; ++b) {
      const int local[3] = {b / (shape[1] * shape[2]), (b / shape[2]) % shape[1], b % shape[2]};
      std::int64_t brick = 0;
      int target = 0;
      for (int a = 0; a < 3; ++a) {
        int l = local[a] + step.d[a];
        const int cross = l < 0 ? -1 : (l >= shape[a] ? 1 : 0);
        l -= cross * shape[a];
        brick += cross * bricks.stride()[static_cast<std::size_t>(a)];
        target = target * shape[a] + l;
      }
      const int shift = target - b;
      std::size_t k = first;
      while (k < parts.size() && parts[k].brick != brick) ++k;
      if (k == parts.size()) {
        parts.push_back(
            {0, shift > 0 ? shift : 0, shift < 0 ? -shift : 0, brick, edge, e == step.d});
      }
      parts[k].mask |= Bits{1} << b;
    }
  }
  return parts;
}

}  // namespace detail
}  // namespace medrefine
