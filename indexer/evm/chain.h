// Blocks and logs as an Ethereum node returns them, parsed strictly: a hash that is not
// 32 bytes, a quantity that is not hex or overflows 64 bits, a missing field, all are
// errors, because a follower must never turn a broken answer into ledger data.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"
#include "ledger/event.h"

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::evm {

using ledger::Address;
using Bloom = std::array<uint8_t, 256>; // a block's or receipt's logsBloom: 2048 bits

struct BlockHeader {
    uint64_t number{0};
    Hash256 hash{};
    Hash256 parent_hash{};
    uint64_t timestamp{0};
    Hash256 receipts_root{};
    Bloom logs_bloom{};
    Hash256 fields_hash{}; // Keccak-256 of the RLP of its fields: `hash`, for an honest node
    bool operator==(const BlockHeader&) const = default;
};

struct Log {
    Address address{};
    std::vector<Hash256> topics; // at most 4
    Bytes data;
    uint64_t block_number{0};
    Hash256 block_hash{};
    Hash256 tx_hash{};
    uint32_t log_index{0};
    bool removed{false};
};

Result<uint64_t> ParseQuantity(const nlohmann::json& value);
std::string FormatQuantity(uint64_t value); // "0x1f"
Result<Hash256> ParseHash(const nlohmann::json& value);
Result<Address> ParseAddress(std::string_view text);
std::string FormatAddress(const Address& address);

// An eth_getBlockByNumber / eth_getBlockByHash result (null is an error: no such block).
Result<BlockHeader> ParseBlockHeader(const nlohmann::json& block);
Result<Log> ParseLog(const nlohmann::json& log);
// An eth_getLogs result; at most logs_max entries.
Result<std::vector<Log>> ParseLogs(const nlohmann::json& logs, size_t logs_max);

// A whole eth_getLogs JSON-RPC answer, read with simdjson straight into logs: the answers
// of a catch-up run to tens of MB, and a DOM of them costs more than everything else.
// Either logs or a JSON-RPC error (code, message); an Error for anything malformed, or an
// answer whose id is not `id`.
struct GetLogsAnswer {
    std::vector<Log> logs;
    bool is_error{false};
    int64_t error_code{0};
    std::string error_message;
};
class AnswerParser {
public:
    AnswerParser();
    ~AnswerParser();
    AnswerParser(const AnswerParser&) = delete;
    AnswerParser& operator=(const AnswerParser&) = delete;
    Result<GetLogsAnswer> ParseGetLogs(std::string_view body, uint64_t id, size_t logs_max);
    // A batch of eth_getLogs answers with ids first_id .. first_id + count - 1, in any
    // order: each its logs or its JSON-RPC error, in id order; an Error for anything malformed.
    Result<std::vector<GetLogsAnswer>> ParseGetLogsBatch(std::string_view body, uint64_t first_id, size_t count,
                                                         size_t logs_max);
    // A batch of eth_getBlockByNumber answers with ids first_id .. first_id + count - 1,
    // in any order: the headers in id order. Any error or missing block is an Error.
    Result<std::vector<BlockHeader>> ParseHeaderBatch(std::string_view body, uint64_t first_id, size_t count);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl; // simdjson's parser keeps its buffers between answers
};

} // namespace bitacora::evm
