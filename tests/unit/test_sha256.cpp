#include "common/hex.h"
#include "common/sha256.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace bitacora;

namespace {
std::string Sha256Hex(std::string_view text)
{
    return HexEncode(Sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
}
} // namespace

TEST_CASE("SHA-256 FIPS 180-2 vectors")
{
    CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(Sha256Hex(std::string(1'000'000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("incremental hashing equals one-shot hashing")
{
    const std::string text(1000, 'q');
    const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
    Sha256Hasher hasher;
    for (size_t pos = 0; pos < text.size(); pos += 7) {
        hasher.Update(std::span<const uint8_t>(bytes + pos, std::min<size_t>(7, text.size() - pos)));
    }
    CHECK(hasher.Finalize() == Sha256(std::span<const uint8_t>(bytes, text.size())));
    // Finalize resets: the hasher is reusable.
    hasher.Update(0x00);
    const uint8_t zero = 0;
    CHECK(hasher.Finalize() == Sha256(std::span<const uint8_t>(&zero, 1)));
}

TEST_CASE("double SHA-256 of the Bitcoin genesis block header is its block hash")
{
    const auto header = HexDecode(
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
        "7fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c");
    REQUIRE(header);
    Hash256 hash = Sha256d(*header);
    std::reverse(hash.begin(), hash.end()); // block hashes are shown byte-reversed
    CHECK(HexEncode(hash) == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f");
}
