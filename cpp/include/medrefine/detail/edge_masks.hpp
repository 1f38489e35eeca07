// Criterion kNeighbour on bricks: for each brick and each edge direction e (one per pair of
// opposite steps), bit p is set when |I(p + e) - I(p)| < threshold, p + e inside the image.
// Computed lazily, a whole row of bricks at a time, reading rows of pixels in memory order.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "medrefine/detail/bricks.hpp"
#include "medrefine/detail/compare.hpp"
#include "medrefine/detail/strokes.hpp"

namespace medrefine {
namespace detail {

template <typename T>
class EdgeMasks {
 public:
  EdgeMasks(const Pixels<T>& pixels, const BrickGrid& bricks,
            std::vector<std::array<int, 3>> directions, double threshold)
      : pixels_(pixels),
        bricks_(bricks),
        directions_(std::move(directions)),
        threshold_(threshold),
        masks_(static_cast<std::size_t>(bricks.size()) * directions_.size(), 0),
        ready_(static_cast<std::size_t>(bricks.size()), 0) {}

  // Where the masks of brick b are (computed or not), for prefetching.
  const Bits* address(std::int64_t b) const {
    return &masks_[static_cast<std::size_t>(b) * directions_.size()];
  }

  // The masks of brick b, one per direction (all zero for padding bricks).
  const Bits* of(std::int64_t b) {
    if (!ready_[static_cast<std::size_t>(b)]) compute_row(b);
    return &masks_[static_cast<std::size_t>(b) * directions_.size()];
  }

 private:
  void compute_row(std::int64_t b) {
    const std::array<std::int64_t, 3>& c = bricks_.count();
    const std::array<std::int64_t, 3>& d = bricks_.grid().dims;
    const std::array<int, 3>& shape = bricks_.shape();
    const std::int64_t bz = b / c[1] / c[2] - 1, by = b / c[2] % c[1] - 1;
    const std::int64_t first = b - b % c[2];
    std::fill_n(ready_.begin() + first, c[2], std::uint8_t{1});
    if (bz < 0 || by < 0 || bz * shape[0] >= d[0] || by * shape[1] >= d[1]) return;  // padding
    for (std::int64_t z = bz * shape[0]; z < std::min(d[0], (bz + 1) * shape[0]); ++z) {
      for (std::int64_t y = by * shape[1]; y < std::min(d[1], (by + 1) * shape[1]); ++y) {
        for (std::size_t e = 0; e < directions_.size(); ++e) compute_pixel_row(z, y, e);
      }
    }
  }

  // Direction e for the pixels of row (z, y).
  void compute_pixel_row(std::int64_t z, std::int64_t y, std::size_t e) {
    const std::array<std::int64_t, 3>& d = bricks_.grid().dims;
    const std::array<int, 3>& dir = directions_[e];
    const std::int64_t z2 = z + dir[0], y2 = y + dir[1], w = d[2], dx = dir[2];
    if (z2 < 0 || z2 >= d[0] || y2 < 0 || y2 >= d[1]) return;
    const std::int64_t a = (z * d[1] + y) * w, b = (z2 * d[1] + y2) * w + dx;
    const int sx = bricks_.shape()[2];
    const int shift = bricks_.bit(z, y, 0);
    Bits* masks = &masks_[static_cast<std::size_t>(bricks_.brick(z, y, 0)) * directions_.size()];
    // Groups of 4 pixels whose neighbours along x are all in the row take the vectorised path.
    const bool fast = pixels_.channels == 1;
    const std::int64_t lo = dx < 0 ? 4 : 0, hi = dx > 0 ? w - 4 - 1 : w - 4;
    for (std::int64_t x0 = 0; x0 < w; x0 += sx) {
      Bits bits = 0;
      for (std::int64_t x = x0; x < std::min(x0 + sx, w); x += 4) {
        const unsigned near = fast && x >= lo && x <= hi
                                  ? near4(pixels_.data + b + x, pixels_.data + a + x, threshold_)
                                  : near_pixels(a + x, b + x, std::min<std::int64_t>(4, w - x),
                                                std::max<std::int64_t>(0, -dx - x),
                                                std::min<std::int64_t>(4, w - dx - x));
        bits |= Bits{near} << (x - x0);
      }
      masks[static_cast<std::size_t>(x0 / sx) * directions_.size() + e] |= bits << shift;
    }
  }

  // Bit j < count (only lo <= j < hi may be set): |I(b + j) - I(a + j)| < threshold.
  unsigned near_pixels(std::int64_t a, std::int64_t b, std::int64_t count, std::int64_t lo,
                       std::int64_t hi) {
    ref_.resize(static_cast<std::size_t>(pixels_.channels));
    unsigned near = 0;
    for (std::int64_t j = std::max<std::int64_t>(lo, 0); j < std::min(count, hi); ++j) {
      for (std::int64_t c = 0; c < pixels_.channels; ++c) {
        ref_[static_cast<std::size_t>(c)] = pixels_.value(a + j, c);
      }
      near |= static_cast<unsigned>(pixels_.difference(b + j, ref_.data()) < threshold_) << j;
    }
    return near;
  }

  Pixels<T> pixels_;
  const BrickGrid& bricks_;
  std::vector<std::array<int, 3>> directions_;
  double threshold_;
  std::vector<Bits> masks_;
  std::vector<std::uint8_t> ready_;
  std::vector<double> ref_;
};

}  // namespace detail
}  // namespace medrefine
