#include "common/uint256.h"

#include <doctest/doctest.h>

using namespace bitacora;

namespace {
const std::string kMaxDecimal = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
}

TEST_CASE("decimal round trips, including the extremes")
{
    for (const char* text : {"0", "1", "9", "10", "18446744073709551615", "18446744073709551616",
                             "10000000000000000000", "340282366920938463463374607431768211456",
                             "1000000000000000000000000000000000000000"}) {
        const auto v = UInt256::FromDecimal(text);
        REQUIRE(v);
        CHECK(v->ToDecimal() == text);
    }
    const auto max = UInt256::FromDecimal(kMaxDecimal);
    REQUIRE(max);
    CHECK(*max == UInt256::Max());
    CHECK(UInt256::Max().ToDecimal() == kMaxDecimal);
    CHECK(UInt256::FromDecimal("007")->ToDecimal() == "7");
}

TEST_CASE("decimal parsing rejects bad input and overflow")
{
    CHECK_FALSE(UInt256::FromDecimal(""));
    CHECK_FALSE(UInt256::FromDecimal("-1"));
    CHECK_FALSE(UInt256::FromDecimal("+1"));
    CHECK_FALSE(UInt256::FromDecimal("1.5"));
    CHECK_FALSE(UInt256::FromDecimal("1e6"));
    CHECK_FALSE(UInt256::FromDecimal(" 1"));
    CHECK_FALSE(UInt256::FromDecimal("115792089237316195423570985008687907853269984665640564039457584007913129639936"));
    CHECK_FALSE(UInt256::FromDecimal(std::string(79, '1')));
}

TEST_CASE("hex quantities and big-endian words")
{
    CHECK(UInt256::FromHexQuantity("0x0")->IsZero());
    CHECK(UInt256::FromHexQuantity("0x1a")->ToDecimal() == "26");
    CHECK(UInt256(26).ToHexQuantity() == "0x1a");
    CHECK(UInt256().ToHexQuantity() == "0x0");
    CHECK(UInt256::Max().ToHexQuantity() == "0x" + std::string(64, 'f'));
    CHECK_FALSE(UInt256::FromHexQuantity("0x"));
    CHECK_FALSE(UInt256::FromHexQuantity("1a"));
    CHECK_FALSE(UInt256::FromHexQuantity("0x" + std::string(65, '1')));
    CHECK_FALSE(UInt256::FromHexQuantity("0xzz"));

    std::array<uint8_t, 32> word{};
    word[0] = 0x01;
    word[31] = 0x02;
    const UInt256 v = UInt256::FromBigEndian(word);
    CHECK(v.ToBigEndian() == word);
    CHECK(v.BitLength() == 249);
    CHECK(v.ToHexQuantity() == "0x1" + std::string(61, '0') + "2");
}

TEST_CASE("checked arithmetic")
{
    CHECK(UInt256(2).CheckedAdd(UInt256(3))->ToDecimal() == "5");
    CHECK_FALSE(UInt256::Max().CheckedAdd(UInt256(1)));
    CHECK(UInt256(5).CheckedSub(UInt256(5))->IsZero());
    CHECK_FALSE(UInt256(5).CheckedSub(UInt256(6)));
    // Borrow across limbs: 2^64 - 1.
    const auto two64 = *UInt256::FromDecimal("18446744073709551616");
    CHECK(two64.CheckedSub(UInt256(1))->ToDecimal() == "18446744073709551615");
    CHECK(two64.CheckedMul(two64)->ToDecimal() == "340282366920938463463374607431768211456");
    CHECK_FALSE(UInt256::Max().CheckedMul(UInt256(2)));
    CHECK(UInt256::Max().CheckedMul(UInt256(1)) == UInt256::Max());
    CHECK(UInt256(7) < UInt256(8));
    CHECK(two64 > UInt256(~uint64_t{0}));
}

TEST_CASE("scaled decimals for token amounts (USDC has 6 decimals)")
{
    CHECK(UInt256(1'500'000).ToDecimalScaled(6) == "1.500000");
    CHECK(UInt256(5).ToDecimalScaled(6) == "0.000005");
    CHECK(UInt256(0).ToDecimalScaled(6) == "0.000000");
    CHECK(UInt256(123).ToDecimalScaled(0) == "123");
    CHECK(UInt256(1'000'000).ToDecimalScaled(6) == "1.000000");
}

TEST_CASE("two's complement view for ABI int values")
{
    const UInt256 minus_one = UInt256::Max();
    CHECK(minus_one.IsNegative());
    CHECK(minus_one.ToSignedDecimal() == "-1");
    CHECK(UInt256(42).ToSignedDecimal() == "42");
    CHECK(UInt256(42).Negated().ToSignedDecimal() == "-42");
    std::array<uint8_t, 32> min_word{};
    min_word[0] = 0x80;
    CHECK(UInt256::FromBigEndian(min_word).ToSignedDecimal() ==
          "-57896044618658097711785492504343953926634992332820282019728792003956564819968");
}
