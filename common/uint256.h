// 256-bit unsigned integers for token amounts and EVM words, with exact decimal
// formatting. Amounts never pass through floating point.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bitacora {

class UInt256 {
public:
    constexpr UInt256() = default;
    constexpr explicit UInt256(uint64_t value) : m_limbs{value, 0, 0, 0} {}

    static UInt256 Max();
    static UInt256 FromBigEndian(std::span<const uint8_t, 32> word);
    std::array<uint8_t, 32> ToBigEndian() const;

    // Plain base-10 digits ("0", "1500000"); no sign, no spaces, no exponent.
    static std::optional<UInt256> FromDecimal(std::string_view digits);
    // Ethereum quantity ("0x1a", "0x0"), 1..64 hex digits after the prefix.
    static std::optional<UInt256> FromHexQuantity(std::string_view hex);

    std::string ToDecimal() const;
    // Minimal Ethereum quantity form: "0x0", "0x1a".
    std::string ToHexQuantity() const;
    // value / 10^decimals written exactly, trailing zeros kept: (1500000, 6) -> "1.500000".
    std::string ToDecimalScaled(unsigned decimals) const;

    bool IsZero() const { return (m_limbs[0] | m_limbs[1] | m_limbs[2] | m_limbs[3]) == 0; }
    // Number of significant bits; 0 for zero.
    unsigned BitLength() const;
    bool FitsUint64() const { return (m_limbs[1] | m_limbs[2] | m_limbs[3]) == 0; }
    uint64_t Low64() const { return m_limbs[0]; }

    std::optional<UInt256> CheckedAdd(const UInt256& other) const;
    std::optional<UInt256> CheckedSub(const UInt256& other) const;
    std::optional<UInt256> CheckedMul(const UInt256& other) const;

    // Two's-complement view, for ABI int<N> values sign-extended to 256 bits.
    bool IsNegative() const { return (m_limbs[3] >> 63) != 0; }
    UInt256 Negated() const;
    std::string ToSignedDecimal() const;

    friend bool operator==(const UInt256&, const UInt256&) = default;
    friend std::strong_ordering operator<=>(const UInt256& a, const UInt256& b);

private:
    // Divides in place by a small divisor and returns the remainder.
    uint64_t DivModSmall(uint64_t divisor);
    // Multiplies in place by a small factor and adds addend; returns false on overflow.
    bool MulAddSmall(uint64_t factor, uint64_t addend);

    std::array<uint64_t, 4> m_limbs{}; // little-endian limbs
};

} // namespace bitacora
