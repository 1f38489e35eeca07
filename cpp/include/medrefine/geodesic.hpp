// Geodesic distance from seed pixels over a per-pixel cost (Dijkstra on the pixel grid).
//
// Rules (the Python facade medrefine.geodesic_distance documents the same contract):
// - A path moves between neighbours (see PaddedGrid::steps; every offset in {-1, 0, 1}^ndim that
//   moves along at most `connectivity` axes). A step of Euclidean length l (1, sqrt 2, sqrt 3)
//   from pixel a to pixel b costs l * (cost[a] + cost[b]) / 2; a path costs the sum of its steps.
// - distance[i] is the least cost of a path from any seed to i (0 on seeds); +inf when that least
//   cost exceeds `limit` or no path exists. Pixels are settled in order of distance and the search
//   stops at `limit`: the queue holds only pixels within it. Checking the cost, finding the seeds
//   and writing the output each sweep the whole grid, so the work is the grid size plus
//   P log P for the P pixels within `limit`; a small limit saves the search, not the sweeps.
// - cost must be finite and >= 0 everywhere (checked); limit must be >= 0 (inf = no limit).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medrefine/grid.hpp"

namespace medrefine {

// Writes `grid.size()` distances into `out`. `cost` and `seeds` (non-zero = seed) are C order over
// the spatial axes of `grid`. Throws std::invalid_argument on a bad cost, limit or connectivity.
template <typename T>
void geodesic_distance(const T* cost, const Grid& grid, const std::uint8_t* seeds, double limit,
                       int connectivity, float* out) {
  if (!(limit >= 0.0)) throw std::invalid_argument("limit must be >= 0");
  const PaddedGrid padded(grid);
  const std::vector<double> unit(static_cast<std::size_t>(grid.ndim), 1.0);
  const std::vector<Step> steps = padded.steps(connectivity, unit);
  const std::int64_t n = grid.size();
  for (std::int64_t i = 0; i < n; ++i) {
    const double c = static_cast<double>(cost[i]);
    if (!(c >= 0.0) || !std::isfinite(c)) {
      throw std::invalid_argument("cost must be finite and >= 0 everywhere");
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> dist(static_cast<std::size_t>(n), inf);
  // Padded flags: 1 = outside the grid or settled, so a neighbour look-up needs no bounds check.
  std::vector<std::uint8_t> closed(static_cast<std::size_t>(padded.size()), 1);
  using Entry = std::pair<double, Node>;
  auto later = [](const Entry& a, const Entry& b) { return a.first > b.first; };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> queue(later);
  padded.for_each_pixel([&](const Node& p) {
    closed[static_cast<std::size_t>(p.padded)] = 0;
    if (seeds[p.image] == 0) return;
    dist[static_cast<std::size_t>(p.image)] = 0.0;
    queue.push({0.0, p});
  });
  while (!queue.empty()) {
    const auto [here, p] = queue.top();
    queue.pop();
    std::uint8_t& done = closed[static_cast<std::size_t>(p.padded)];
    if (done) continue;  // an older, longer entry of a settled pixel
    done = 1;
    const double half = 0.5 * static_cast<double>(cost[p.image]);
    for (const Step& step : steps) {
      if (closed[static_cast<std::size_t>(p.padded + step.padded)]) continue;
      const std::int64_t q = p.image + step.image;
      const double next = here + step.length * (half + 0.5 * static_cast<double>(cost[q]));
      if (next > limit || !(next < dist[static_cast<std::size_t>(q)])) continue;
      dist[static_cast<std::size_t>(q)] = next;
      queue.push({next, Node{q, p.padded + step.padded}});
    }
  }
  for (std::int64_t j = 0; j < n; ++j)
    out[j] = static_cast<float>(dist[static_cast<std::size_t>(j)]);
}

}  // namespace medrefine
