#include "common/hex.h"
#include "ledger/event.h"
#include "ledger/merkle.h"

#include <doctest/doctest.h>

#include <set>

using namespace bitacora;
using namespace bitacora::ledger;

namespace {

template <size_t N>
std::array<uint8_t, N> Filled(uint8_t b)
{
    std::array<uint8_t, N> out;
    out.fill(b);
    return out;
}

EvmOrigin Origin()
{
    return EvmOrigin{31337, 5, Filled<32>(0x11), Filled<32>(0x22), 3, Filled<20>(0x33)};
}

std::vector<Event> OneOfEach()
{
    const UInt256 id(7);
    const UInt256 amount(250'000'000);
    OffchainEvent offchain{"offer.posted", "offer-17", Bytes{'{', '}'}, Filled<32>(0x66), Filled<64>(0x77)};
    return {
        {Origin(), OrderCreated{id, Filled<20>(0x44), Filled<20>(0x55), amount, 1'700'000'000}},
        {Origin(), PaymentConfirmed{id, Filled<20>(0x55), Filled<32>(0x99)}},
        {Origin(), OrderReleased{id, Filled<20>(0x44), Filled<20>(0x55), amount}},
        {Origin(), OrderCancelled{id, Filled<20>(0x44), amount}},
        {Origin(), OrderExpired{id, Filled<20>(0x44), Filled<20>(0x01), amount}},
        {Origin(), OrderDisputed{id, Filled<20>(0x55), true}},
        {Origin(), DisputeResolved{id, Filled<20>(0x0a), true, Filled<20>(0x55), amount}},
        {Origin(), ReputationChanged{Filled<20>(0x44), 50, 51}},
        {Origin(), EscrowPaused{Filled<20>(0x0a), true}},
        {Origin(), RoleChanged{Filled<32>(0x0b), Filled<20>(0x0c), Filled<20>(0x0d), false}},
        {Origin(), VaultDeposit{Filled<20>(0x44), Filled<20>(0x44), amount, UInt256(250'000'000'000'000)}},
        {Origin(), VaultWithdraw{Filled<20>(0x44), Filled<20>(0x45), Filled<20>(0x44), amount, UInt256(3)}},
        {Origin(), VaultTransfer{Filled<20>(0x44), Filled<20>(0x45), UInt256(9)}},
        {std::nullopt, offchain},
        {std::nullopt, AnchorEvent{2, 1000, Filled<32>(0x12), Filled<32>(0x13), 840000, Filled<32>(0x14)}},
        {Origin(), RawEvmLog{{Filled<32>(0x8c), Filled<32>(0x01)}, Bytes{1, 2, 3}}},
    };
}

} // namespace

TEST_CASE("golden vector: OrderCreated leaf bytes and leaf hash (docs/ledger-format.md)")
{
    const Event event = OneOfEach()[0];
    const Bytes leaf = EncodeEvent(event);
    CHECK(leaf.size() == 218);
    CHECK(HexEncode(leaf) ==
          "0101"                                                              // version, kind
          "0000000000007a69" "0000000000000005"                              // chain id, block number
          "1111111111111111111111111111111111111111111111111111111111111111" // block hash
          "2222222222222222222222222222222222222222222222222222222222222222" // tx hash
          "00000003" "3333333333333333333333333333333333333333"              // log index, contract
          "0000000000000000000000000000000000000000000000000000000000000007" // order id
          "4444444444444444444444444444444444444444"                         // seller
          "5555555555555555555555555555555555555555"                         // buyer
          "000000000000000000000000000000000000000000000000000000000ee6b280" // amount
          "000000006553f100");                                               // expiry
    // Cross-checked with Python's hashlib: sha256(b"\0" + leaf).
    CHECK(HexEncode(MerkleLeafHash(leaf)) == "7a6205245263dff13db612b5674d682e5d007c55bf5cc440ad893c00868fd539");
}

TEST_CASE("every kind round-trips and has a distinct kind byte")
{
    std::set<uint8_t> kinds;
    for (const auto& event : OneOfEach()) {
        const Bytes leaf = EncodeEvent(event);
        CHECK(leaf[0] == kLeafFormatVersion);
        CHECK(leaf[1] == static_cast<uint8_t>(event.kind()));
        CHECK(kinds.insert(leaf[1]).second);
        const auto decoded = DecodeEvent(leaf);
        REQUIRE_MESSAGE(decoded, EventKindName(event.kind()));
        CHECK(*decoded == event);
        CHECK(EncodeEvent(*decoded) == leaf);
    }
    CHECK(kinds.size() == std::variant_size_v<EventBody>);
}

TEST_CASE("malformed leaves are errors, never crashes")
{
    for (const auto& event : OneOfEach()) {
        const Bytes leaf = EncodeEvent(event);
        for (size_t cut = 0; cut < leaf.size(); ++cut) {
            CHECK_FALSE(DecodeEvent(std::span<const uint8_t>(leaf).first(cut)));
        }
        Bytes longer = leaf;
        longer.push_back(0);
        CHECK_FALSE(DecodeEvent(longer));
    }
    Bytes leaf = EncodeEvent(OneOfEach()[0]);
    leaf[0] = 2;
    CHECK(DecodeEvent(leaf).error().find("version") != std::string::npos);
    leaf[0] = 1;
    leaf[1] = 0x7f;
    CHECK(DecodeEvent(leaf).error().find("unknown event kind") != std::string::npos);
    Bytes disputed = EncodeEvent(OneOfEach()[5]);
    disputed.back() = 2; // bool must be 0 or 1
    CHECK_FALSE(DecodeEvent(disputed));
}

TEST_CASE("a raw log with more than four topics or oversized data is refused")
{
    Bytes leaf = EncodeEvent({Origin(), RawEvmLog{{}, Bytes{}}});
    const size_t count_at = leaf.size() - 5; // topic count, then a 4-byte empty data length
    CHECK(DecodeEvent(leaf));
    leaf[count_at] = 5;
    CHECK_FALSE(DecodeEvent(leaf));
}

TEST_CASE("the off-chain signing hash covers kind, key and payload")
{
    OffchainEvent a{"offer.posted", "k1", Bytes{1, 2}, {}, {}};
    OffchainEvent b = a;
    CHECK(OffchainSigningHash(a) == OffchainSigningHash(b));
    b.payload.push_back(3);
    CHECK(OffchainSigningHash(a) != OffchainSigningHash(b));
    b = a;
    b.idempotency_key = "k2";
    CHECK(OffchainSigningHash(a) != OffchainSigningHash(b));
    b = a;
    b.kind = "offer.cancelled";
    CHECK(OffchainSigningHash(a) != OffchainSigningHash(b));
    b = a;
    b.signature[0] = 1; // the signature is not part of what is signed
    CHECK(OffchainSigningHash(a) == OffchainSigningHash(b));
}
