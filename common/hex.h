#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora {

using Bytes = std::vector<uint8_t>;

// Lower-case hex without prefix.
std::string HexEncode(std::span<const uint8_t> bytes);
// "0x"-prefixed lower-case hex, as Ethereum JSON-RPC writes data.
std::string HexEncode0x(std::span<const uint8_t> bytes);

// Strict: even length, only [0-9a-fA-F]; a leading "0x"/"0X" is accepted.
// Returns nullopt on any other input.
std::optional<Bytes> HexDecode(std::string_view hex);

// Decodes into a fixed-size buffer; fails unless exactly out.size() bytes are given.
bool HexDecodeExact(std::string_view hex, std::span<uint8_t> out);

} // namespace bitacora
