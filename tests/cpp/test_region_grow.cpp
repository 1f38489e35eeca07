// Unit tests of medrefine::region_grow (plain checks; exit status = number of failed checks).
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "medrefine/region_grow.hpp"

namespace {

using Labels = std::vector<std::int32_t>;
const double kInf = std::numeric_limits<double>::infinity();

// Grows `seeds` over `image` ((channels, *shape), C order) with the given parameters.
template <typename T>
Labels grow(const std::vector<T>& image, const std::vector<std::int64_t>& shape,
            const Labels& seeds, const medrefine::GrowParams& params, std::int64_t channels = 1) {
  const medrefine::Grid grid =
      medrefine::Grid::from_shape(shape.data(), static_cast<int>(shape.size()));
  Labels out(seeds.size(), 99);
  medrefine::region_grow(image.data(), channels, grid, seeds.data(), out.data(), params);
  return out;
}

medrefine::GrowParams params(double threshold, int connectivity = 1, double max_distance = kInf) {
  medrefine::GrowParams p;
  p.threshold = threshold;
  p.connectivity = connectivity;
  p.max_distance = max_distance;
  return p;
}

int count(const Labels& labels, std::int32_t value) {
  int n = 0;
  for (std::int32_t l : labels) n += l == value;
  return n;
}

void test_two_classes_meet_on_a_contested_line() {
  std::vector<float> ramp(25);
  for (int i = 0; i < 25; ++i) ramp[i] = static_cast<float>(i);
  Labels seeds(25, -1);
  seeds[0] = 1;
  seeds[24] = 2;
  const Labels got = grow(ramp, {5, 5}, seeds, params(5.5));
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 5; ++x) {
      const int expected = x + y < 4 ? 1 : (x + y > 4 ? 2 : -1);
      CHECK(got[y * 5 + x] == expected);
    }
  }
  medrefine::GrowParams mean = params(5.5);
  mean.criterion = medrefine::Criterion::kSeedMean;
  const Labels by_mean = grow(ramp, {5, 5}, seeds, mean);
  for (int i = 0; i < 25; ++i) CHECK(by_mean[i] == (i <= 5 ? 1 : (i >= 19 ? 2 : -1)));
}

void test_connectivity_and_step_cap() {
  const std::vector<double> flat(27, 0.0);
  Labels seeds(27, -1);
  seeds[13] = 0;
  CHECK(count(grow(flat, {3, 3, 3}, seeds, params(1.0, 1, 1.0)), 0) == 7);
  CHECK(count(grow(flat, {3, 3, 3}, seeds, params(1.0, 2, 1.0)), 0) == 19);
  CHECK(count(grow(flat, {3, 3, 3}, seeds, params(1.0, 3, 1.0)), 0) == 27);
  Labels row(7, -1);
  row[0] = 3;
  const Labels capped = grow(std::vector<double>(7, 0.0), {1, 7}, row, params(1.0, 1, 3.0));
  CHECK(count(capped, 3) == 4 && capped[3] == 3 && capped[4] == -1);
  CHECK(count(grow(std::vector<double>(7, 0.0), {1, 7}, row, params(1.0, 1, 0.0)), 3) == 1);
}

void test_spacing_caps_the_path_length() {
  Labels row(7, -1);
  row[0] = 0;
  medrefine::GrowParams p = params(1.0, 1, 4.0);
  p.spacing = {1.0, 2.0};  // x steps are 2 mm
  const Labels got = grow(std::vector<float>(7, 0.0f), {1, 7}, row, p);
  CHECK(got[2] == 0 && got[3] == -1);
}

void test_nan_and_dtype_extremes() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Labels got =
      grow(std::vector<double>{0.0, nan, 0.0}, {1, 3}, Labels{0, -1, -1}, params(kInf));
  CHECK(got[1] == -1 && got[2] == -1);
  const Labels nan_seed =
      grow(std::vector<double>{nan, 0.0, 0.0}, {1, 3}, Labels{0, -1, -1}, params(kInf));
  CHECK(nan_seed[1] == -1);
  const Labels bytes =
      grow(std::vector<std::uint8_t>{0, 255, 255}, {1, 3}, Labels{-1, 0, -1}, params(1.0));
  CHECK(bytes[0] == -1 && bytes[2] == 0);
  const std::int32_t lo = std::numeric_limits<std::int32_t>::min();
  const std::int32_t hi = std::numeric_limits<std::int32_t>::max();
  const std::vector<std::int32_t> extremes{lo, hi};
  CHECK(grow(extremes, {1, 2}, Labels{-1, 0}, params(4.3e9))[0] == 0);
  CHECK(grow(extremes, {1, 2}, Labels{-1, 0}, params(4.2e9))[0] == -1);
}

void test_channels_use_the_euclidean_norm() {
  const std::vector<float> image{0.0f, 3.0f, 0.0f, 4.0f};  // (2 channels, 1 x 2): distance 5
  CHECK(grow(image, {1, 2}, Labels{0, -1}, params(5.0), 2)[1] == -1);
  CHECK(grow(image, {1, 2}, Labels{0, -1}, params(5.01), 2)[1] == 0);
}

void test_stroke_numbered_first_wins_a_tie() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  medrefine::GrowParams p = params(6.0);
  p.criterion = medrefine::Criterion::kSeedMean;
  const Labels seeds{1, -1, 1, -1, -1, -1};
  const Labels got = grow(std::vector<double>{0, 5, 10, nan, 1, nan}, {2, 3}, seeds, p);
  CHECK(got[1] == 1 && got[4] == 1);
  const Labels mirrored = grow(std::vector<double>{10, 5, 0, nan, 1, nan}, {2, 3}, seeds, p);
  CHECK(mirrored[1] == 1 && mirrored[4] == -1);
}

void test_edge_cases() {
  CHECK(grow(std::vector<float>{}, {0, 5}, Labels{}, params(1.0)).empty());
  CHECK(grow(std::vector<float>{7.0f}, {1, 1}, Labels{-1}, params(kInf))[0] == -1);
  CHECK(grow(std::vector<float>{7.0f}, {1, 1, 1}, Labels{4}, params(kInf))[0] == 4);
  const Labels all = grow(std::vector<float>(12, 0.0f), {3, 4}, Labels(12, 2), params(kInf));
  CHECK(count(all, 2) == 12);
  const Labels none = grow(std::vector<float>(12, 0.0f), {3, 4}, Labels(12, -1), params(kInf));
  CHECK(count(none, -1) == 12);
}

void test_bad_parameters_throw() {
  const std::vector<float> image(4, 0.0f);
  const Labels seeds(4, -1);
  const auto throws = [&](medrefine::GrowParams p, std::int64_t channels = 1) {
    try {
      grow(image, {2, 2}, seeds, p, channels);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  CHECK(throws(params(1.0, 0)));
  CHECK(throws(params(1.0, 3)));
  CHECK(throws(params(-1.0)));
  CHECK(throws(params(std::nan(""))));
  CHECK(throws(params(1.0, 1, -2.0)));
  CHECK(throws(params(1.0), 0));
  medrefine::GrowParams p = params(1.0);
  p.spacing = {1.0};
  CHECK(throws(p));
  p.spacing = {1.0, 0.0};
  CHECK(throws(p));
}

// The brick grower (no spacing) and the pixel queue grower (unit spacing, a cap that never
// binds) must agree wherever distances cannot break ties: connectivity 1.
void test_both_growers_agree() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> value(0, 9), mark(0, 40);
  for (const std::vector<std::int64_t>& shape :
       std::vector<std::vector<std::int64_t>>{{37, 45}, {9, 21, 22}}) {
    std::int64_t n = 1;
    for (std::int64_t s : shape) n *= s;
    std::vector<std::int16_t> image(static_cast<std::size_t>(n));
    Labels seeds(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      image[i] = static_cast<std::int16_t>(value(rng));
      const int m = mark(rng);
      seeds[i] = m < 3 ? m : -1;
    }
    for (medrefine::Criterion c :
         {medrefine::Criterion::kNeighbour, medrefine::Criterion::kSeedMean}) {
      medrefine::GrowParams bricks = params(4.5);
      bricks.criterion = c;
      medrefine::GrowParams queue = bricks;
      queue.spacing.assign(shape.size(), 1.0);
      queue.max_distance = 1e9;
      const Labels a = grow(image, shape, seeds, bricks);
      CHECK(a == grow(image, shape, seeds, queue));
      CHECK(count(a, -1) < n / 2);  // the case grows
    }
  }
}

}  // namespace

int main() {
  test_two_classes_meet_on_a_contested_line();
  test_connectivity_and_step_cap();
  test_spacing_caps_the_path_length();
  test_nan_and_dtype_extremes();
  test_channels_use_the_euclidean_norm();
  test_stroke_numbered_first_wins_a_tie();
  test_edge_cases();
  test_bad_parameters_throw();
  test_both_growers_agree();
  return medrefine_test::checks_exit_status();
}
