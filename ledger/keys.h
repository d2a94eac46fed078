// Every key layout of the ledger database, in one place.
//
// Column family `meta`:
//   "schema_version"          -> decimal text
//   "tree_size"               -> u64: number of events in the log (and leaves in the tree)
//   "cursor/" + source        -> u64 block number || 32-byte block hash: the last final
//                                block of that source folded into the log
// Column family `events`:
//   u64 index                 -> canonical leaf bytes (ledger/event.h, docs/ledger-format.md)
// Column family `merkle`:
//   u8 level || u64 index     -> 32-byte hash of the perfect subtree over leaves
//                                [index * 2^level, (index + 1) * 2^level), for level >= 1;
//                                level 0 (a leaf hash) is not stored but hashed from `events`
// Column family `proj` (projections, rebuilt from `events` by -rebuild):
//   'o' || 32-byte order id   -> OrderRecord
//   'r' || 20-byte seller     -> u8 reputation
//   'v' || 20-byte owner      -> VaultPosition
//   't'                       -> Totals
//   'i' || idempotency key    -> u64 index of the off-chain event that used it
//   'a' || u64 anchored size  -> the latest AnchorEvent leaf body for that anchor
// Column family `anchors` (state, not projections: -rebuild leaves it alone):
//   'r' || u64 id             -> AnchorRecord (ledger/anchors.h)
//   'p' || u64 tree size || u64 id -> empty: the anchors whose proof material is stored
// All integers are big-endian, so RocksDB's byte order is numeric order.
#pragma once

#include "common/uint256.h"
#include "ledger/event.h"

#include <string>
#include <string_view>

namespace bitacora::ledger::keys {

inline constexpr const char* kMetaFamily = "meta";
inline constexpr const char* kEventsFamily = "events";
inline constexpr const char* kMerkleFamily = "merkle";
inline constexpr const char* kProjectionsFamily = "proj";
inline constexpr const char* kAnchorsFamily = "anchors";

inline constexpr std::string_view kSchemaVersion = "schema_version";
inline constexpr std::string_view kTreeSize = "tree_size";
inline constexpr std::string_view kCursorPrefix = "cursor/";
inline constexpr std::string_view kProjectionVersion = "projection_version";

inline std::string U64(uint64_t v)
{
    std::string out(8, '\0');
    for (int i = 7; i >= 0; --i) {
        out[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
    return out;
}

inline uint64_t ParseU64(std::string_view s)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
    return v;
}

inline std::string Event(uint64_t index) { return U64(index); }

inline std::string MerkleNode(unsigned level, uint64_t index)
{
    return std::string(1, static_cast<char>(level)) + U64(index);
}

inline std::string Order(const UInt256& id)
{
    const auto be = id.ToBigEndian();
    return "o" + std::string(be.begin(), be.end());
}
inline std::string Reputation(const Address& a) { return "r" + std::string(a.begin(), a.end()); }
inline std::string Position(const Address& a) { return "v" + std::string(a.begin(), a.end()); }
inline std::string Totals() { return "t"; }
inline std::string Idempotency(std::string_view key) { return "i" + std::string(key); }
inline std::string AnchorRecordKey(uint64_t id) { return "r" + U64(id); }
inline std::string ProvenAnchorKey(uint64_t tree_size, uint64_t id) { return "p" + U64(tree_size) + U64(id); }
inline std::string Anchor(uint64_t anchored_size) { return "a" + U64(anchored_size); }
// Account index (empty values): events of an account that are not events of its
// orders (vault operations, reputation, roles), in log order. Order events are found
// through the orders-by-party indexes below and the orders' histories.
inline constexpr std::string_view kAccountEventsPrefix = "A";
inline std::string AccountEvent(const Address& account, uint64_t index)
{
    return std::string(kAccountEventsPrefix) + std::string(account.begin(), account.end()) + U64(index);
}
// Secondary indexes (empty values): orders by seller and by buyer, in order-id order.
inline constexpr std::string_view kOrdersBySellerPrefix = "S";
inline constexpr std::string_view kOrdersByBuyerPrefix = "B";
inline std::string OrderByParty(std::string_view prefix, const Address& party, const UInt256& id)
{
    const auto be = id.ToBigEndian();
    return std::string(prefix) + std::string(party.begin(), party.end()) + std::string(be.begin(), be.end());
}

} // namespace bitacora::ledger::keys
