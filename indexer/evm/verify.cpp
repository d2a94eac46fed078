#include "indexer/evm/verify.h"

#include "indexer/evm/keccak.h"
#include "indexer/evm/rlp.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

namespace bitacora::evm {
namespace {

constexpr uint8_t kDepositType = 0x7e; // OP-stack deposit transactions
constexpr size_t kQuantityBytesMax = 32;

// A JSON quantity ("0x1f") as big-endian bytes without leading zeros, as RLP wants it.
std::optional<Bytes> QuantityBytes(std::string_view text)
{
    if (text.size() < 3 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) return std::nullopt;
    text.remove_prefix(2);
    while (text.size() > 1 && text[0] == '0') text.remove_prefix(1);
    if (text == "0") return Bytes{};
    const std::string padded = (text.size() % 2 == 1 ? "0x0" : "0x") + std::string(text);
    auto bytes = HexDecode(padded);
    if (!bytes || bytes->size() > kQuantityBytesMax) return std::nullopt;
    return bytes;
}

enum class FieldKind { Hash, Address, Bloom, Nonce, Data, Quantity };
struct HeaderField {
    const char* name;
    FieldKind kind;
    bool optional; // added by a later fork; present in order from the first one
};

// The header's consensus fields in RLP order: London added baseFeePerGas, Shanghai
// withdrawalsRoot, Cancun blobGasUsed, excessBlobGas and parentBeaconBlockRoot, Prague
// requestsHash. OP-stack headers are the same.
constexpr HeaderField kHeaderFields[] = {
    {"parentHash", FieldKind::Hash, false},       {"sha3Uncles", FieldKind::Hash, false},
    {"miner", FieldKind::Address, false},         {"stateRoot", FieldKind::Hash, false},
    {"transactionsRoot", FieldKind::Hash, false}, {"receiptsRoot", FieldKind::Hash, false},
    {"logsBloom", FieldKind::Bloom, false},       {"difficulty", FieldKind::Quantity, false},
    {"number", FieldKind::Quantity, false},       {"gasLimit", FieldKind::Quantity, false},
    {"gasUsed", FieldKind::Quantity, false},      {"timestamp", FieldKind::Quantity, false},
    {"extraData", FieldKind::Data, false},        {"mixHash", FieldKind::Hash, false},
    {"nonce", FieldKind::Nonce, false},           {"baseFeePerGas", FieldKind::Quantity, true},
    {"withdrawalsRoot", FieldKind::Hash, true},   {"blobGasUsed", FieldKind::Quantity, true},
    {"excessBlobGas", FieldKind::Quantity, true}, {"parentBeaconBlockRoot", FieldKind::Hash, true},
    {"requestsHash", FieldKind::Hash, true},
};

std::optional<Bytes> FieldBytes(std::string_view text, FieldKind kind)
{
    if (kind == FieldKind::Quantity) return QuantityBytes(text);
    auto bytes = HexDecode(text);
    if (!bytes) return std::nullopt;
    const size_t want = kind == FieldKind::Hash ? 32 : kind == FieldKind::Address ? 20 : kind == FieldKind::Bloom ? 256
                      : kind == FieldKind::Nonce ? 8 : bytes->size();
    if (bytes->size() != want) return std::nullopt;
    return bytes;
}

void AppendLogRlp(Bytes& out, const Log& log)
{
    Bytes topics;
    for (const auto& topic : log.topics) rlp::AppendString(topics, topic);
    Bytes payload;
    rlp::AppendString(payload, log.address);
    rlp::AppendList(payload, topics);
    rlp::AppendString(payload, log.data);
    rlp::AppendList(out, payload);
}

bool SameLog(const Log& a, const Log& b)
{
    return a.address == b.address && a.topics == b.topics && a.data == b.data && a.log_index == b.log_index &&
           a.tx_hash == b.tx_hash;
}

Result<Receipt> ParseReceipt(const nlohmann::json& object)
{
    if (!object.is_object()) return Error{"receipt is not an object"};
    Receipt receipt;
    auto quantity = [&](const char* name) -> Result<uint64_t> {
        auto it = object.find(name);
        if (it == object.end()) return Error{fmt::format("receipt lacks '{}'", name)};
        auto value = ParseQuantity(*it);
        if (!value) return Error{fmt::format("receipt '{}': {}", name, value.error())};
        return *value;
    };
    if (object.contains("type")) {
        auto type = quantity("type");
        if (!type || *type > 0x7f) return Error{"receipt type is not a byte below 0x80"};
        receipt.type = static_cast<uint8_t>(*type);
    }
    if (object.contains("status")) {
        auto status = quantity("status");
        if (!status || *status > 1) return Error{"receipt status is not 0 or 1"};
        receipt.status = *status == 1;
    } else {
        auto root = object.contains("root") ? ParseHash(object["root"]) : Result<Hash256>(Error{"no status or root"});
        if (!root) return Error{"receipt: " + root.error()};
        receipt.post_state = *root;
    }
    auto gas = quantity("cumulativeGasUsed");
    if (!gas) return gas.failure();
    receipt.cumulative_gas_used = *gas;
    auto bloom = object.contains("logsBloom") && object["logsBloom"].is_string()
                     ? HexDecode(object["logsBloom"].get_ref<const std::string&>()) : std::nullopt;
    if (!bloom || bloom->size() != receipt.logs_bloom.size()) return Error{"receipt logsBloom is not 256 bytes"};
    std::copy(bloom->begin(), bloom->end(), receipt.logs_bloom.begin());
    auto tx = object.contains("transactionHash") ? ParseHash(object["transactionHash"]) : Result<Hash256>(Error{"missing"});
    if (!tx) return Error{"receipt transactionHash: " + tx.error()};
    receipt.tx_hash = *tx;
    if (receipt.type == kDepositType) {
        for (auto [name, slot] : {std::pair{"depositNonce", &receipt.deposit_nonce},
                                  std::pair{"depositReceiptVersion", &receipt.deposit_receipt_version}}) {
            if (!object.contains(name) || object[name].is_null()) continue;
            auto value = quantity(name);
            if (!value) return value.failure();
            *slot = *value;
        }
        if (receipt.deposit_receipt_version && !receipt.deposit_nonce) return Error{"deposit receipt version without nonce"};
    }
    return receipt;
}

} // namespace

void BloomAdd(Bloom& bloom, std::span<const uint8_t> item)
{
    const Hash256 hash = Keccak(item);
    for (size_t i = 0; i < 6; i += 2) {
        const unsigned bit = ((unsigned{hash[i]} << 8) | hash[i + 1]) & 2047u;
        bloom[bloom.size() - 1 - bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    }
}

bool BloomContains(const Bloom& bloom, std::span<const uint8_t> item)
{
    const Hash256 hash = Keccak(item);
    for (size_t i = 0; i < 6; i += 2) {
        const unsigned bit = ((unsigned{hash[i]} << 8) | hash[i + 1]) & 2047u;
        if ((bloom[bloom.size() - 1 - bit / 8] & (1u << (bit % 8))) == 0) return false;
    }
    return true;
}

Bloom LogsBloom(std::span<const Log> logs)
{
    Bloom bloom{};
    for (const auto& log : logs) {
        BloomAdd(bloom, log.address);
        for (const auto& topic : log.topics) BloomAdd(bloom, topic);
    }
    return bloom;
}

std::optional<std::string> CheckLogsInBloom(const BlockHeader& header, std::span<const Log> logs)
{
    for (const auto& log : logs) {
        if (!BloomContains(header.logs_bloom, log.address)) {
            return fmt::format("log {} of block {}: address {} is not in the block's logsBloom", log.log_index,
                               header.number, FormatAddress(log.address));
        }
        for (size_t i = 0; i < log.topics.size(); ++i) {
            if (!BloomContains(header.logs_bloom, log.topics[i])) {
                return fmt::format("log {} of block {}: topics[{}] {} is not in the block's logsBloom", log.log_index,
                                   header.number, i, HexEncode0x(log.topics[i]));
            }
        }
    }
    return std::nullopt;
}

bool BloomMayHoldAddress(const Bloom& bloom, std::span<const Address> addresses)
{
    return std::any_of(addresses.begin(), addresses.end(), [&](const Address& a) { return BloomContains(bloom, a); });
}

std::optional<Hash256> HeaderHashCache::Find(std::string_view fields) const
{
    for (const auto& [text, hash] : m_entries) {
        if (text == fields) return hash;
    }
    return std::nullopt;
}

void HeaderHashCache::Insert(std::string fields, const Hash256& hash)
{
    if (m_entries_max == 0) return;
    if (m_entries.size() < m_entries_max) {
        m_entries.emplace_back(std::move(fields), hash);
        return;
    }
    m_entries[m_next] = {std::move(fields), hash};
    m_next = (m_next + 1) % m_entries_max;
}

namespace {

using HeaderTexts = std::array<std::optional<std::string_view>, std::size(kHeaderFields)>;

// The fields' texts, each with its length first (or an absent mark): one key per header.
std::string CacheKey(const HeaderTexts& texts)
{
    std::string key;
    for (const auto& text : texts) {
        const uint32_t size = text ? static_cast<uint32_t>(text->size()) : UINT32_MAX;
        key.append(reinterpret_cast<const char*>(&size), sizeof(size));
        if (text) key.append(*text);
    }
    return key;
}

Result<Hash256> HashOfTexts(const HeaderTexts& texts)
{
    Bytes payload;
    bool ended = false; // an optional field was absent: no later one may be present
    for (size_t i = 0; i < texts.size(); ++i) {
        const HeaderField& spec = kHeaderFields[i];
        if (!texts[i]) {
            if (!spec.optional) return Error{fmt::format("block lacks '{}'", spec.name)};
            ended = true;
            continue;
        }
        if (ended) return Error{fmt::format("block has '{}' after a missing earlier field", spec.name)};
        auto bytes = FieldBytes(*texts[i], spec.kind);
        if (!bytes) return Error{fmt::format("block field '{}' is malformed", spec.name)};
        rlp::AppendString(payload, *bytes);
    }
    return Keccak(rlp::EncodeList(payload));
}

} // namespace

Result<Hash256> HeaderHashFromFields(const HeaderFieldLookup& field, HeaderHashCache* cache)
{
    HeaderTexts texts;
    for (size_t i = 0; i < texts.size(); ++i) texts[i] = field(kHeaderFields[i].name);
    if (cache == nullptr) return HashOfTexts(texts);
    std::string key = CacheKey(texts);
    if (auto hit = cache->Find(key)) return *hit;
    auto hash = HashOfTexts(texts);
    if (hash) cache->Insert(std::move(key), *hash);
    return hash;
}

std::optional<std::string> CheckHeaderHash(const BlockHeader& header)
{
    if (header.fields_hash == header.hash) return std::nullopt;
    return fmt::format("block {}: its fields hash to {}, not to its hash {}", header.number, HexEncode0x(header.fields_hash),
                       HexEncode0x(header.hash));
}

Result<std::vector<Receipt>> ParseBlockReceipts(const nlohmann::json& result, size_t logs_max)
{
    if (!result.is_array()) return Error{"eth_getBlockReceipts result is not an array"};
    std::vector<Receipt> out;
    out.reserve(result.size());
    size_t logs = 0;
    for (size_t i = 0; i < result.size(); ++i) {
        auto receipt = ParseReceipt(result[i]);
        if (!receipt) return Error{fmt::format("receipt {}: {}", i, receipt.error())};
        const auto it = result[i].find("logs");
        if (it == result[i].end() || !it->is_array()) return Error{fmt::format("receipt {} has no logs array", i)};
        logs += it->size();
        if (logs > logs_max) return Error{fmt::format("more than {} logs in one block's receipts", logs_max)};
        auto parsed = ParseLogs(*it, logs_max);
        if (!parsed) return Error{fmt::format("receipt {}: {}", i, parsed.error())};
        receipt->logs = std::move(parsed.value());
        out.push_back(std::move(receipt.value()));
    }
    return out;
}

Bytes EncodeReceipt(const Receipt& receipt)
{
    Bytes payload;
    if (receipt.post_state) rlp::AppendString(payload, *receipt.post_state);
    else rlp::AppendUint(payload, receipt.status ? 1 : 0);
    rlp::AppendUint(payload, receipt.cumulative_gas_used);
    rlp::AppendString(payload, receipt.logs_bloom);
    Bytes logs;
    for (const auto& log : receipt.logs) AppendLogRlp(logs, log);
    rlp::AppendList(payload, logs);
    if (receipt.deposit_nonce) rlp::AppendUint(payload, *receipt.deposit_nonce);
    if (receipt.deposit_receipt_version) rlp::AppendUint(payload, *receipt.deposit_receipt_version);
    Bytes out;
    if (receipt.type != 0) out.push_back(receipt.type);
    rlp::AppendList(out, payload);
    return out;
}

Hash256 ReceiptsRoot(std::span<const Receipt> receipts)
{
    std::vector<Bytes> encoded;
    encoded.reserve(receipts.size());
    for (const auto& receipt : receipts) encoded.push_back(EncodeReceipt(receipt));
    return rlp::OrderedTrieRoot(encoded);
}

std::optional<std::string> CheckReceipts(const BlockHeader& header, std::span<const Receipt> receipts,
                                         std::span<const Log> watched_logs, std::span<const Address> watched)
{
    const Hash256 root = ReceiptsRoot(receipts);
    if (root != header.receipts_root) {
        return fmt::format("the receipts of block {} have root {}, its header says {}", header.number, HexEncode0x(root),
                           HexEncode0x(header.receipts_root));
    }
    Bloom bloom{};
    std::vector<Log> theirs;
    uint32_t index = 0;
    for (const auto& receipt : receipts) {
        for (size_t i = 0; i < bloom.size(); ++i) bloom[i] |= receipt.logs_bloom[i];
        for (const auto& log : receipt.logs) {
            if (log.log_index != index) return fmt::format("the receipts of block {} number their logs wrongly", header.number);
            ++index;
            if (std::find(watched.begin(), watched.end(), log.address) == watched.end()) continue;
            Log ours = log;
            ours.tx_hash = receipt.tx_hash;
            theirs.push_back(std::move(ours));
        }
    }
    if (bloom != header.logs_bloom) return fmt::format("the receipts of block {} do not make its logsBloom", header.number);
    if (theirs.size() != watched_logs.size()) {
        return fmt::format("block {} holds {} logs of the watched contracts by its receipts, eth_getLogs gave {}", header.number,
                           theirs.size(), watched_logs.size());
    }
    for (size_t i = 0; i < theirs.size(); ++i) {
        if (!SameLog(theirs[i], watched_logs[i])) {
            return fmt::format("log {} of block {} differs from the block's receipts", watched_logs[i].log_index, header.number);
        }
    }
    return std::nullopt;
}

QuorumVerdict JudgeQuorum(const Hash256& ours, std::span<const QuorumAnswer> answers, size_t quorum)
{
    QuorumVerdict verdict;
    std::string detail;
    for (const auto& answer : answers) {
        const bool agrees = answer.answered && answer.digest == ours;
        if (agrees) ++verdict.agreeing;
        if (!detail.empty()) detail += "; ";
        detail += answer.endpoint + ": " +
                  (!answer.answered ? "no answer (" + answer.error.substr(0, 200) + ")"
                                    : agrees ? "agrees" : "DIFFERS (" + HexEncode(answer.digest).substr(0, 16) + ")");
    }
    verdict.agreed = verdict.agreeing >= quorum;
    verdict.detail = fmt::format("{} of {} endpoints agree, {} needed: {}", verdict.agreeing, answers.size(), quorum, detail);
    return verdict;
}

} // namespace bitacora::evm
