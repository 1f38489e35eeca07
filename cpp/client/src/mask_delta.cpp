#include "mask_delta.hpp"

#include <zlib.h>

namespace medrefine::client::detail {
namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw RemoteError(grpc::StatusCode::DATA_LOSS, "mask from the server: " + what);
}

/// Label of pixel `i`: LSB-first bit fields for 1-8 bits, a little-endian integer for 16.
std::uint16_t label_at(const std::uint8_t* packed, std::size_t i, unsigned bits) {
  if (bits == 16) return static_cast<std::uint16_t>(packed[2 * i] | (packed[2 * i + 1] << 8));
  const std::size_t bit = i * bits;
  return static_cast<std::uint16_t>((packed[bit / 8] >> (bit % 8)) & ((1u << bits) - 1u));
}

}  // namespace

std::size_t packed_bytes(std::size_t count, unsigned bits) { return (count * bits + 7) / 8; }

std::vector<std::uint8_t> inflate_exact(const std::string& compressed, std::size_t expected) {
  std::vector<std::uint8_t> out(expected);
  z_stream z{};
  if (inflateInit(&z) != Z_OK) corrupt("zlib could not start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const std::size_t produced = expected - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != expected) {
    corrupt("the zlib stream does not inflate to " + std::to_string(expected) + " bytes");
  }
  return out;
}

void paste_region(const std::vector<std::uint8_t>& packed, unsigned bits,
                  const std::vector<int64_t>& start, const std::vector<int64_t>& stop, Mask& mask) {
  if (bits == 32) corrupt("32-bit labels (over 65536 classes) do not fit the client's masks");
  if (bits != 1 && bits != 2 && bits != 4 && bits != 8 && bits != 16) {
    corrupt("bits_per_label " + std::to_string(bits) + " is not 1, 2, 4, 8, 16 or 32");
  }
  const std::size_t ndim = mask.shape.size();
  if (start.size() != ndim || stop.size() != ndim) corrupt("the box has the wrong number of axes");
  std::size_t count = 1;
  for (std::size_t a = 0; a < ndim; ++a) {
    if (start[a] < 0 || start[a] > stop[a] || stop[a] > mask.shape[a]) {
      corrupt("the box leaves the mask on axis " + std::to_string(a));
    }
    count *= static_cast<std::size_t>(stop[a] - start[a]);
  }
  if (packed.size() != packed_bytes(count, bits)) corrupt("the packed size does not match the box");
  // Walk the region in C order with an odometer over its axes.
  std::vector<int64_t> index(start);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t offset = 0;
    for (std::size_t a = 0; a < ndim; ++a) offset = offset * mask.shape[a] + index[a];
    mask.labels[offset] = label_at(packed.data(), i, bits);
    for (std::size_t a = ndim; a-- > 0;) {
      if (++index[a] < stop[a]) break;
      index[a] = start[a];
    }
  }
}

}  // namespace medrefine::client::detail
