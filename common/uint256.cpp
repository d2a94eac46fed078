#include "common/uint256.h"

#include <algorithm>

namespace bitacora {
namespace {
using u128 = unsigned __int128;
constexpr uint64_t kTen19 = 10'000'000'000'000'000'000ULL;

int HexValue(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
} // namespace

UInt256 UInt256::Max()
{
    UInt256 v;
    v.m_limbs.fill(~uint64_t{0});
    return v;
}

UInt256 UInt256::FromBigEndian(std::span<const uint8_t, 32> word)
{
    UInt256 v;
    for (size_t limb = 0; limb < 4; ++limb) {
        uint64_t x = 0;
        for (size_t i = 0; i < 8; ++i) x = (x << 8) | word[(3 - limb) * 8 + i];
        v.m_limbs[limb] = x;
    }
    return v;
}

std::array<uint8_t, 32> UInt256::ToBigEndian() const
{
    std::array<uint8_t, 32> out{};
    for (size_t limb = 0; limb < 4; ++limb) {
        uint64_t x = m_limbs[limb];
        for (size_t i = 0; i < 8; ++i) {
            out[(3 - limb) * 8 + 7 - i] = static_cast<uint8_t>(x & 0xff);
            x >>= 8;
        }
    }
    return out;
}

bool UInt256::MulAddSmall(uint64_t factor, uint64_t addend)
{
    uint64_t carry = addend;
    for (auto& limb : m_limbs) {
        const u128 product = static_cast<u128>(limb) * factor + carry;
        limb = static_cast<uint64_t>(product);
        carry = static_cast<uint64_t>(product >> 64);
    }
    return carry == 0;
}

uint64_t UInt256::DivModSmall(uint64_t divisor)
{
    u128 remainder = 0;
    for (size_t i = 4; i-- > 0;) {
        const u128 current = (remainder << 64) | m_limbs[i];
        m_limbs[i] = static_cast<uint64_t>(current / divisor);
        remainder = current % divisor;
    }
    return static_cast<uint64_t>(remainder);
}

std::optional<UInt256> UInt256::FromDecimal(std::string_view digits)
{
    // 78 digits hold any 256-bit value; longer input is rejected before the loop.
    if (digits.empty() || digits.size() > 78) return std::nullopt;
    UInt256 v;
    for (const char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        if (!v.MulAddSmall(10, static_cast<uint64_t>(c - '0'))) return std::nullopt;
    }
    return v;
}

std::optional<UInt256> UInt256::FromHexQuantity(std::string_view hex)
{
    if (hex.size() < 3 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) return std::nullopt;
    hex.remove_prefix(2);
    if (hex.size() > 64) return std::nullopt;
    UInt256 v;
    for (const char c : hex) {
        const int d = HexValue(c);
        if (d < 0) return std::nullopt;
        v.MulAddSmall(16, static_cast<uint64_t>(d)); // cannot overflow: at most 64 digits
    }
    return v;
}

std::string UInt256::ToDecimal() const
{
    if (IsZero()) return "0";
    UInt256 v = *this;
    std::string out;
    while (!v.IsZero()) {
        uint64_t chunk = v.DivModSmall(kTen19);
        const bool last = v.IsZero();
        for (int i = 0; i < 19 && (!last || chunk != 0); ++i) {
            out.push_back(static_cast<char>('0' + chunk % 10));
            chunk /= 10;
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

std::string UInt256::ToHexQuantity() const
{
    static constexpr char kDigits[] = "0123456789abcdef";
    if (IsZero()) return "0x0";
    std::string out = "0x";
    bool started = false;
    for (size_t limb = 4; limb-- > 0;) {
        for (int shift = 60; shift >= 0; shift -= 4) {
            const unsigned nibble = (m_limbs[limb] >> shift) & 0xf;
            if (nibble == 0 && !started) continue;
            started = true;
            out.push_back(kDigits[nibble]);
        }
    }
    return out;
}

std::string UInt256::ToDecimalScaled(unsigned decimals) const
{
    std::string digits = ToDecimal();
    if (decimals == 0) return digits;
    if (digits.size() <= decimals) digits.insert(0, decimals + 1 - digits.size(), '0');
    digits.insert(digits.size() - decimals, 1, '.');
    return digits;
}

unsigned UInt256::BitLength() const
{
    for (size_t limb = 4; limb-- > 0;) {
        if (m_limbs[limb] != 0) {
            return static_cast<unsigned>(limb * 64 + 64 - static_cast<unsigned>(__builtin_clzll(m_limbs[limb])));
        }
    }
    return 0;
}

std::optional<UInt256> UInt256::CheckedAdd(const UInt256& other) const
{
    UInt256 out;
    uint64_t carry = 0;
    for (size_t i = 0; i < 4; ++i) {
        const u128 sum = static_cast<u128>(m_limbs[i]) + other.m_limbs[i] + carry;
        out.m_limbs[i] = static_cast<uint64_t>(sum);
        carry = static_cast<uint64_t>(sum >> 64);
    }
    if (carry != 0) return std::nullopt;
    return out;
}

std::optional<UInt256> UInt256::CheckedSub(const UInt256& other) const
{
    if (*this < other) return std::nullopt;
    UInt256 out;
    uint64_t borrow = 0;
    for (size_t i = 0; i < 4; ++i) {
        const u128 subtrahend = static_cast<u128>(other.m_limbs[i]) + borrow;
        borrow = static_cast<u128>(m_limbs[i]) < subtrahend ? 1 : 0;
        out.m_limbs[i] = static_cast<uint64_t>((static_cast<u128>(borrow) << 64) + m_limbs[i] - subtrahend);
    }
    return out;
}

std::optional<UInt256> UInt256::CheckedMul(const UInt256& other) const
{
    std::array<uint64_t, 8> wide{};
    for (size_t i = 0; i < 4; ++i) {
        uint64_t carry = 0;
        for (size_t j = 0; j < 4; ++j) {
            const u128 cur = static_cast<u128>(m_limbs[i]) * other.m_limbs[j] + wide[i + j] + carry;
            wide[i + j] = static_cast<uint64_t>(cur);
            carry = static_cast<uint64_t>(cur >> 64);
        }
        wide[i + 4] = carry;
    }
    if ((wide[4] | wide[5] | wide[6] | wide[7]) != 0) return std::nullopt;
    UInt256 out;
    std::copy(wide.begin(), wide.begin() + 4, out.m_limbs.begin());
    return out;
}

UInt256 UInt256::Negated() const
{
    UInt256 out;
    uint64_t carry = 1;
    for (size_t i = 0; i < 4; ++i) {
        const u128 sum = static_cast<u128>(~m_limbs[i]) + carry;
        out.m_limbs[i] = static_cast<uint64_t>(sum);
        carry = static_cast<uint64_t>(sum >> 64);
    }
    return out;
}

std::string UInt256::ToSignedDecimal() const
{
    if (!IsNegative()) return ToDecimal();
    return "-" + Negated().ToDecimal();
}

std::strong_ordering operator<=>(const UInt256& a, const UInt256& b)
{
    for (size_t i = 4; i-- > 0;) {
        if (a.m_limbs[i] != b.m_limbs[i]) return a.m_limbs[i] <=> b.m_limbs[i];
    }
    return std::strong_ordering::equal;
}

} // namespace bitacora
