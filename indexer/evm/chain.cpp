#include "indexer/evm/chain.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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

} // namespace

Result<uint64_t> ParseQuantity(const nlohmann::json& value)
{
    if (!value.is_string()) return Error{"quantity is not a string"};
    const auto& text = value.get_ref<const std::string&>();
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
    if (!number) return Error{number.error()};
    auto hash = Required<Hash256>(block, "hash", ParseHash);
    if (!hash) return Error{hash.error()};
    auto parent = Required<Hash256>(block, "parentHash", ParseHash);
    if (!parent) return Error{parent.error()};
    auto timestamp = Required<uint64_t>(block, "timestamp", ParseQuantity);
    if (!timestamp) return Error{timestamp.error()};
    return BlockHeader{*number, *hash, *parent, *timestamp};
}

Result<Log> ParseLog(const nlohmann::json& object)
{
    if (!object.is_object()) return Error{"log is not an object"};
    Log log;
    const nlohmann::json* address = Field(object, "address");
    if (address == nullptr || !address->is_string()) return Error{"log has no address"};
    auto parsed_address = ParseAddress(address->get_ref<const std::string&>());
    if (!parsed_address) return Error{parsed_address.error()};
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
    if (!block_number) return Error{block_number.error()};
    log.block_number = *block_number;
    auto block_hash = Required<Hash256>(object, "blockHash", ParseHash);
    if (!block_hash) return Error{block_hash.error()};
    log.block_hash = *block_hash;
    auto tx_hash = Required<Hash256>(object, "transactionHash", ParseHash);
    if (!tx_hash) return Error{tx_hash.error()};
    log.tx_hash = *tx_hash;
    auto log_index = Required<uint64_t>(object, "logIndex", ParseQuantity);
    if (!log_index) return Error{log_index.error()};
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
    if (logs.size() > logs_max) return Error{fmt::format("{} logs in one answer, over the limit of {}", logs.size(), logs_max)};
    std::vector<Log> out;
    out.reserve(logs.size());
    for (size_t i = 0; i < logs.size(); ++i) {
        auto log = ParseLog(logs[i]);
        if (!log) return Error{fmt::format("log {}: {}", i, log.error())};
        out.push_back(std::move(log.value()));
    }
    return out;
}

} // namespace bitacora::evm
