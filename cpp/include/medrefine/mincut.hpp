// Exact s-t minimum cut on a 2D or 3D pixel grid (Boykov-Kolmogorov max-flow).
//
// Rules (the Python facade medrefine.kernels.grid_min_cut documents the same contract):
// - One graph node per pixel. terminal[p] > 0 is the capacity source -> p, terminal[p] < 0 makes
//   -terminal[p] the capacity p -> sink.
// - Every neighbour offset k (a step in {-1, 0, 1} per axis, not all zero) adds the arcs
//   p -> p + offset_k of capacity forward[k][p] and p + offset_k -> p of capacity backward[k][p]
//   for every pixel p whose p + offset_k lies inside the grid; the other entries are ignored.
//   Offsets may repeat (parallel arcs add up).
// - The result is the max-flow value and, per pixel, 1 when it is on the sink side of the cut:
//   exactly the pixels from which the sink is reachable in the final residual graph (the unique
//   smallest sink side of all minimum cuts), 0 otherwise.
// - Capacities must be finite and >= 0 and terminals finite (checked; std::invalid_argument).
//
// Algorithm (Boykov & Kolmogorov, PAMI 2004): a search tree grows from each terminal over arcs with
// residual capacity; where the trees touch, the path through both is augmented by its bottleneck;
// the nodes cut off from their tree root by saturated arcs (orphans) look for a new parent in
// their tree (preferring the one closest to the root, with the distance and time-stamp marks of
// the paper) or are freed. It stops when neither tree can grow. A last breadth-first pass from
// the sink over the residual graph writes the sink side.
//
// Memory: the nodes live in the grid padded by one pixel on each spatial axis (grid.hpp), so a
// neighbour never needs a bounds check; padding nodes have no arcs and stay free. Per padded
// node: 2K residual capacities and one terminal residual (double), and 14 bytes of search state.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "medrefine/grid.hpp"

namespace medrefine {

namespace detail {

// The max-flow state over the padded grid. Arc d of a node (0 <= d < 2K) leads to the neighbour
// node + step[d]: arc 2k follows offset k, arc 2k + 1 goes against it, so arc d ^ 1 of the
// neighbour leads back. residual[node * 2K + d] is the residual capacity of that arc.
class GridMaxFlow {
 public:
  GridMaxFlow(const Grid& grid, const std::vector<std::array<int, 3>>& offsets)
      : padded_(grid), arcs_(2 * static_cast<int>(offsets.size())) {
    const std::int64_t size = padded_.size();
    if (size > std::numeric_limits<std::int32_t>::max() - 2) {
      throw std::invalid_argument("grid too large for the min cut (more than 2^31 nodes)");
    }
    if (arcs_ > kMaxArcs) throw std::invalid_argument("too many neighbour offsets (at most 126)");
    const std::array<std::int64_t, 3> strides{padded_.index(1, 0, 0) - padded_.index(0, 0, 0),
                                              padded_.index(0, 1, 0) - padded_.index(0, 0, 0), 1};
    for (const std::array<int, 3>& o : offsets) {
      for (int a = 0; a < 3; ++a) {
        if (o[a] < -1 || o[a] > 1) {
          throw std::invalid_argument("offset steps must be -1, 0 or 1");
        }
      }
      if (o[0] == 0 && o[1] == 0 && o[2] == 0) {
        throw std::invalid_argument("an offset must not be all zero");
      }
      if (grid.ndim == 2 && o[0] != 0) {
        throw std::invalid_argument("a 2D grid's offsets must have dz = 0");
      }
      const auto step =
          static_cast<std::int32_t>(o[0] * strides[0] + o[1] * strides[1] + o[2] * strides[2]);
      step_.push_back(step);
      step_.push_back(-step);
    }
    const auto n = static_cast<std::size_t>(size);
    residual_.assign(n * static_cast<std::size_t>(arcs_), 0.0);
    terminal_.assign(n, 0.0);
    tree_.assign(n, kFree);
    parent_.assign(n, kNoParent);
    dist_.assign(n, 0);
    stamp_.assign(n, 0);
    next_.assign(n, kNotQueued);
  }

  // terminal: one value per image pixel; forward, backward: K blocks of one value per pixel.
  void set_capacities(const double* terminal, const double* forward, const double* backward) {
    const Grid& grid = padded_.grid();
    const std::int64_t n = grid.size();
    const int k_count = arcs_ / 2;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(terminal[i])) throw std::invalid_argument("terminal must be finite");
    }
    for (std::int64_t i = 0; i < n * k_count; ++i) {
      if (!(forward[i] >= 0.0) || !std::isfinite(forward[i]) || !(backward[i] >= 0.0) ||
          !std::isfinite(backward[i])) {
        throw std::invalid_argument("edge capacities must be finite and >= 0");
      }
    }
    // Padded flags: 1 inside the image, so an arc is kept only when its far end is a pixel.
    std::vector<std::uint8_t> inside(static_cast<std::size_t>(padded_.size()), 0);
    padded_.for_each_pixel([&](const Node& p) { inside[static_cast<std::size_t>(p.padded)] = 1; });
    padded_.for_each_pixel([&](const Node& p) {
      const auto u = static_cast<std::int32_t>(p.padded);
      terminal_[static_cast<std::size_t>(u)] = terminal[p.image];
      for (int k = 0; k < k_count; ++k) {
        const std::int32_t v = u + step_[static_cast<std::size_t>(2 * k)];
        if (!inside[static_cast<std::size_t>(v)]) continue;
        const std::int64_t at = k * n + p.image;
        residual_[arc(u, 2 * k)] += forward[at];
        residual_[arc(v, 2 * k + 1)] += backward[at];
      }
    });
  }

  // Runs the max-flow; returns its value.
  double solve() {
    padded_.for_each_pixel([&](const Node& p) {
      const auto u = static_cast<std::int32_t>(p.padded);
      const double t = terminal_[static_cast<std::size_t>(u)];
      if (t == 0.0) return;
      tree_[static_cast<std::size_t>(u)] = t > 0.0 ? kSource : kSink;
      parent_[static_cast<std::size_t>(u)] = kTerminal;
      dist_[static_cast<std::size_t>(u)] = 1;
      activate(u);
    });
    double flow = 0.0;
    for (;;) {
      std::int32_t s = -1;  // the source-tree end of the arc joining the trees
      int joint = 0;        // its arc to the sink-tree end
      if (!grow(s, joint)) break;
      ++time_;
      flow += augment(s, joint);
      adopt_orphans();
    }
    return flow;
  }

  // Writes 1 for every image pixel from which the sink is reachable over residual arcs, else 0.
  void sink_side(std::uint8_t* out) {
    // Reuses tree_ as the visited flag (1 = reaches the sink) and the orphan list as the queue.
    std::fill(tree_.begin(), tree_.end(), kFree);
    orphans_.clear();
    padded_.for_each_pixel([&](const Node& p) {
      const auto u = static_cast<std::size_t>(p.padded);
      if (terminal_[u] < 0.0) {
        tree_[u] = kSink;
        orphans_.push_back(static_cast<std::int32_t>(p.padded));
      }
    });
    for (std::size_t head = 0; head < orphans_.size(); ++head) {
      const std::int32_t v = orphans_[head];
      for (int d = 0; d < arcs_; ++d) {
        const std::int32_t u = v + step_[static_cast<std::size_t>(d)];
        if (tree_[static_cast<std::size_t>(u)] == kFree && residual_[arc(u, d ^ 1)] > 0.0) {
          tree_[static_cast<std::size_t>(u)] = kSink;
          orphans_.push_back(u);
        }
      }
    }
    padded_.for_each_pixel([&](const Node& p) {
      out[p.image] = tree_[static_cast<std::size_t>(p.padded)] == kSink ? 1 : 0;
    });
  }

 private:
  static constexpr int kMaxArcs = 252;  // parent_ is one byte; its top values are flags
  static constexpr std::uint8_t kFree = 0;
  static constexpr std::uint8_t kSource = 1;
  static constexpr std::uint8_t kSink = 2;
  // parent_ holds the arc to the parent (0 .. 2K - 1) or one of these.
  static constexpr std::uint8_t kTerminal = 253;
  static constexpr std::uint8_t kOrphan = 254;
  static constexpr std::uint8_t kNoParent = 255;
  static constexpr std::int32_t kNotQueued = -1;
  static constexpr std::int32_t kEnd = -2;
  static constexpr std::int32_t kFar = std::numeric_limits<std::int32_t>::max();

  std::size_t arc(std::int32_t node, int d) const {
    return static_cast<std::size_t>(node) * static_cast<std::size_t>(arcs_) +
           static_cast<std::size_t>(d);
  }
  std::int32_t neighbour(std::int32_t node, int d) const {
    return node + step_[static_cast<std::size_t>(d)];
  }

  // Active nodes: a FIFO list threaded through next_ (kNotQueued when a node is not in it).
  void activate(std::int32_t u) {
    if (next_[static_cast<std::size_t>(u)] != kNotQueued) return;
    next_[static_cast<std::size_t>(u)] = kEnd;
    if (tail_ == kEnd) {
      head_ = u;
    } else {
      next_[static_cast<std::size_t>(tail_)] = u;
    }
    tail_ = u;
  }
  void pop_active() {
    const std::int32_t u = head_;
    head_ = next_[static_cast<std::size_t>(u)];
    next_[static_cast<std::size_t>(u)] = kNotQueued;
    if (head_ == kEnd) tail_ = kEnd;
  }

  // Grows the trees from the active nodes until an arc with residual capacity joins a source-tree
  // node s to a sink-tree node (through s's arc `joint`). The node that found it stays active.
  bool grow(std::int32_t& s, int& joint) {
    while (head_ != kEnd) {
      const std::int32_t u = head_;
      const std::size_t ui = static_cast<std::size_t>(u);
      const std::uint8_t side = tree_[ui];
      if (side == kFree) {
        pop_active();
        continue;
      }
      const double* out = &residual_[arc(u, 0)];
      for (int d = 0; d < arcs_; ++d) {
        const std::int32_t v = neighbour(u, d);
        // Residual capacity in the tree's direction: away from the source, towards the sink.
        const double cap = side == kSource ? out[d] : residual_[arc(v, d ^ 1)];
        if (!(cap > 0.0)) continue;
        const std::size_t vi = static_cast<std::size_t>(v);
        const std::uint8_t other = tree_[vi];
        if (other == kFree) {
          tree_[vi] = side;
          parent_[vi] = static_cast<std::uint8_t>(d ^ 1);
          stamp_[vi] = stamp_[ui];
          dist_[vi] = dist_[ui] + 1;
          activate(v);
        } else if (other != side) {
          s = side == kSource ? u : v;
          joint = side == kSource ? d : d ^ 1;
          return true;
        } else if (stamp_[vi] <= stamp_[ui] && dist_[vi] > dist_[ui]) {
          // A shorter way to the root (the paper's heuristic; keeps trees shallow).
          parent_[vi] = static_cast<std::uint8_t>(d ^ 1);
          stamp_[vi] = stamp_[ui];
          dist_[vi] = dist_[ui] + 1;
        }
      }
      pop_active();
    }
    return false;
  }

  // Pushes the bottleneck along source -> ... -> s -> t -> ... -> sink; saturated tree arcs make
  // orphans. Returns the bottleneck.
  double augment(std::int32_t s, int joint) {
    const std::int32_t t = neighbour(s, joint);
    double bottleneck = residual_[arc(s, joint)];
    for (std::int32_t u = s;;) {
      const std::uint8_t a = parent_[static_cast<std::size_t>(u)];
      if (a == kTerminal) {
        bottleneck = std::min(bottleneck, terminal_[static_cast<std::size_t>(u)]);
        break;
      }
      const std::int32_t p = neighbour(u, a);
      bottleneck = std::min(bottleneck, residual_[arc(p, a ^ 1)]);
      u = p;
    }
    for (std::int32_t u = t;;) {
      const std::uint8_t a = parent_[static_cast<std::size_t>(u)];
      if (a == kTerminal) {
        bottleneck = std::min(bottleneck, -terminal_[static_cast<std::size_t>(u)]);
        break;
      }
      bottleneck = std::min(bottleneck, residual_[arc(u, a)]);
      u = neighbour(u, a);
    }
    residual_[arc(s, joint)] -= bottleneck;
    residual_[arc(t, joint ^ 1)] += bottleneck;
    for (std::int32_t u = s;;) {
      const std::size_t ui = static_cast<std::size_t>(u);
      const std::uint8_t a = parent_[ui];
      if (a == kTerminal) {
        terminal_[ui] -= bottleneck;
        if (terminal_[ui] == 0.0) make_orphan(u);
        break;
      }
      const std::int32_t p = neighbour(u, a);
      residual_[arc(u, a)] += bottleneck;
      double& down = residual_[arc(p, a ^ 1)];
      down -= bottleneck;
      if (down == 0.0) make_orphan(u);
      u = p;
    }
    for (std::int32_t u = t;;) {
      const std::size_t ui = static_cast<std::size_t>(u);
      const std::uint8_t a = parent_[ui];
      if (a == kTerminal) {
        terminal_[ui] += bottleneck;
        if (terminal_[ui] == 0.0) make_orphan(u);
        break;
      }
      const std::int32_t p = neighbour(u, a);
      residual_[arc(p, a ^ 1)] += bottleneck;
      double& up = residual_[arc(u, a)];
      up -= bottleneck;
      if (up == 0.0) make_orphan(u);
      u = p;
    }
    return bottleneck;
  }

  void make_orphan(std::int32_t u) {
    parent_[static_cast<std::size_t>(u)] = kOrphan;
    orphans_.push_back(u);
  }

  // Finds each orphan a new parent in its tree with an unbroken way to the root, or frees it (its
  // children become orphans, and its tree neighbours that could grow into it again turn active).
  void adopt_orphans() {
    for (std::size_t next = 0; next < orphans_.size(); ++next) {
      const std::int32_t u = orphans_[next];
      const std::size_t ui = static_cast<std::size_t>(u);
      const std::uint8_t side = tree_[ui];
      int best = -1;
      std::int32_t best_dist = kFar;
      for (int d = 0; d < arcs_; ++d) {
        const std::int32_t v = neighbour(u, d);
        if (tree_[static_cast<std::size_t>(v)] != side) continue;
        const double cap = side == kSource ? residual_[arc(v, d ^ 1)] : residual_[arc(u, d)];
        if (!(cap > 0.0)) continue;
        const std::int32_t length = root_distance(v);
        if (length == kFar) continue;
        if (length < best_dist) {
          best = d;
          best_dist = length;
        }
      }
      if (best >= 0) {
        parent_[ui] = static_cast<std::uint8_t>(best);
        stamp_[ui] = time_;
        dist_[ui] = best_dist + 1;
        continue;
      }
      for (int d = 0; d < arcs_; ++d) {
        const std::int32_t v = neighbour(u, d);
        const std::size_t vi = static_cast<std::size_t>(v);
        if (tree_[vi] != side) continue;
        const double cap = side == kSource ? residual_[arc(v, d ^ 1)] : residual_[arc(u, d)];
        if (cap > 0.0) activate(v);
        if (parent_[vi] == (d ^ 1)) make_orphan(v);
      }
      tree_[ui] = kFree;
      parent_[ui] = kNoParent;
    }
    orphans_.clear();
  }

  // Length of the tree path from v to its terminal, or kFar when it runs into an orphan. Marks
  // the nodes on a valid path with this round's time stamp and their distance.
  std::int32_t root_distance(std::int32_t v) {
    std::int32_t length = 0;
    for (std::int32_t u = v;;) {
      const std::size_t ui = static_cast<std::size_t>(u);
      if (stamp_[ui] == time_) {
        length += dist_[ui];
        break;
      }
      const std::uint8_t a = parent_[ui];
      ++length;
      if (a == kTerminal) {
        stamp_[ui] = time_;
        dist_[ui] = 1;
        break;
      }
      if (a == kOrphan) return kFar;
      u = neighbour(u, a);
    }
    std::int32_t remaining = length;
    for (std::int32_t u = v; stamp_[static_cast<std::size_t>(u)] != time_;) {
      const std::size_t ui = static_cast<std::size_t>(u);
      stamp_[ui] = time_;
      dist_[ui] = remaining--;
      u = neighbour(u, parent_[ui]);
    }
    return length;
  }

  PaddedGrid padded_;
  int arcs_;
  std::vector<std::int32_t> step_;
  std::vector<double> residual_;
  std::vector<double> terminal_;  // > 0: residual source -> node; < 0: residual node -> sink
  std::vector<std::uint8_t> tree_;
  std::vector<std::uint8_t> parent_;
  std::vector<std::int32_t> dist_;
  std::vector<std::int32_t> stamp_;
  std::vector<std::int32_t> next_;
  std::vector<std::int32_t> orphans_;
  std::int32_t head_ = kEnd;
  std::int32_t tail_ = kEnd;
  std::int32_t time_ = 0;
};

}  // namespace detail

// Minimum s-t cut of the grid graph described at the top of this file. `terminal` holds
// grid.size() values in C order; `forward` and `backward` hold offsets.size() blocks of
// grid.size() values (block k for offset k); offsets are (dz, dy, dx) with dz = 0 on a 2D grid.
// Writes grid.size() flags into `sink_side` (1 = sink side) and returns the max-flow value.
// Throws std::invalid_argument on a bad offset or capacity.
inline double grid_min_cut(const double* terminal, const Grid& grid,
                           const std::vector<std::array<int, 3>>& offsets, const double* forward,
                           const double* backward, std::uint8_t* sink_side) {
  detail::GridMaxFlow graph(grid, offsets);
  graph.set_capacities(terminal, forward, backward);
  const double flow = graph.solve();
  graph.sink_side(sink_side);
  return flow;
}

}  // namespace medrefine
