// Checks of an EVM node's answers against what the chain commits to: the logs of a block
// against its header's logsBloom, a header's fields against its hash, a block's receipts
// against its receiptsRoot and its logs, and several endpoints' answers against each
// other. Pure functions: observations in, verdicts out; the follower does the fetching.
#pragma once

#include "indexer/evm/chain.h"

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::evm {

// --- logsBloom: 2048 bits, three 11-bit indices from the first six bytes of Keccak-256 ---
void BloomAdd(Bloom& bloom, std::span<const uint8_t> item);
bool BloomContains(const Bloom& bloom, std::span<const uint8_t> item);
Bloom LogsBloom(std::span<const Log> logs);

// Every log's address and topics are in the header's bloom. nullopt: they are; else why not.
std::optional<std::string> CheckLogsInBloom(const BlockHeader& header, std::span<const Log> logs);
// Whether the bloom admits a log of one of these contracts (a block to look at closer).
bool BloomMayHoldAddress(const Bloom& bloom, std::span<const Address> addresses);

// --- the header hash: Keccak-256 of the RLP list of the header's consensus fields ---
// `field(name)` is the JSON text of a field of an eth_getBlockBy* answer, or nullopt.
using HeaderFieldLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

// Headers hashed before, by the text of their consensus fields: a node answers the same
// blocks at every poll (its head, its final block), and hashing them again was most of
// reading a header. Only a byte-identical text is a hit. Not thread-safe (one per parser).
class HeaderHashCache {
public:
    explicit HeaderHashCache(size_t entries_max = 64) : m_entries_max(entries_max) {}
    std::optional<Hash256> Find(std::string_view fields) const;
    void Insert(std::string fields, const Hash256& hash);

private:
    size_t m_entries_max;
    size_t m_next{0}; // the entry replaced next, once full
    std::vector<std::pair<std::string, Hash256>> m_entries;
};

Result<Hash256> HeaderHashFromFields(const HeaderFieldLookup& field, HeaderHashCache* cache = nullptr);
// The fields hash to the hash the node gave.
std::optional<std::string> CheckHeaderHash(const BlockHeader& header);

// --- receipts ---
struct Receipt {
    uint8_t type{0};                      // 0: legacy (untyped); 0x7e: OP-stack deposit
    std::optional<Hash256> post_state;    // pre-Byzantium receipts carry a state root...
    bool status{false};                   // ...later ones a status
    uint64_t cumulative_gas_used{0};
    Bloom logs_bloom{};
    std::vector<Log> logs;
    Hash256 tx_hash{};                    // not committed to by receiptsRoot
    std::optional<uint64_t> deposit_nonce;            // deposits, from Regolith
    std::optional<uint64_t> deposit_receipt_version;  // deposits, from Canyon
};

// An eth_getBlockReceipts result; at most logs_max logs over all receipts.
Result<std::vector<Receipt>> ParseBlockReceipts(const nlohmann::json& result, size_t logs_max);
// The consensus encoding: rlp([status, cumulativeGasUsed, logsBloom, logs, ...]),
// prefixed by the type byte for typed (EIP-2718) receipts.
Bytes EncodeReceipt(const Receipt& receipt);
Hash256 ReceiptsRoot(std::span<const Receipt> receipts);

// The receipts are the header's (receiptsRoot, logsBloom), and the block's logs of the
// watched contracts (an eth_getLogs answer, in log-index order) are exactly theirs.
std::optional<std::string> CheckReceipts(const BlockHeader& header, std::span<const Receipt> receipts,
                                         std::span<const Log> watched_logs, std::span<const Address> watched);

// --- quorum: several endpoints' view of the same final range ---
struct QuorumAnswer {
    std::string endpoint;   // scheme://host:port
    bool answered{false};
    Hash256 digest{};       // of the range: see the follower
    std::string error;      // why it did not answer
};
struct QuorumVerdict {
    bool agreed{false};
    size_t agreeing{0};
    std::string detail;     // the endpoints and what each said, for the log
};
// At least `quorum` answers equal `ours` (the range as we would append it).
QuorumVerdict JudgeQuorum(const Hash256& ours, std::span<const QuorumAnswer> answers, size_t quorum);

} // namespace bitacora::evm
