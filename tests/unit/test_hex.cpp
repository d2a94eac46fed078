#include "common/hex.h"

#include <doctest/doctest.h>

#include <array>
#include <string>

using namespace bitacora;

TEST_CASE("hex round trip")
{
    const Bytes bytes{0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    CHECK(HexEncode(bytes) == "00017f80abff");
    CHECK(HexEncode0x(bytes) == "0x00017f80abff");
    CHECK(HexDecode("00017f80abff") == bytes);
    CHECK(HexDecode("0x00017F80ABFF") == bytes);
    CHECK(HexDecode("")->empty());
    CHECK(HexDecode("0x")->empty());
    CHECK(HexEncode(Bytes{}).empty());
}

TEST_CASE("hex rejects malformed input")
{
    CHECK_FALSE(HexDecode("abc"));   // odd length
    CHECK_FALSE(HexDecode("0xg0"));  // not a digit
    CHECK_FALSE(HexDecode(" 00"));   // whitespace
    CHECK_FALSE(HexDecode("00 "));
    CHECK_FALSE(HexDecode("x00"));
    // Every byte that is not a hex digit, in either place of a pair.
    for (int c = 0; c < 256; ++c) {
        const bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        const std::string high{static_cast<char>(c), '0'};
        const std::string low{'0', static_cast<char>(c)};
        CHECK_MESSAGE(HexDecode(high).has_value() == digit, c);
        if (c != 'x' && c != 'X') CHECK_MESSAGE(HexDecode(low).has_value() == digit, c); // "0x" is a prefix
    }
    CHECK(HexDecode("fF0aA9") == Bytes{0xff, 0x0a, 0xa9});
    std::array<uint8_t, 2> out{};
    CHECK(HexDecodeExact("0xbeef", out));
    CHECK(out == std::array<uint8_t, 2>{0xbe, 0xef});
    CHECK_FALSE(HexDecodeExact("beefbe", out));
    CHECK_FALSE(HexDecodeExact("be", out));
}
