#include "common/hex.h"

#include <array>

namespace bitacora {
namespace {

constexpr char kDigits[] = "0123456789abcdef";

// Each byte's value as a hex digit, or 0xff: one load per digit instead of three
// comparisons (headers and logs are mostly hex; this was 6% of reading them).
constexpr std::array<uint8_t, 256> kValues = [] {
    std::array<uint8_t, 256> values{};
    values.fill(0xff);
    for (int i = 0; i < 10; ++i) values['0' + i] = static_cast<uint8_t>(i);
    for (int i = 0; i < 6; ++i) values['a' + i] = values['A' + i] = static_cast<uint8_t>(10 + i);
    return values;
}();

// The bytes of `hex` (prefix stripped, even length) into out; false on a non-digit.
bool DecodeDigits(std::string_view hex, uint8_t* out)
{
    unsigned bad = 0;
    for (size_t i = 0; i < hex.size() / 2; ++i) {
        const unsigned hi = kValues[static_cast<uint8_t>(hex[2 * i])];
        const unsigned lo = kValues[static_cast<uint8_t>(hex[2 * i + 1])];
        bad |= hi | lo;
        out[i] = static_cast<uint8_t>((hi << 4) | (lo & 0x0f));
    }
    return (bad & 0xf0) == 0;
}

std::string_view StripPrefix(std::string_view hex)
{
    if (hex.size() >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) hex.remove_prefix(2);
    return hex;
}

} // namespace

std::string HexEncode(std::span<const uint8_t> bytes)
{
    std::string out(bytes.size() * 2, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) {
        out[2 * i] = kDigits[bytes[i] >> 4];
        out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
    }
    return out;
}

std::string HexEncode0x(std::span<const uint8_t> bytes)
{
    return "0x" + HexEncode(bytes);
}

std::optional<Bytes> HexDecode(std::string_view hex)
{
    hex = StripPrefix(hex);
    if (hex.size() % 2 != 0) return std::nullopt;
    Bytes out(hex.size() / 2);
    if (!DecodeDigits(hex, out.data())) return std::nullopt;
    return out;
}

bool HexDecodeExact(std::string_view hex, std::span<uint8_t> out)
{
    hex = StripPrefix(hex);
    if (hex.size() != out.size() * 2) return false;
    return DecodeDigits(hex, out.data());
}

} // namespace bitacora
