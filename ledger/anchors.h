// Anchors: the log's (tree size, root) written into a Bitcoin OP_RETURN output.
// The anchor's state machine is persisted in the ledger's database before each step
// (planned, signed, broadcast, confirmed, final), so that a crash at any point neither
// loses nor duplicates an anchor; its lifecycle events also go into the log.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::ledger {

// OP_RETURN payload: "BTCR" || version 0x01 || tree size (u64 big-endian) || root: 45 bytes.
inline constexpr std::array<uint8_t, 4> kAnchorMagic = {'B', 'T', 'C', 'R'};
inline constexpr uint8_t kAnchorPayloadVersion = 1;
inline constexpr size_t kAnchorPayloadBytes = 45;
Bytes AnchorPayload(uint64_t tree_size, const Hash256& root);
struct AnchorCommitment {
    uint64_t tree_size{0};
    Hash256 root{};
    bool operator==(const AnchorCommitment&) const = default;
};
std::optional<AnchorCommitment> ParseAnchorPayload(std::span<const uint8_t> payload);

enum class AnchorState : uint8_t {
    Planned = 1,   // (size, root) chosen; no transaction yet
    Signed = 2,    // a signed transaction is recorded; it may or may not have been sent
    Broadcast = 3, // accepted by the node (mempool)
    Confirmed = 4, // in a block of the best chain; proof material stored
    Final = 5,     // that block has the configured number of confirmations
    Abandoned = 6, // will never confirm (inputs spent elsewhere, or its block was pruned unseen); re-anchored
};
std::string_view AnchorStateName(AnchorState state);

// What a proof needs from Bitcoin, stored as soon as the block connects (a pruned node
// may drop the block soon after).
struct AnchorProofMaterial {
    uint64_t block_height{0};
    Hash256 block_hash{};                  // internal byte order
    std::array<uint8_t, 80> header{};
    Bytes tx;                              // non-witness serialization: sha256d is the txid
    Hash256 txid{};                        // internal byte order
    uint32_t output_index{0};              // the OP_RETURN output
    uint32_t payload_offset{0};            // where the 45-byte payload starts in `tx`
    uint32_t tx_index{0};                  // position in the block
    std::vector<Hash256> branch;           // Bitcoin Merkle branch, bottom first, internal order
    bool operator==(const AnchorProofMaterial&) const = default;
};

struct AnchorRecord {
    static constexpr size_t kTxidsMax = 64;     // replacements (RBF) kept per anchor
    static constexpr size_t kNoteBytesMax = 512;
    static constexpr size_t kBranchMax = 32;

    uint64_t id{0};                // 1, 2, ...
    AnchorState state{AnchorState::Planned};
    uint64_t tree_size{0};
    Hash256 root{};
    uint64_t log_events_at_plan{0}; // events in the log that are not anchor events, when planned
    uint64_t planned_time{0};       // unix seconds
    uint64_t updated_time{0};
    Bytes signed_tx;                // the latest signed version (full serialization)
    std::vector<Hash256> txids;     // every version signed, latest last (internal order)
    uint64_t broadcast_height{0};   // best height when the latest version was sent
    uint32_t fee_bumps{0};
    std::optional<AnchorProofMaterial> proof;
    std::string note;               // the last error, or why it was abandoned

    bool operator==(const AnchorRecord&) const = default;
    bool active() const { return state != AnchorState::Final && state != AnchorState::Abandoned; }
    bool proven() const { return proof.has_value() && (state == AnchorState::Confirmed || state == AnchorState::Final); }
};

Bytes EncodeAnchorRecord(const AnchorRecord& record);
Result<AnchorRecord> DecodeAnchorRecord(std::span<const uint8_t> bytes);

} // namespace bitacora::ledger
