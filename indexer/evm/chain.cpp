#include "indexer/evm/chain.h"

#include "common/json_bounds.h"

#include "indexer/evm/verify.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

namespace bitacora::evm {
namespace {

const nlohmann::json* Field(const nlohmann::json& object, const char* name)
{
    auto it = object.find(name);
    return it == object.end() ? nullptr : &*it;
}

template <typename T, typename Parse>
Result<T> Required(const nlohmann::json& object, const char* name, Parse parse)
{
    const nlohmann::json* field = Field(object, name);
    if (field == nullptr) return Error{fmt::format("missing field '{}'", name)};
    auto parsed = parse(*field);
    if (!parsed) return Error{fmt::format("field '{}': {}", name, parsed.error())};
    return std::move(parsed.value());
}

Result<uint64_t> QuantityText(std::string_view text)
{
    if (text.size() < 3 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) return Error{"quantity is not 0x-hex"};
    if (text.size() > 2 + 16) return Error{"quantity exceeds 64 bits"};
    uint64_t out = 0;
    for (size_t i = 2; i < text.size(); ++i) {
        const char c = text[i];
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit < 0) return Error{"quantity is not 0x-hex"};
        out = (out << 4) | static_cast<uint64_t>(digit);
    }
    return out;
}

// What a header commits to that the checks use: receiptsRoot and logsBloom.
bool ReadCommitments(const nlohmann::json& block, BlockHeader& header)
{
    const nlohmann::json* root = Field(block, "receiptsRoot");
    const nlohmann::json* bloom = Field(block, "logsBloom");
    return root != nullptr && root->is_string() && HexDecodeExact(root->get_ref<const std::string&>(), header.receipts_root) &&
           bloom != nullptr && bloom->is_string() && HexDecodeExact(bloom->get_ref<const std::string&>(), header.logs_bloom);
}

} // namespace

Result<uint64_t> ParseQuantity(const nlohmann::json& value)
{
    if (!value.is_string()) return Error{"quantity is not a string"};
    return QuantityText(value.get_ref<const std::string&>());
}

std::string FormatQuantity(uint64_t value)
{
    return fmt::format("0x{:x}", value);
}

Result<Hash256> ParseHash(const nlohmann::json& value)
{
    Hash256 out{};
    if (!value.is_string() || !HexDecodeExact(value.get_ref<const std::string&>(), out)) {
        return Error{"not a 32-byte hex hash"};
    }
    return out;
}

Result<Address> ParseAddress(std::string_view text)
{
    Address out{};
    if (text.size() != 42 || !HexDecodeExact(text, out)) return Error{fmt::format("'{}' is not a 20-byte 0x-hex address", text)};
    return out;
}

std::string FormatAddress(const Address& address)
{
    return HexEncode0x(address);
}

Result<BlockHeader> ParseBlockHeader(const nlohmann::json& block)
{
    if (block.is_null()) return Error{"no such block"};
    if (!block.is_object()) return Error{"block is not an object"};
    auto number = Required<uint64_t>(block, "number", ParseQuantity);
    if (!number) return number.failure();
    auto hash = Required<Hash256>(block, "hash", ParseHash);
    if (!hash) return hash.failure();
    auto parent = Required<Hash256>(block, "parentHash", ParseHash);
    if (!parent) return parent.failure();
    auto timestamp = Required<uint64_t>(block, "timestamp", ParseQuantity);
    if (!timestamp) return timestamp.failure();
    BlockHeader header{*number, *hash, *parent, *timestamp};
    auto fields = HeaderHashFromFields([&](std::string_view name) -> std::optional<std::string_view> {
        const nlohmann::json* field = Field(block, std::string(name).c_str());
        if (field == nullptr || !field->is_string()) return std::nullopt;
        return std::string_view(field->get_ref<const std::string&>());
    });
    // A header without them is refused by the checks (its fields_hash stays zero), not here.
    if (fields && ReadCommitments(block, header)) header.fields_hash = *fields;
    return header;
}

Result<Log> ParseLog(const nlohmann::json& object)
{
    if (!object.is_object()) return Error{"log is not an object"};
    Log log;
    const nlohmann::json* address = Field(object, "address");
    if (address == nullptr || !address->is_string()) return Error{"log has no address"};
    auto parsed_address = ParseAddress(address->get_ref<const std::string&>());
    if (!parsed_address) return parsed_address.failure();
    log.address = *parsed_address;

    const nlohmann::json* topics = Field(object, "topics");
    if (topics == nullptr || !topics->is_array() || topics->size() > 4) return Error{"log topics are not an array of at most 4"};
    for (const auto& topic : *topics) {
        auto hash = ParseHash(topic);
        if (!hash) return Error{"log topic: " + hash.error()};
        log.topics.push_back(*hash);
    }
    const nlohmann::json* data = Field(object, "data");
    if (data == nullptr || !data->is_string()) return Error{"log has no data"};
    auto bytes = HexDecode(data->get_ref<const std::string&>());
    if (!bytes) return Error{"log data is not hex"};
    log.data = std::move(*bytes);

    auto block_number = Required<uint64_t>(object, "blockNumber", ParseQuantity);
    if (!block_number) return block_number.failure();
    log.block_number = *block_number;
    auto block_hash = Required<Hash256>(object, "blockHash", ParseHash);
    if (!block_hash) return block_hash.failure();
    log.block_hash = *block_hash;
    auto tx_hash = Required<Hash256>(object, "transactionHash", ParseHash);
    if (!tx_hash) return tx_hash.failure();
    log.tx_hash = *tx_hash;
    auto log_index = Required<uint64_t>(object, "logIndex", ParseQuantity);
    if (!log_index) return log_index.failure();
    if (*log_index > UINT32_MAX) return Error{"logIndex exceeds 32 bits"};
    log.log_index = static_cast<uint32_t>(*log_index);
    if (const nlohmann::json* removed = Field(object, "removed"); removed != nullptr) {
        if (!removed->is_boolean()) return Error{"log 'removed' is not a boolean"};
        log.removed = removed->get<bool>();
    }
    return log;
}

Result<std::vector<Log>> ParseLogs(const nlohmann::json& logs, size_t logs_max)
{
    if (!logs.is_array()) return Error{"eth_getLogs result is not an array"};
    if (logs.size() > logs_max) return Error{fmt::format("{} logs in one answer, over the limit of {}", logs.size(), logs_max), ErrorKind::TooLarge};
    std::vector<Log> out;
    out.reserve(logs.size());
    for (size_t i = 0; i < logs.size(); ++i) {
        auto log = ParseLog(logs[i]);
        if (!log) return Error{fmt::format("log {}: {}", i, log.error())};
        out.push_back(std::move(log.value()));
    }
    return out;
}

namespace {

namespace sj = simdjson::dom;

std::optional<std::string> ReadLog(sj::object object, Log& log)
{
    enum Seen : unsigned { kAddress = 1, kTopics = 2, kData = 4, kNumber = 8, kBlockHash = 16, kTx = 32, kIndex = 64 };
    unsigned seen = 0;
    for (auto [key, value] : object) {
        std::string_view text;
        if (key == "topics") {
            sj::array topics;
            if (value.get_array().get(topics)) return "log topics are not an array";
            for (auto topic : topics) {
                if (log.topics.size() == 4) return "a log has more than 4 topics";
                Hash256 hash{};
                if (topic.get_string().get(text) || !HexDecodeExact(text, hash)) return "a log topic is not a 32-byte hash";
                log.topics.push_back(hash);
            }
            seen |= kTopics;
            continue;
        }
        if (key == "removed") {
            if (value.get_bool().get(log.removed)) return "log 'removed' is not a boolean";
            continue;
        }
        const bool wanted = key == "address" || key == "data" || key == "blockNumber" || key == "blockHash" ||
                            key == "transactionHash" || key == "logIndex";
        if (!wanted) continue;
        if (value.get_string().get(text)) return fmt::format("log '{}' is not a string", key);
        if (key == "address") {
            if (text.size() != 42 || !HexDecodeExact(text, log.address)) return "log address is not 20 bytes of hex";
            seen |= kAddress;
        } else if (key == "data") {
            auto bytes = HexDecode(text);
            if (!bytes) return "log data is not hex";
            log.data = std::move(*bytes);
            seen |= kData;
        } else if (key == "blockHash") {
            if (!HexDecodeExact(text, log.block_hash)) return "log blockHash is not a 32-byte hash";
            seen |= kBlockHash;
        } else if (key == "transactionHash") {
            if (!HexDecodeExact(text, log.tx_hash)) return "log transactionHash is not a 32-byte hash";
            seen |= kTx;
        } else {
            auto number = QuantityText(text);
            if (!number) return fmt::format("log '{}': {}", key, number.error());
            if (key == "blockNumber") {
                log.block_number = *number;
                seen |= kNumber;
            } else {
                if (*number > UINT32_MAX) return "logIndex exceeds 32 bits";
                log.log_index = static_cast<uint32_t>(*number);
                seen |= kIndex;
            }
        }
    }
    if (seen != (kAddress | kTopics | kData | kNumber | kBlockHash | kTx | kIndex)) return "a log lacks a field";
    return std::nullopt;
}

} // namespace

static std::string ParseFailure(simdjson::error_code error)
{
    if (error == simdjson::DEPTH_ERROR) return fmt::format("answer nests deeper than {} levels", kJsonDepthMax);
    return "answer is not JSON";
}

// simdjson's DOM parser: the library picks the fastest kernel for this CPU at run time.
struct AnswerParser::Impl {
    sj::parser parser;
    HeaderHashCache header_hashes;
    // The nesting limit every JSON that enters the process has (common/json_bounds.h);
    // simdjson keeps it when it grows its buffers for a larger answer.
    // (Should the allocation fail, parse() allocates with simdjson's default depth, 1024;
    // simdjson itself does not recurse.)
    Impl()
    {
        const simdjson::error_code allocated = parser.allocate(64 * 1024, kJsonDepthMax);
        static_cast<void>(allocated);
    }
};

AnswerParser::AnswerParser() : m_impl(std::make_unique<Impl>()) {}
AnswerParser::~AnswerParser() = default;

namespace {

// One eth_getLogs answer object: its id, and its logs or its JSON-RPC error.
Result<GetLogsAnswer> ReadLogsAnswer(sj::object root, uint64_t& id, size_t logs_max)
{
    GetLogsAnswer answer;
    bool have_id = false;
    bool have_result = false;
    for (auto [key, value] : root) {
        if (key == "id") {
            if (value.get_uint64().get(id)) return Error{"answer id is not a number"};
            have_id = true;
        } else if (key == "error") {
            sj::object error;
            if (value.get_object().get(error)) return Error{"error is not an object"};
            answer.is_error = true;
            for (auto [name, member] : error) {
                if (name == "code") {
                    if (member.get_int64().get(answer.error_code)) return Error{"error code is not an integer"};
                } else if (name == "message") {
                    std::string_view text;
                    if (member.get_string().get(text)) return Error{"error message is not a string"};
                    answer.error_message.insert(0, text);
                } else if (name == "data") {
                    answer.error_message += " (" + simdjson::minify(member).substr(0, 1024) + ")";
                }
            }
        } else if (key == "result") {
            sj::array logs;
            if (value.get_array().get(logs)) return Error{"eth_getLogs result is not an array"};
            if (logs.size() > logs_max) return Error{fmt::format("{} logs in one answer, over the limit of {}", logs.size(), logs_max), ErrorKind::TooLarge};
            answer.logs.reserve(logs.size());
            for (auto element : logs) {
                sj::object object;
                if (element.get_object().get(object)) return Error{fmt::format("log {} is not an object", answer.logs.size())};
                Log& log = answer.logs.emplace_back();
                if (auto error = ReadLog(object, log)) return Error{fmt::format("log {}: {}", answer.logs.size() - 1, *error)};
            }
            have_result = true;
        }
    }
    if (!have_id) return Error{"answer has no id"};
    if (have_result == answer.is_error) return Error{"answer needs exactly one of result and error"};
    return answer;
}

} // namespace

Result<GetLogsAnswer> AnswerParser::ParseGetLogs(std::string_view body, uint64_t id, size_t logs_max)
{
    sj::element document;
    if (const auto error = m_impl->parser.parse(body.data(), body.size(), /*realloc_if_needed=*/true).get(document)) {
        return Error{ParseFailure(error)};
    }
    sj::object root;
    if (document.get_object().get(root)) return Error{"answer is not a JSON object"};
    uint64_t answered = 0;
    auto answer = ReadLogsAnswer(root, answered, logs_max);
    if (answer && answered != id) return Error{"answer to another request"};
    return answer;
}

namespace {

// A batch answer's items, ids first_id .. first_id + count - 1 in any order, each exactly
// once: `read(object, slot)` reads one into its slot (id - first_id); the values in slot order.
template <typename T, typename Read>
Result<std::vector<T>> ReadBatch(sj::parser& parser, std::string_view body, uint64_t first_id, size_t count, Read read)
{
    sj::element document;
    if (const auto error = parser.parse(body.data(), body.size(), /*realloc_if_needed=*/true).get(document)) {
        return Error{ParseFailure(error)};
    }
    sj::array items;
    if (document.get_array().get(items)) return Error{"batch answer is not an array"};
    std::vector<std::optional<T>> slots(count);
    size_t seen = 0;
    for (auto item : items) {
        sj::object object;
        if (item.get_object().get(object)) return Error{"batch item is not an object"};
        uint64_t id = 0;
        if (object["id"].get_uint64().get(id) || id < first_id || id - first_id >= count || slots[id - first_id]) {
            return Error{"batch answer with an unknown or repeated id"};
        }
        auto value = read(object, id - first_id);
        if (!value) return value.failure();
        slots[id - first_id] = std::move(value.value());
        ++seen;
    }
    if (seen != count) return Error{fmt::format("batch of {} answered with {}", count, seen)};
    std::vector<T> out;
    out.reserve(count);
    for (auto& slot : slots) out.push_back(std::move(*slot));
    return out;
}

// One eth_getBlockByNumber answer's header; a JSON-RPC error is an Upstream error (the
// node failed the call: a rate limit, a block it does not have yet), not a malformed answer.
Result<BlockHeader> ReadHeaderAnswer(sj::object object, size_t slot, HeaderHashCache& cache)
{
    sj::element error;
    if (!object["error"].get(error) && !error.is_null()) {
        return Error{fmt::format("block request {} failed: {}", slot, simdjson::minify(error).substr(0, 512)),
                     ErrorKind::Upstream};
    }
    sj::object block;
    if (object["result"].get_object().get(block)) return Error{"no such block"};
    std::string_view number, hash, parent, timestamp;
    if (block["number"].get_string().get(number) || block["hash"].get_string().get(hash) ||
        block["parentHash"].get_string().get(parent) || block["timestamp"].get_string().get(timestamp)) {
        return Error{"block lacks number, hash, parentHash or timestamp"};
    }
    BlockHeader header;
    auto n = QuantityText(number);
    auto t = QuantityText(timestamp);
    if (!n || !t || !HexDecodeExact(hash, header.hash) || !HexDecodeExact(parent, header.parent_hash)) {
        return Error{"block has a malformed number, hash, parentHash or timestamp"};
    }
    header.number = *n;
    header.timestamp = *t;
    // A header without them is refused by the checks (its fields_hash stays zero), not here.
    std::string_view root, bloom;
    auto fields = HeaderHashFromFields([&](std::string_view name) -> std::optional<std::string_view> {
        std::string_view text;
        if (block[name].get_string().get(text)) return std::nullopt;
        return text;
    }, &cache);
    if (fields && !block["receiptsRoot"].get_string().get(root) && !block["logsBloom"].get_string().get(bloom) &&
        HexDecodeExact(root, header.receipts_root) && HexDecodeExact(bloom, header.logs_bloom)) {
        header.fields_hash = *fields;
    }
    return header;
}

} // namespace

Result<std::vector<GetLogsAnswer>> AnswerParser::ParseGetLogsBatch(std::string_view body, uint64_t first_id, size_t count,
                                                                    size_t logs_max)
{
    return ReadBatch<GetLogsAnswer>(m_impl->parser, body, first_id, count, [&](sj::object object, size_t) {
        uint64_t id = 0;
        return ReadLogsAnswer(object, id, logs_max);
    });
}

Result<std::vector<BlockHeader>> AnswerParser::ParseHeaderBatch(std::string_view body, uint64_t first_id, size_t count)
{
    return ReadBatch<BlockHeader>(m_impl->parser, body, first_id, count, [&](sj::object object, size_t slot) {
        return ReadHeaderAnswer(object, slot, m_impl->header_hashes);
    });
}

} // namespace bitacora::evm
