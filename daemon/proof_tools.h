// Proof bundles (ledger_getProofBundle, docs/auditor-guide.md) checked offline, and
// exported as OpenTimestamps proofs. Used by bitacora-cli and its tests.
#pragma once

#include "common/result.h"
#include "common/sha256.h"
#include "ledger/checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace bitacora {

struct BundleCheck {
    bool anchored{false};
    uint64_t index{0};
    uint64_t tree_size{0};
    Hash256 root{};
    std::string event_kind;
    ledger::Checkpoint checkpoint;
    // With an anchor:
    uint64_t block_height{0};
    std::string block_hash; // display order
    std::string txid;       // display order
};

// Every offline check of a bundle, in order; the error names the first that failed.
// expected_key pins the operator's checkpoint key (else the bundle's own key is used).
Result<BundleCheck> VerifyBundle(const nlohmann::json& bundle, const std::optional<ledger::XOnlyPubKey>& expected_key);

// The bundle's event as an OpenTimestamps proof: the stamped file is 0x00 || leaf (its
// SHA-256 is the RFC 6962 leaf hash), then prepend/append/sha256 operations up the tree,
// through the anchor transaction to its txid and up the block's Merkle tree, ending in a
// Bitcoin block header attestation at the anchor's height. The bundle must be anchored.
Result<std::string> ExportOts(const nlohmann::json& bundle);

} // namespace bitacora
