// Multi-class region growing from seed marks (breadth-first, all classes together, ring by ring).
//
// Rules (the Python facade medrefine.region_grow documents the same contract):
// - Ring 0 is the seed pixels (label >= 0; -1 = unmarked). Ring r + 1 is every unmarked pixel n
//   that a pixel p of ring r reaches: n is a neighbour of p (see PaddedGrid::steps) and
//     criterion kNeighbour: |I(n) - I(p)| < threshold,
//     criterion kSeedMean:  |I(n) - mean(stroke of p)| < threshold,
//   and, with a distance cap, distance(p) + step length <= max_distance. |.| is the absolute
//   difference for one channel and the Euclidean norm over channels, computed in double.
// - A stroke is a connected component (same connectivity) of seed pixels of one class; its mean is
//   taken over its pixels that are not NaN, summed in flat-index order. A grown pixel takes the
//   stroke of the pixel it is reached from.
// - Distance: a seed has 0; without spacing a ring-r pixel has r; with spacing it is the parent's
//   distance plus the step length in mm.
// - A pixel reached in one ring by two classes stays unmarked for good and is not expanded. A pixel
//   reached by one class from several parents takes the smallest distance, then the smallest
//   stroke id (strokes are numbered in the flat-index order of their first pixel).
// - Seeds never change; NaN pixels (any channel NaN) never join and NaN seeds do not expand.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "medrefine/detail/brick_grower.hpp"
#include "medrefine/detail/queue_grower.hpp"
#include "medrefine/detail/strokes.hpp"
#include "medrefine/grid.hpp"

namespace medrefine {

enum class Criterion { kNeighbour, kSeedMean };

struct GrowParams {
  double threshold = 0.0;  // a neighbour joins when its difference is strictly below this
  Criterion criterion = Criterion::kNeighbour;
  int connectivity = 1;  // 1: faces, 2: + edges, 3: + corners (3D only)
  double max_distance = std::numeric_limits<double>::infinity();  // steps, or mm with spacing
  std::vector<double> spacing;  // empty, or one pixel size per spatial axis in array order
};

// Grows `seeds` into `out`: both int32, C order, `grid.size()` pixels, not overlapping. `image` is
// C-contiguous (channels, *spatial), spatial axes in array order ((y, x) or (z, y, x)), `channels`
// >= 1. Throws std::invalid_argument on bad parameters.
template <typename T>
void region_grow(const T* image, std::int64_t channels, const Grid& grid, const std::int32_t* seeds,
                 std::int32_t* out, const GrowParams& params) {
  if (channels < 1) throw std::invalid_argument("image must have at least one channel");
  if (!(params.threshold >= 0.0)) throw std::invalid_argument("threshold must be >= 0");
  if (!(params.max_distance >= 0.0)) throw std::invalid_argument("max_distance must be >= 0");
  const std::vector<Step> steps = PaddedGrid(grid).steps(params.connectivity, params.spacing);
  if (grid.size() == 0) return;
  const detail::Pixels<T> pixels{image, channels, grid.size()};
  const double t = params.threshold;
  const double cap = params.max_distance;
  const bool mean = params.criterion == Criterion::kSeedMean;
  // Path lengths in mm matter for a cap, and with seed_mean for which stroke a pixel inherits: the
  // queue grower tracks them. Otherwise every pixel of a ring has distance = ring, and the brick
  // grower (many pixels per operation) applies.
  if (!params.spacing.empty() && (mean || std::isfinite(cap))) {
    if (mean) return detail::QueueGrower<T, true>(pixels, grid, steps, t, cap, seeds, out).run();
    return detail::QueueGrower<T, false>(pixels, grid, steps, t, cap, seeds, out).run();
  }
  const double rings = params.spacing.empty() ? cap : std::numeric_limits<double>::infinity();
  if (mean) return detail::BrickGrower<T, true>(pixels, grid, steps, t, rings, seeds, out).run();
  detail::BrickGrower<T, false>(pixels, grid, steps, t, rings, seeds, out).run();
}

}  // namespace medrefine
