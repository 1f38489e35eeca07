// Unit tests of medrefine::grid_min_cut on graphs whose min cut is worked out by hand (plain
// checks; exit status 1 if any check failed).
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medrefine/mincut.hpp"

namespace {

using Offsets = std::vector<std::array<int, 3>>;
using Flags = std::vector<std::uint8_t>;

struct Cut {
  double flow;
  Flags sink;
};

Cut cut(const std::vector<std::int64_t>& shape, const std::vector<double>& terminal,
        const Offsets& offsets, const std::vector<double>& forward,
        const std::vector<double>& backward) {
  const medrefine::Grid grid =
      medrefine::Grid::from_shape(shape.data(), static_cast<int>(shape.size()));
  Flags sink(terminal.size(), 7);
  const double flow = medrefine::grid_min_cut(terminal.data(), grid, offsets, forward.data(),
                                              backward.data(), sink.data());
  return {flow, sink};
}

bool near(double a, double b) { return std::abs(a - b) < 1e-12; }

void test_a_chain_is_cut_at_its_weakest_arc() {
  // source -5-> a -2-> b -3-> c -4-> sink: flow 2; b and c still reach the sink.
  const Cut c = cut({1, 3}, {5, 0, -4}, {{0, 0, 1}}, {2, 3, 99}, {0, 0, 0});
  CHECK(near(c.flow, 2.0));
  CHECK((c.sink == Flags{0, 1, 1}));
}

void test_ties_give_the_smallest_sink_side() {
  // source -1-> a -1-> b -1-> sink: every arc is a min cut; the sink side is empty.
  const Cut c = cut({1, 2}, {1, -1}, {{0, 0, 1}}, {1, 0}, {0, 0});
  CHECK(near(c.flow, 1.0));
  CHECK((c.sink == Flags{0, 0}));
}

void test_backward_capacity_is_the_reverse_arc() {
  // a -> sink 3, source -> b 3; a -> b 10 cannot carry flow, b -> a 2 can.
  const Cut c = cut({1, 2}, {-3, 3}, {{0, 0, 1}}, {10, 0}, {2, 0});
  CHECK(near(c.flow, 2.0));
  CHECK((c.sink == Flags{1, 0}));
}

void test_arcs_leaving_the_grid_are_ignored() {
  // 2 x 2, offset (0, 1): (0, 1)'s forward entry would wrap to (1, 0) if it were used.
  const Cut c = cut({2, 2}, {4, 0, 0, -4}, {{0, 0, 1}}, {7, 100, 100, 100}, {0, 0, 0, 0});
  CHECK(near(c.flow, 0.0));
  CHECK((c.sink == Flags{0, 0, 1, 1}));  // (1, 0) -> (1, 1) is a real arc
}

void test_a_3d_diagonal_offset() {
  // 2 x 2 x 2, offset (1, 1, 1): only (0, 0, 0) -> (1, 1, 1) lies inside the grid.
  std::vector<double> terminal(8, 0.0);
  terminal[0] = 5.0;
  terminal[7] = -2.0;
  terminal[1] = 1.0;  // (0, 0, 1): its (1, 1, 1) step leaves the grid
  std::vector<double> forward(8, 50.0);
  forward[0] = 3.0;
  const Cut c = cut({2, 2, 2}, terminal, {{1, 1, 1}}, forward, std::vector<double>(8, 0.0));
  CHECK(near(c.flow, 2.0));
  CHECK((c.sink == Flags(8, 0)));
}

void test_columns_of_a_3d_grid_are_independent() {
  // 2 x 1 x 3, offset (1, 0, 0): three columns top -> bottom with capacities 1, 2, 3 between
  // source 2 on top and sink 2 below: flows 1, 2, 2.
  const std::vector<double> terminal{2, 2, 2, -2, -2, -2};
  const std::vector<double> forward{1, 2, 3, 0, 0, 0};
  const Cut c = cut({2, 1, 3}, terminal, {{1, 0, 0}}, forward, std::vector<double>(6, 0.0));
  CHECK(near(c.flow, 5.0));
  // Column 0: the arc is the cut, the bottom still reaches the sink. Column 1: terminals and arc
  // all saturated, nothing reaches the sink. Column 2: the sink arc is the cut.
  CHECK((c.sink == Flags{0, 0, 0, 1, 0, 0}));
}

void test_a_grid_between_two_walls() {
  // H x W, 4-connected, unit capacities both ways; source wall on the left, sink on the right:
  // every column boundary is a cut of H; the smallest sink side is the right wall alone.
  const std::int64_t h = 6, w = 9;
  const std::size_t n = static_cast<std::size_t>(h * w);
  std::vector<double> terminal(n, 0.0);
  for (std::int64_t y = 0; y < h; ++y) {
    terminal[static_cast<std::size_t>(y * w)] = 10.0;
    terminal[static_cast<std::size_t>(y * w + w - 1)] = -10.0;
  }
  const std::vector<double> ones(2 * n, 1.0);
  const Cut c = cut({h, w}, terminal, {{0, 0, 1}, {0, 1, 0}}, ones, ones);
  CHECK(near(c.flow, static_cast<double>(h)));
  for (std::int64_t i = 0; i < h * w; ++i) {
    CHECK(c.sink[static_cast<std::size_t>(i)] == (i % w == w - 1 ? 1 : 0));
  }
}

void test_no_terminals_no_flow() {
  const Cut c = cut({3, 3}, std::vector<double>(9, 0.0), {{0, 1, 1}}, std::vector<double>(9, 1.0),
                    std::vector<double>(9, 1.0));
  CHECK(c.flow == 0.0);
  CHECK((c.sink == Flags(9, 0)));
}

template <typename F>
bool throws_invalid(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void test_bad_input_throws() {
  const std::vector<double> zeros(4, 0.0);
  const std::vector<double> negative{0, -1, 0, 0};
  const std::vector<double> nan{0, std::numeric_limits<double>::quiet_NaN(), 0, 0};
  CHECK(throws_invalid([&] { cut({2, 2}, zeros, {{0, 0, 0}}, zeros, zeros); }));
  CHECK(throws_invalid([&] { cut({2, 2}, zeros, {{0, 2, 0}}, zeros, zeros); }));
  CHECK(throws_invalid([&] { cut({2, 2}, zeros, {{1, 0, 0}}, zeros, zeros); }));  // dz in 2D
  CHECK(throws_invalid([&] { cut({2, 2}, zeros, {{0, 1, 0}}, negative, zeros); }));
  CHECK(throws_invalid([&] { cut({2, 2}, zeros, {{0, 1, 0}}, zeros, nan); }));
  CHECK(throws_invalid([&] { cut({2, 2}, nan, {{0, 1, 0}}, zeros, zeros); }));
}

}  // namespace

int main() {
  test_a_chain_is_cut_at_its_weakest_arc();
  test_ties_give_the_smallest_sink_side();
  test_backward_capacity_is_the_reverse_arc();
  test_arcs_leaving_the_grid_are_ignored();
  test_a_3d_diagonal_offset();
  test_columns_of_a_3d_grid_are_independent();
  test_a_grid_between_two_walls();
  test_no_terminals_no_flow();
  test_bad_input_throws();
  return medrefine_test::checks_exit_status();
}
