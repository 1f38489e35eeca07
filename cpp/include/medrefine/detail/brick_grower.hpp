// Ring-by-ring growth on bricks of 64 pixels (see bricks.hpp): each ring, every growing unit (a
// class for criterion kNeighbour, a stroke for kSeedMean) moves its frontier one step with a few
// bit operations per brick. Used whenever no path lengths are needed (see region_grow.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "medrefine/detail/bricks.hpp"
#include "medrefine/detail/compare.hpp"
#include "medrefine/detail/edge_masks.hpp"
#include "medrefine/detail/strokes.hpp"
#include "medrefine/grid.hpp"

namespace medrefine {
namespace detail {

struct BrickBits {
  std::int64_t brick;
  Bits bits;
};

// The pixels that grow together: all seeds of a class, or one stroke.
struct Unit {
  std::int32_t cls;
  const double* mean;  // stroke mean (kSeedMean), else unused
  std::vector<BrickBits> frontier;
  std::vector<BrickBits> next;
};

// Everything the growth keeps per brick, in one cache line.
struct alignas(64) BrickState {
  Bits free = 0;       // pixels that may still join
  Bits proposed = 0;   // pixels the current unit reaches this ring
  Bits claim = 0;      // claimed this ring by the current class
  Bits claimed = 0;    // claimed this ring by any class
  Bits contested = 0;  // claimed this ring by two classes
  Bits owned = 0;      // joined pixels of class `owner`
  Bits near = 0;       // kSeedMean: pixels near the mean of unit `near_unit`
  std::int32_t owner = -1;
  std::int32_t near_unit = -1;
};

template <typename T, bool kSeedMean>
class BrickGrower {
 public:
  BrickGrower(const Pixels<T>& pixels, const Grid& grid, const std::vector<Step>& steps,
              double threshold, double max_rings, const std::int32_t* seeds, std::int32_t* out)
      : pixels_(pixels),
        grid_(grid),
        steps_(steps),
        bricks_(grid),
        threshold_(threshold),
        max_rings_(max_rings),
        seeds_(seeds),
        out_(out) {
    for (const Part& part : make_parts(bricks_, steps)) {
      (part.brick == 0 ? inner_parts_ : outer_parts_).push_back(part);
    }
    for (int b = 0; b < 64; ++b) offset_[b] = bricks_.pixel_offset(b);
    if constexpr (!kSeedMean) {
      edges_ = std::make_unique<EdgeMasks<T>>(pixels, bricks_, edge_directions(steps), threshold);
    }
  }

  void run() {
    initialise();
    for (std::int64_t ring = 1; static_cast<double>(ring) <= max_rings_; ++ring) {
      if (!grow_ring()) break;
    }
    write_labels();
  }

 private:
  // Output = seeds; free pixels = unmarked ones; one unit per class or stroke, with its seeds.
  void initialise() {
    const std::array<std::int64_t, 3>& d = grid_.dims;
    const std::array<int, 3>& shape = bricks_.shape();
    const std::array<std::int64_t, 3>& count = bricks_.count();
    state_.assign(static_cast<std::size_t>(bricks_.size()), BrickState{});
    origin_.assign(state_.size(), 0);
    for (std::int64_t bz = 0; bz + 2 < count[0]; ++bz) {
      for (std::int64_t by = 0; by + 2 < count[1]; ++by) {
        for (std::int64_t bx = 0; bx + 2 < count[2]; ++bx) {
          const std::int64_t z = bz * shape[0], y = by * shape[1], x = bx * shape[2];
          origin_[static_cast<std::size_t>(bricks_.brick(z, y, x))] = (z * d[1] + y) * d[2] + x;
        }
      }
    }
    std::vector<std::int64_t> seeds;
    for (std::int64_t z = 0; z < d[0]; ++z) {
      for (std::int64_t y = 0; y < d[1]; ++y) {
        const std::int64_t row = (z * d[1] + y) * d[2];
        const int shift = bricks_.bit(z, y, 0);
        BrickState* first = &state_[static_cast<std::size_t>(bricks_.brick(z, y, 0))];
        for (std::int64_t x0 = 0; x0 < d[2]; x0 += shape[2]) {
          const int width = static_cast<int>(std::min<std::int64_t>(shape[2], d[2] - x0));
          const Bits bits = unmarked(seeds_ + row + x0, out_ + row + x0, width);
          first[x0 / shape[2]].free |= bits << shift;
          if (bits == (Bits{1} << width) - 1) continue;
          for (int k = 0; k < width; ++k) {
            if (seeds_[row + x0 + k] >= 0) seeds.push_back(row + x0 + k);
          }
        }
      }
    }
    make_units(seeds);
  }

  // Copies `width` (<= 8) seeds to `out`; bit k: seed k is unmarked.
  static Bits unmarked(const std::int32_t* seeds, std::int32_t* out, int width) {
#if defined(__SSE2__)
    if (width % 4 == 0) {
      Bits bits = 0;
      for (int k = 0; k < width; k += 4) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(seeds + k));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), v);
        bits |= static_cast<Bits>(_mm_movemask_ps(_mm_castsi128_ps(v))) << k;  // sign bits
      }
      return bits;
    }
#endif
    Bits bits = 0;
    for (int k = 0; k < width; ++k) {
      out[k] = seeds[k];
      bits |= Bits{seeds[k] < 0} << k;
    }
    return bits;
  }

  void make_units(const std::vector<std::int64_t>& seeds) {
    std::vector<std::int32_t> unit_of_seed(seeds.size());
    if constexpr (kSeedMean) {
      strokes_ = find_strokes(pixels_, grid_, steps_, seeds_, seeds, out_);
      units_.resize(static_cast<std::size_t>(strokes_.count));
      for (std::size_t s = 0; s < seeds.size(); ++s) {
        const std::size_t k = static_cast<std::size_t>(strokes_.of_seed[s]);
        units_[k].cls = seeds_[seeds[s]];
        units_[k].mean = &strokes_.means[k * static_cast<std::size_t>(pixels_.channels)];
        unit_of_seed[s] = strokes_.of_seed[s];
      }
    } else {
      std::vector<std::int32_t> classes;
      for (std::int64_t p : seeds) classes.push_back(seeds_[p]);
      std::sort(classes.begin(), classes.end());
      classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
      for (std::int32_t cls : classes) units_.push_back({cls, nullptr, {}, {}});
      for (std::size_t s = 0; s < seeds.size(); ++s) {
        const auto it = std::lower_bound(classes.begin(), classes.end(), seeds_[seeds[s]]);
        unit_of_seed[s] = static_cast<std::int32_t>(it - classes.begin());
      }
    }
    const std::array<std::int64_t, 3>& d = grid_.dims;
    for (std::size_t s = 0; s < seeds.size(); ++s) {
      const std::int64_t p = seeds[s];
      if (pixels_.is_nan(p)) continue;  // NaN seeds do not grow
      const std::int64_t z = p / (d[1] * d[2]), y = (p / d[2]) % d[1], x = p % d[2];
      units_[static_cast<std::size_t>(unit_of_seed[s])].frontier.push_back(
          {bricks_.brick(z, y, x), Bits{1} << bricks_.bit(z, y, x)});
    }
    // Classes grow in increasing order, the strokes of a class in increasing id.
    std::stable_sort(units_.begin(), units_.end(),
                     [](const Unit& a, const Unit& b) { return a.cls < b.cls; });
  }

  // Moves every unit one ring; returns whether any pixel joined.
  bool grow_ring() {
    ring_bricks_.clear();
    for (std::size_t first = 0; first < units_.size();) {
      std::size_t last = first;
      class_bricks_.clear();
      while (last < units_.size() && units_[last].cls == units_[first].cls) propose(last++);
      // Pixels claimed by this class and an earlier one in the same ring are contested.
      for (std::int64_t b : class_bricks_) {
        BrickState& s = state_[static_cast<std::size_t>(b)];
        if (s.claimed == 0) ring_bricks_.push_back(b);
        s.contested |= s.claim & s.claimed;
        s.claimed |= s.claim;
        s.claim = 0;
      }
      first = last;
    }
    bool grew = false;
    for (Unit& unit : units_) {
      std::size_t kept = 0;
      for (const BrickBits& c : unit.next) {
        BrickState& s = state_[static_cast<std::size_t>(c.brick)];
        const Bits bits = c.bits & ~s.contested;
        if (bits == 0) continue;
        label(unit.cls, c.brick, s, bits);
        unit.next[kept++] = {c.brick, bits};
      }
      unit.next.resize(kept);
      std::swap(unit.frontier, unit.next);
      unit.next.clear();
      grew = grew || kept > 0;
    }
    for (std::int64_t b : ring_bricks_) {
      BrickState& s = state_[static_cast<std::size_t>(b)];
      s.free &= ~s.claimed;  // joined or contested: never free again
      s.claimed = 0;
      s.contested = 0;
    }
    return grew;
  }

  // The pixels unit u reaches this ring, less those an earlier stroke of its class took.
  void propose(std::size_t u) {
    Unit& unit = units_[u];
    touched_.clear();
    for (std::size_t j = 0; j < unit.frontier.size(); ++j) {
      const BrickBits& f = unit.frontier[j];
      if (j + kAhead < unit.frontier.size()) {  // warm the bricks a few entries ahead
        const std::int64_t ahead = unit.frontier[j + kAhead].brick;
        for (std::int64_t k : {std::int64_t{0}, bricks_.stride()[0], -bricks_.stride()[0],
                               bricks_.stride()[1], -bricks_.stride()[1]}) {
          MEDREFINE_PREFETCH(&state_[static_cast<std::size_t>(ahead + k)]);
        }
        if constexpr (!kSeedMean) MEDREFINE_PREFETCH(edges_->address(ahead));
      }
      const Bits* edges = kSeedMean ? nullptr : edges_->of(f.brick);
      Bits inner = 0;
      for (const Part& part : inner_parts_) {
        Bits src = f.bits & part.mask;
        if constexpr (!kSeedMean) src &= part.forward ? edges[part.edge] : ~Bits{0};
        Bits moved = (src << part.left) >> part.right;
        if constexpr (!kSeedMean) moved &= part.forward ? ~Bits{0} : edges[part.edge];
        inner |= moved;
      }
      offer(f.brick, inner);
      for (const Part& part : outer_parts_) {
        Bits src = f.bits & part.mask;
        if (src == 0) continue;
        const std::int64_t to = f.brick + part.brick;
        if constexpr (!kSeedMean) src &= part.forward ? edges[part.edge] : ~Bits{0};
        Bits moved = (src << part.left) >> part.right;
        if constexpr (!kSeedMean) moved &= part.forward ? ~Bits{0} : edges_->of(to)[part.edge];
        offer(to, moved);
      }
    }
    for (std::size_t j = 0; j < touched_.size(); ++j) {
      const std::int64_t b = touched_[j];
      // Stroke means need the pixels of the brick: fetch those of a brick a few places ahead.
      if (kSeedMean && j + kAhead < touched_.size()) {
        const std::size_t ahead = static_cast<std::size_t>(touched_[j + kAhead]);
        if (state_[ahead].near_unit != static_cast<std::int32_t>(u)) {
          for (int r = 0; r < 64; r += bricks_.shape()[2]) {
            MEDREFINE_PREFETCH(pixels_.data + origin_[ahead] + offset_[r]);
          }
        }
      }
      BrickState& s = state_[static_cast<std::size_t>(b)];
      Bits bits = s.proposed & s.free & ~s.claim;
      s.proposed = 0;
      if (bits == 0) continue;  // also every padding brick: never look at its pixels
      if constexpr (kSeedMean) bits &= near_mean(b, s, u);
      if (bits == 0) continue;
      if (s.claim == 0) class_bricks_.push_back(b);
      s.claim |= bits;
      unit.next.push_back({b, bits});
    }
  }

  void offer(std::int64_t b, Bits bits) {
    if (bits == 0) return;
    BrickState& s = state_[static_cast<std::size_t>(b)];
    if (s.proposed == 0) touched_.push_back(b);
    s.proposed |= bits;
  }

  // Pixels of brick b within the threshold of unit u's stroke mean (cached per brick).
  Bits near_mean(std::int64_t b, BrickState& s, std::size_t u) {
    if (s.near_unit == static_cast<std::int32_t>(u)) return s.near;
    const double* mean = units_[u].mean;
    const std::array<std::int64_t, 3>& d = grid_.dims;
    const std::array<int, 3>& shape = bricks_.shape();
    const std::int64_t o = origin_[static_cast<std::size_t>(b)];
    const std::int64_t z0 = o / (d[1] * d[2]), y0 = (o / d[2]) % d[1], x0 = o % d[2];
    const int width = static_cast<int>(std::min<std::int64_t>(shape[2], d[2] - x0));
    Bits near = 0;
    for (int r = 0; r < shape[0] * shape[1]; ++r) {
      if (z0 + r / shape[1] >= d[0] || y0 + r % shape[1] >= d[1]) continue;
      const std::int64_t p = o + offset_[r * shape[2]];
      for (int k = 0; k < width; k += 4) {
        unsigned bits = 0;
        if (pixels_.channels == 1 && k + 4 <= width) {
          bits = near4(pixels_.data + p + k, mean[0], threshold_);
        } else {
          for (int j = k; j < std::min(k + 4, width); ++j) {
            bits |= static_cast<unsigned>(pixels_.difference(p + j, mean) < threshold_) << (j - k);
          }
        }
        near |= Bits{bits} << (r * shape[2] + k);
      }
    }
    s.near = near;
    s.near_unit = static_cast<std::int32_t>(u);
    return near;
  }

  // Records that `bits` of brick b joined class cls.
  void label(std::int32_t cls, std::int64_t b, BrickState& s, Bits bits) {
    if (s.owner < 0 || s.owner == cls) {
      s.owner = cls;
      s.owned |= bits;
    } else {
      others_.push_back({b, bits, cls});
    }
  }

  void write_labels() {
    for (std::size_t b = 0; b < state_.size(); ++b) {
      if (state_[b].owned != 0) write(state_[b].owner, origin_[b], state_[b].owned);
    }
    for (const Other& o : others_) write(o.cls, origin_[static_cast<std::size_t>(o.brick)], o.bits);
  }

  void write(std::int32_t cls, std::int64_t origin, Bits bits) {
    std::int32_t* base = out_ + origin;
    if (bits == ~Bits{0}) {  // a whole brick: rows of pixels
      const std::array<int, 3>& shape = bricks_.shape();
      for (int r = 0; r < shape[0] * shape[1]; ++r) {
        std::fill_n(base + offset_[r * shape[2]], shape[2], cls);
      }
      return;
    }
    for (; bits != 0; bits &= bits - 1) base[offset_[lowest_bit(bits)]] = cls;
  }

  static constexpr std::size_t kAhead = 8;

  struct Other {
    std::int64_t brick;
    Bits bits;
    std::int32_t cls;
  };

  Pixels<T> pixels_;
  Grid grid_;
  const std::vector<Step>& steps_;
  BrickGrid bricks_;
  std::vector<Part> inner_parts_;        // moves within the brick
  std::vector<Part> outer_parts_;        // moves into a neighbouring brick
  std::unique_ptr<EdgeMasks<T>> edges_;  // kNeighbour only
  double threshold_;
  double max_rings_;
  const std::int32_t* seeds_;
  std::int32_t* out_;
  std::int64_t offset_[64];
  Strokes strokes_;
  std::vector<Unit> units_;
  std::vector<BrickState> state_;
  std::vector<std::int64_t> origin_;  // flat index of each brick's first pixel
  std::vector<Other> others_;         // joined pixels of a second class in an owned brick
  std::vector<std::int64_t> touched_, class_bricks_, ring_bricks_;
};

}  // namespace detail
}  // namespace medrefine
