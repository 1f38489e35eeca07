// Ring-by-ring growth one pixel at a time, with each pixel's path length: used when a spacing makes
// distances matter (a cap in mm, or which stroke a pixel inherits; see region_grow.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "medrefine/detail/strokes.hpp"
#include "medrefine/grid.hpp"

namespace medrefine {
namespace detail {

enum PixelState : std::uint8_t { kFree = 0, kClaimed = 1, kDone = 2, kContested = 3 };

// A growable array of nodes whose push stays small enough to be inlined in the hot loop.
class NodeBuffer {
 public:
  void push(const Node& node) {
    if (size_ == capacity_) grow();
    data_[size_++] = node;
  }
  Node* data() { return data_.get(); }
  std::size_t size() const { return size_; }
  void resize(std::size_t size) { size_ = size; }

 private:
  void grow() {
    const std::size_t capacity = std::max<std::size_t>(1024, 2 * capacity_);
    std::unique_ptr<Node[]> data(new Node[capacity]);
    std::copy(data_.get(), data_.get() + size_, data.get());
    data_ = std::move(data);
    capacity_ = capacity;
  }

  std::unique_ptr<Node[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

template <typename T, bool kSeedMean>
class QueueGrower {
 public:
  QueueGrower(const Pixels<T>& pixels, const Grid& grid, const std::vector<Step>& steps,
              double threshold, double max_distance, const std::int32_t* seeds, std::int32_t* out)
      : pixels_(pixels),
        grid_(grid),
        padded_(grid),
        steps_(steps),
        threshold_(threshold),
        max_distance_(max_distance),
        seeds_(seeds),
        out_(out),
        ref_(static_cast<std::size_t>(pixels.channels)) {}

  void run() {
    NodeBuffer frontier;
    NodeBuffer next;
    initialise(frontier);
    while (frontier.size() > 0) {
      next.resize(0);
      for (std::size_t j = 0; j < frontier.size(); ++j) expand(frontier.data()[j], next);
      settle(next);
      std::swap(frontier, next);
    }
  }

 private:
  // Output = seeds; padded state grid; distances (and strokes) of the seeds; ring 0.
  void initialise(NodeBuffer& frontier) {
    const std::int64_t n = grid_.size();
    std::memcpy(out_, seeds_, sizeof(std::int32_t) * static_cast<std::size_t>(n));
    state_.assign(static_cast<std::size_t>(padded_.size()), kDone);
    dist_.reset(new double[static_cast<std::size_t>(n)]);
    const std::vector<std::int64_t> seeds = seed_pixels(seeds_, n);
    if constexpr (kSeedMean) {
      stroke_.reset(new std::int32_t[static_cast<std::size_t>(n)]);
      strokes_ = find_strokes(pixels_, grid_, steps_, seeds_, seeds, out_);
      for (std::size_t s = 0; s < seeds.size(); ++s) stroke_[seeds[s]] = strokes_.of_seed[s];
    }
    padded_.for_each_pixel([&](const Node& p) {
      if (seeds_[p.image] < 0) {
        state_[static_cast<std::size_t>(p.padded)] = kFree;
        return;
      }
      dist_[p.image] = 0.0;
      if (!pixels_.is_nan(p.image)) frontier.push(p);  // NaN seeds do not grow
    });
  }

  // Offers every neighbour of p (a pixel of the current ring) to p's class.
  void expand(const Node& p, NodeBuffer& next) {
    const std::int32_t cls = out_[p.image];
    const double* ref = reference(p.image);
    const double base = dist_[p.image];
    const std::int32_t stroke = kSeedMean ? stroke_[p.image] : 0;
    for (const Step& step : steps_) {
      const std::int64_t q = p.padded + step.padded;
      const std::uint8_t state = state_[static_cast<std::size_t>(q)];
      if (state > kClaimed) continue;
      const std::int64_t i = p.image + step.image;
      if (!(pixels_.difference(i, ref) < threshold_)) continue;
      const double d = base + step.length;
      if (!(d <= max_distance_)) continue;
      if (state == kFree) {
        state_[static_cast<std::size_t>(q)] = kClaimed;
        out_[i] = cls;
        dist_[i] = d;
        if constexpr (kSeedMean) stroke_[i] = stroke;
        next.push({i, q});
      } else if (out_[i] != cls) {
        state_[static_cast<std::size_t>(q)] = kContested;
        out_[i] = -1;
      } else if (d < dist_[i] || (kSeedMean && d == dist_[i] && stroke < stroke_[i])) {
        // A second parent of the same class: the shorter path wins, then the smaller stroke id.
        dist_[i] = d;
        if constexpr (kSeedMean) stroke_[i] = stroke;
      }
    }
  }

  // Ends a ring: contested pixels leave the frontier, the others are final.
  void settle(NodeBuffer& next) {
    Node* data = next.data();
    std::size_t kept = 0;
    for (std::size_t j = 0; j < next.size(); ++j) {
      std::uint8_t& state = state_[static_cast<std::size_t>(data[j].padded)];
      if (state == kContested) continue;
      state = kDone;
      data[kept++] = data[j];
    }
    next.resize(kept);
  }

  const double* reference(std::int64_t i) {
    if constexpr (kSeedMean) {
      return &strokes_.means[static_cast<std::size_t>(stroke_[i]) *
                             static_cast<std::size_t>(pixels_.channels)];
    } else {
      for (std::int64_t c = 0; c < pixels_.channels; ++c) {
        ref_[static_cast<std::size_t>(c)] = pixels_.value(i, c);
      }
      return ref_.data();
    }
  }

  Pixels<T> pixels_;
  Grid grid_;
  PaddedGrid padded_;
  const std::vector<Step>& steps_;
  double threshold_;
  double max_distance_;
  const std::int32_t* seeds_;
  std::int32_t* out_;
  std::vector<double> ref_;
  std::vector<std::uint8_t> state_;
  std::unique_ptr<double[]> dist_;
  std::unique_ptr<std::int32_t[]> stroke_;
  Strokes strokes_;
};

}  // namespace detail
}  // namespace medrefine
