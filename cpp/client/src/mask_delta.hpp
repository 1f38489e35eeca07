// Decoding the server's masks: zlib-compressed labels packed at 1-32 bits each (MaskDelta in
// refine.proto), pasted into the region of the mask they cover.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "medrefine/client/remote_session.hpp"

namespace medrefine::client::detail {

/// Bytes that `count` labels take packed at `bits` (1, 2, 4, 8, 16 or 32) each.
std::size_t packed_bytes(std::size_t count, unsigned bits);

/// Inflates one zlib stream that must hold exactly `expected` bytes.
///
/// @throws RemoteError (DATA_LOSS) on a corrupt stream or any other length.
std::vector<std::uint8_t> inflate_exact(const std::string& compressed, std::size_t expected);

/// Writes the labels of the region [start, stop) (per spatial axis, C order inside the region),
/// packed at `bits` each, into `mask`; the region must lie inside `mask.shape`.
///
/// Everything is checked before the first pixel is written, so a throw leaves `mask` as it was.
///
/// @throws RemoteError (DATA_LOSS) when the region, the bit width (32 bits: more labels than the
///     mask's 16-bit labels hold) or the size is wrong.
void paste_region(const std::vector<std::uint8_t>& packed, unsigned bits,
                  const std::vector<int64_t>& start, const std::vector<int64_t>& stop, Mask& mask);

}  // namespace medrefine::client::detail
