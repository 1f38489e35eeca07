// Unit checks of the mask decoding (src/mask_delta.hpp) on hand-packed bytes: every bit width,
// 2D and 3D regions, and the refusals that must leave the held mask untouched.
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "check.hpp"
#include "mask_delta.hpp"

namespace {

using medrefine::client::Mask;
using medrefine::client::RemoteError;
namespace detail = medrefine::client::detail;

Mask filled(std::vector<int64_t> shape, std::uint16_t value) {
  Mask mask;
  std::size_t n = 1;
  for (int64_t s : shape) n *= static_cast<std::size_t>(s);
  mask.shape = std::move(shape);
  mask.labels.assign(n, value);
  return mask;
}

/// Whether `call` throws RemoteError with DATA_LOSS.
template <typename Call>
bool data_loss(Call&& call) {
  try {
    call();
  } catch (const RemoteError& e) {
    return e.code() == grpc::StatusCode::DATA_LOSS;
  }
  return false;
}

void two_bits_fill_a_2d_box() {
  Mask mask = filled({3, 4}, 7);
  // Labels 1 2 3 / 0 1 2 of rows 1-2, columns 1-3: 1 | 2<<2 | 3<<4 | 0<<6 = 57, 1 | 2<<2 = 9.
  detail::paste_region({57, 9}, 2, {1, 1}, {3, 4}, mask);
  const std::vector<std::uint16_t> expected = {7, 7, 7, 7, 7, 1, 2, 3, 7, 0, 1, 2};
  CHECK(mask.labels == expected);
}

void four_bits_fill_a_3d_box() {
  Mask mask = filled({2, 2, 3}, 0);
  // (z, y, x) box [0,1,1) to [2,2,3): labels 5 15 / 0 9 -> 5 | 15<<4 = 245, 0 | 9<<4 = 144.
  detail::paste_region({245, 144}, 4, {0, 1, 1}, {2, 2, 3}, mask);
  CHECK(mask.labels[0 * 6 + 1 * 3 + 1] == 5);
  CHECK(mask.labels[0 * 6 + 1 * 3 + 2] == 15);
  CHECK(mask.labels[1 * 6 + 1 * 3 + 1] == 0);
  CHECK(mask.labels[1 * 6 + 1 * 3 + 2] == 9);
  std::size_t labelled = 0;
  for (std::uint16_t v : mask.labels) labelled += v != 0;
  CHECK(labelled == 3);
}

void one_bit_crosses_a_byte_and_sixteen_bits_are_little_endian() {
  Mask bits = filled({9}, 0);
  // 1 0 1 1 0 0 0 1 | 1: byte 0 = 1 + 4 + 8 + 128 = 141, byte 1 = 1.
  detail::paste_region({141, 1}, 1, {0}, {9}, bits);
  CHECK((bits.labels == std::vector<std::uint16_t>{1, 0, 1, 1, 0, 0, 0, 1, 1}));
  Mask wide = filled({1, 2}, 0);
  detail::paste_region({44, 1, 2, 0}, 16, {0, 0}, {1, 2}, wide);  // 300 = 0x012c, then 2
  CHECK((wide.labels == std::vector<std::uint16_t>{300, 2}));
  Mask eight = filled({2, 1}, 0);
  detail::paste_region({200, 3}, 8, {0, 0}, {2, 1}, eight);
  CHECK((eight.labels == std::vector<std::uint16_t>{200, 3}));
}

void packed_sizes_round_up_to_whole_bytes() {
  CHECK(detail::packed_bytes(9, 1) == 2);
  CHECK(detail::packed_bytes(6, 2) == 2);
  CHECK(detail::packed_bytes(3, 4) == 2);
  CHECK(detail::packed_bytes(2, 16) == 4);
  CHECK(detail::packed_bytes(0, 8) == 0);
}

void refused_regions_leave_the_mask_as_it_was() {
  Mask mask = filled({3, 4}, 7);
  const Mask before = mask;
  CHECK(data_loss([&] { detail::paste_region({57, 9}, 3, {1, 1}, {3, 4}, mask); }));
  CHECK(data_loss([&] { detail::paste_region({57, 9, 0}, 2, {1, 1}, {3, 4}, mask); }));
  CHECK(data_loss([&] { detail::paste_region({57, 9}, 2, {1, 1}, {3, 5}, mask); }));
  CHECK(data_loss([&] { detail::paste_region({57, 9}, 2, {1, 1, 0}, {3, 4, 1}, mask); }));
  CHECK(data_loss(
      [&] { detail::paste_region(std::vector<std::uint8_t>(24), 32, {1, 1}, {3, 4}, mask); }));
  CHECK(mask.labels == before.labels);
}

void zlib_streams_must_inflate_to_the_exact_size() {
  const std::string raw = "labels labels labels labels";
  std::vector<Bytef> packed(compressBound(raw.size()));
  uLongf packed_size = packed.size();
  compress(packed.data(), &packed_size, reinterpret_cast<const Bytef*>(raw.data()), raw.size());
  const std::string stream(reinterpret_cast<const char*>(packed.data()), packed_size);
  const std::vector<std::uint8_t> out = detail::inflate_exact(stream, raw.size());
  CHECK(std::string(out.begin(), out.end()) == raw);
  CHECK(data_loss([&] { detail::inflate_exact(stream, raw.size() + 1); }));
  CHECK(data_loss([&] { detail::inflate_exact(stream, raw.size() - 1); }));
  CHECK(data_loss([&] { detail::inflate_exact("not zlib", 8); }));
}

}  // namespace

int main() {
  two_bits_fill_a_2d_box();
  four_bits_fill_a_3d_box();
  one_bit_crosses_a_byte_and_sixteen_bits_are_little_endian();
  packed_sizes_round_up_to_whole_bytes();
  refused_regions_leave_the_mask_as_it_was();
  zlib_streams_must_inflate_to_the_exact_size();
  return medrefine_test::checks_exit_status();
}
