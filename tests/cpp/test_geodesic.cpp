// Unit tests of medrefine::geodesic_distance (plain checks; exit status 1 if any check failed).
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medrefine/geodesic.hpp"

namespace {

using Seeds = std::vector<std::uint8_t>;
const double kInf = std::numeric_limits<double>::infinity();

std::vector<float> distance(const std::vector<double>& cost, const std::vector<std::int64_t>& shape,
                            const Seeds& seeds, double limit = kInf, int connectivity = 0) {
  const int ndim = static_cast<int>(shape.size());
  const medrefine::Grid grid = medrefine::Grid::from_shape(shape.data(), ndim);
  std::vector<float> out(cost.size(), -1.0f);
  medrefine::geodesic_distance(cost.data(), grid, seeds.data(), limit,
                               connectivity == 0 ? ndim : connectivity, out.data());
  return out;
}

bool near(double a, double b) { return std::abs(a - b) < 1e-5; }

void test_unit_cost_is_the_chamfer_distance() {
  const std::vector<double> ones(5 * 7, 1.0);
  Seeds seeds(ones.size(), 0);
  seeds[0] = 1;
  const std::vector<float> d = distance(ones, {5, 7}, seeds);
  CHECK(d[0] == 0.0f);
  CHECK(near(d[4], 4.0));                               // (0, 4): straight
  CHECK(near(d[3 * 7 + 3], 3.0 * std::sqrt(2.0)));      // (3, 3): diagonal
  CHECK(near(d[2 * 7 + 4], 2.0 * std::sqrt(2.0) + 2));  // (2, 4): two diagonal, two straight
  const std::vector<float> faces = distance(ones, {5, 7}, seeds, kInf, 1);
  CHECK(near(faces[3 * 7 + 3], 6.0));  // 4-neighbour paths only
}

void test_a_costly_wall_is_walked_around() {
  // 7x7, a wall of cost 100 on column 3 except a gap at row 6; seed at (0, 0).
  std::vector<double> cost(49, 1.0);
  for (int y = 0; y < 6; ++y) cost[y * 7 + 3] = 100.0;
  Seeds seeds(49, 0);
  seeds[0] = 1;
  const std::vector<float> d = distance(cost, {7, 7}, seeds);
  // Straight across the wall would cost 2 + 2 * (1 + 100) / 2 + 2 = 105; the way through the
  // gap costs at most 6 diagonal-or-straight steps down and 6 across (< 20).
  CHECK(d[6] < 20.0f);
  CHECK(d[6] > 6.0f);
  CHECK(near(d[6 * 7 + 3], 3.0 * std::sqrt(2.0) + 3.0));  // the gap: as if there were no wall
}

void test_limit_and_unreachable() {
  const std::vector<double> ones(10, 1.0);
  Seeds seeds(10, 0);
  seeds[0] = 1;
  const std::vector<float> d = distance(ones, {1, 10}, seeds, 3.5);
  CHECK(near(d[3], 3.0));
  CHECK(std::isinf(d[4]));
  const std::vector<float> none = distance(ones, {1, 10}, Seeds(10, 0));
  bool all_inf = true;
  for (float v : none) all_inf = all_inf && std::isinf(v);
  CHECK(all_inf);
}

void test_three_dimensions() {
  const std::vector<double> ones(27, 1.0);
  Seeds seeds(27, 0);
  seeds[0] = 1;
  CHECK(near(distance(ones, {3, 3, 3}, seeds)[26], 2.0 * std::sqrt(3.0)));
  CHECK(near(distance(ones, {3, 3, 3}, seeds, kInf, 1)[26], 6.0));
  CHECK(near(distance(ones, {3, 3, 3}, seeds, kInf, 2)[13], std::sqrt(2.0) + 1.0));
}

void test_bad_parameters_throw() {
  int thrown = 0;
  const std::vector<std::vector<double>> costs = {{1.0, -1.0}, {1.0, std::nan("")}, {1.0, kInf}};
  for (const std::vector<double>& cost : costs) {
    try {
      distance(cost, {1, 2}, Seeds{1, 0});
    } catch (const std::invalid_argument&) {
      ++thrown;
    }
  }
  try {
    distance({1.0, 1.0}, {1, 2}, Seeds{1, 0}, -1.0);
  } catch (const std::invalid_argument&) {
    ++thrown;
  }
  try {
    distance({1.0, 1.0}, {1, 2}, Seeds{1, 0}, kInf, 3);
  } catch (const std::invalid_argument&) {
    ++thrown;
  }
  CHECK(thrown == 5);
}

}  // namespace

int main() {
  test_unit_cost_is_the_chamfer_distance();
  test_a_costly_wall_is_walked_around();
  test_limit_and_unreachable();
  test_three_dimensions();
  test_bad_parameters_throw();
  return medrefine_test::checks_exit_status();
}
