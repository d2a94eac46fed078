#include "common/hex.h"
#include "indexer/evm/keccak.h"

#include <doctest/doctest.h>

#include <string>

using namespace bitacora;
using bitacora::evm::Keccak;

namespace {
std::string KeccakHex(std::string_view text)
{
    return HexEncode(Keccak(text));
}
Bytes Pattern(size_t n)
{
    Bytes out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i % 251);
    return out;
}
} // namespace

TEST_CASE("Keccak-256 published vectors")
{
    CHECK(KeccakHex("") == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    CHECK(KeccakHex("abc") == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    CHECK(KeccakHex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") ==
          "f519747ed599024f3882238e5ab43960132572b7345fbeb9a90769dafd21ad67");
    // Multi-block: one million 'a' (7353 blocks of 136 bytes).
    CHECK(KeccakHex(std::string(1'000'000, 'a')) == "fadae6b49f129bbb812be8407b7b2894f34aecf6dbd1f9b0f0c7e9853098fc96");
}

TEST_CASE("Keccak-256 event topics and function selectors")
{
    CHECK(KeccakHex("Transfer(address,address,uint256)") == "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
    CHECK(KeccakHex("Approval(address,address,uint256)") == "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925");
    CHECK(KeccakHex("transfer(address,uint256)").substr(0, 8) == "a9059cbb");
    CHECK(KeccakHex("balanceOf(address)").substr(0, 8) == "70a08231");
}

TEST_CASE("Keccak-256 around the 136-byte rate boundary (cross-checked with pycryptodome)")
{
    CHECK(HexEncode(Keccak(Pattern(135))) == "cbdfd9dee5faad3818d6b06f95a219fd290b0e1706f6a82e5a595b9ce9faca62");
    CHECK(HexEncode(Keccak(Pattern(136))) == "7ce759f1ab7f9ce437719970c26b0a66ff11fe3e38e17df89cf5d29c7d7f807e");
    CHECK(HexEncode(Keccak(Pattern(137))) == "ac73d4fae68b8453f764007c1a20ce95994187861f0c3227a3a8e99a73a3b1db");
    CHECK(HexEncode(Keccak(Pattern(272))) == "8e2476e65823b24d96ebe239f2c1534cdf763e689e2410c3b1cb0c74e6177bfc");
}

TEST_CASE("incremental Keccak equals one-shot for every split point")
{
    const Bytes data = Pattern(300);
    const Hash256 expected = Keccak(data);
    for (size_t split = 0; split <= data.size(); split += 17) {
        evm::Keccak256 hasher;
        hasher.Update(std::span<const uint8_t>(data).first(split));
        hasher.Update(std::span<const uint8_t>(data).subspan(split));
        CHECK(hasher.Finalize() == expected);
    }
}
