#include "common/hex.h"

#include <doctest/doctest.h>

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
    std::array<uint8_t, 2> out{};
    CHECK(HexDecodeExact("0xbeef", out));
    CHECK(out == std::array<uint8_t, 2>{0xbe, 0xef});
    CHECK_FALSE(HexDecodeExact("beefbe", out));
    CHECK_FALSE(HexDecodeExact("be", out));
}
