#include "rpc/subnet.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace bitacora::rpc {
namespace {

struct Address {
    bool v6{false};
    std::array<uint8_t, 16> bytes{};
};

// A numeric address; an IPv4-mapped IPv6 address (a dual-stack listener's view of an
// IPv4 client) is its IPv4 address.
std::optional<Address> ParseAddress(std::string_view text)
{
    const std::string s(text);
    Address out;
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        std::memcpy(out.bytes.data(), &v4, 4);
        return out;
    }
    if (inet_pton(AF_INET6, s.c_str(), &v6) != 1) return std::nullopt;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(&v6, kMapped, sizeof(kMapped)) == 0) {
        std::memcpy(out.bytes.data(), reinterpret_cast<const uint8_t*>(&v6) + 12, 4);
        return out;
    }
    out.v6 = true;
    std::memcpy(out.bytes.data(), &v6, 16);
    return out;
}

std::array<uint8_t, 16> PrefixMask(unsigned bits)
{
    std::array<uint8_t, 16> mask{};
    for (unsigned i = 0; i < bits; ++i) mask[i / 8] |= static_cast<uint8_t>(0x80 >> (i % 8));
    return mask;
}

} // namespace

bool Subnet::Contains(std::string_view text) const
{
    const auto address = ParseAddress(text);
    if (!address || address->v6 != v6) return false;
    for (size_t i = 0; i < 16; ++i) {
        if ((address->bytes[i] & mask[i]) != network[i]) return false;
    }
    return true;
}

std::optional<Subnet> ParseSubnet(std::string_view text)
{
    const size_t slash = text.find('/');
    const auto address = ParseAddress(text.substr(0, slash));
    if (!address) return std::nullopt;
    const unsigned bits_max = address->v6 ? 128 : 32;
    Subnet subnet{.v6 = address->v6};
    if (slash == std::string_view::npos) {
        subnet.mask = PrefixMask(bits_max);
    } else {
        const std::string_view suffix = text.substr(slash + 1);
        unsigned bits = 0;
        const auto [end, ec] = std::from_chars(suffix.data(), suffix.data() + suffix.size(), bits);
        if (!suffix.empty() && ec == std::errc() && end == suffix.data() + suffix.size()) {
            if (bits > bits_max) return std::nullopt;
            subnet.mask = PrefixMask(bits);
        } else if (const auto mask = ParseAddress(suffix); mask && mask->v6 == address->v6) {
            subnet.mask = mask->bytes;
        } else {
            return std::nullopt;
        }
    }
    for (size_t i = 0; i < 16; ++i) subnet.network[i] = address->bytes[i] & subnet.mask[i];
    return subnet;
}

bool IsLoopbackAddress(std::string_view text)
{
    const auto address = ParseAddress(text);
    if (!address) return false;
    if (!address->v6) return address->bytes[0] == 127;
    static constexpr std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return address->bytes == kLoopback6;
}

bool IsLoopbackBind(std::string_view bind)
{
    return bind == "localhost" || IsLoopbackAddress(bind);
}

} // namespace bitacora::rpc
