// Seed pixels and strokes (connected components of same-class seed pixels), shared by the growers.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "medrefine/grid.hpp"

namespace medrefine {
namespace detail {

// Reads pixel i, channel c of a C-contiguous (channels, n) image as double.
template <typename T>
struct Pixels {
  const T* data;
  std::int64_t channels;
  std::int64_t n;

  double value(std::int64_t i, std::int64_t c) const {
    return static_cast<double>(data[c * n + i]);
  }
  bool is_nan(std::int64_t i) const {
    if constexpr (std::is_floating_point_v<T>) {
      for (std::int64_t c = 0; c < channels; ++c) {
        if (std::isnan(data[c * n + i])) return true;
      }
    }
    (void)i;
    return false;
  }
  // |I(i) - ref|: absolute difference for one channel, Euclidean norm over several.
  double difference(std::int64_t i, const double* ref) const {
    if (channels == 1) return std::fabs(value(i, 0) - ref[0]);
    double squares = 0.0;
    for (std::int64_t c = 0; c < channels; ++c) {
      const double d = value(i, c) - ref[c];
      squares += d * d;
    }
    return std::sqrt(squares);
  }
};

// Flat indices of the seed pixels (label >= 0), in flat order.
inline std::vector<std::int64_t> seed_pixels(const std::int32_t* seeds, std::int64_t n) {
  std::vector<std::int64_t> found;
  for (std::int64_t i = 0; i < n; ++i) {
    if (seeds[i] >= 0) found.push_back(i);
  }
  return found;
}

struct Strokes {
  std::vector<std::int32_t> of_seed;  // stroke id of each seed pixel, aligned with the seed list
  std::vector<double> means;          // (count, channels): mean over the stroke's non-NaN pixels
  std::int32_t count = 0;
};

// Numbers the strokes in flat order of their first pixel. `scratch` holds a copy of the seeds on
// entry and on return (it is used to mark visited pixels meanwhile).
template <typename T>
Strokes find_strokes(const Pixels<T>& pixels, const Grid& grid, const std::vector<Step>& steps,
                     const std::int32_t* seeds, const std::vector<std::int64_t>& seed_list,
                     std::int32_t* scratch) {
  Strokes strokes;
  const std::array<std::int64_t, 3>& dims = grid.dims;
  std::vector<std::int64_t> stack;
  for (std::int64_t first : seed_list) {
    if (scratch[first] < 0) continue;  // already numbered: scratch holds -2 - stroke id
    const std::int32_t cls = seeds[first];
    const std::int32_t id = strokes.count++;
    scratch[first] = -2 - id;
    stack.push_back(first);
    while (!stack.empty()) {
      const std::int64_t p = stack.back();
      stack.pop_back();
      const std::int64_t coord[3] = {p / (dims[1] * dims[2]), (p / dims[2]) % dims[1], p % dims[2]};
      for (const Step& step : steps) {
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          const std::int64_t c = coord[a] + step.d[a];
          inside = inside && c >= 0 && c < dims[a];
        }
        const std::int64_t q = p + step.image;
        if (!inside || seeds[q] != cls || scratch[q] < 0) continue;
        scratch[q] = -2 - id;
        stack.push_back(q);
      }
    }
  }
  const std::size_t channels = static_cast<std::size_t>(pixels.channels);
  strokes.means.assign(static_cast<std::size_t>(strokes.count) * channels, 0.0);
  std::vector<std::int64_t> used(static_cast<std::size_t>(strokes.count), 0);
  for (std::int64_t p : seed_list) {
    const std::int32_t id = -2 - scratch[p];
    scratch[p] = seeds[p];
    strokes.of_seed.push_back(id);
    if (pixels.is_nan(p)) continue;
    for (std::size_t c = 0; c < channels; ++c) {
      strokes.means[static_cast<std::size_t>(id) * channels + c] +=
          pixels.value(p, static_cast<std::int64_t>(c));
    }
    ++used[static_cast<std::size_t>(id)];
  }
  for (std::size_t k = 0; k < used.size(); ++k) {
    for (std::size_t c = 0; c < channels; ++c) {
      double& mean = strokes.means[k * channels + c];
      mean = used[k] > 0 ? mean / static_cast<double>(used[k])
                         : std::numeric_limits<double>::quiet_NaN();
    }
  }
  return strokes;
}

}  // namespace detail
}  // namespace medrefine
