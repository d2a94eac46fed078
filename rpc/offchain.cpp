#include "rpc/offchain.h"

#include "common/hex.h"
#include "common/uint256.h"

#include <fmt/format.h>

#include <map>
#include <vector>

namespace bitacora::rpc {
namespace {

enum class Field { Id, Address, Amount, Currency, Hash, Text };

struct FieldSpec {
    const char* name;
    Field type;
    bool required;
};

// offer.*: the P2P order book; dispute.note: a hash of a note kept off the ledger (no PII on it).
const std::map<std::string, std::vector<FieldSpec>, std::less<>>& Schemas()
{
    static const std::map<std::string, std::vector<FieldSpec>, std::less<>> schemas = {
        {"offer.posted", {{"offerId", Field::Id, true}, {"seller", Field::Address, true}, {"amount", Field::Amount, true},
                          {"fiatCurrency", Field::Currency, true}, {"price", Field::Amount, true}}},
        {"offer.matched", {{"offerId", Field::Id, true}, {"buyer", Field::Address, true}, {"orderId", Field::Amount, false}}},
        {"offer.cancelled", {{"offerId", Field::Id, true}, {"reason", Field::Text, false}}},
        {"dispute.note", {{"orderId", Field::Amount, true}, {"author", Field::Address, true}, {"noteHash", Field::Hash, true}}},
    };
    return schemas;
}

std::optional<std::string> CheckField(const FieldSpec& spec, const std::string& value)
{
    switch (spec.type) {
    case Field::Id:
        if (value.empty() || value.size() > 128) return "must be 1 to 128 characters";
        return std::nullopt;
    case Field::Address: {
        std::array<uint8_t, 20> address{};
        if (value.size() != 42 || !HexDecodeExact(value, address)) return "must be a 0x-prefixed 20-byte hex address";
        return std::nullopt;
    }
    case Field::Amount:
        if (!UInt256::FromDecimal(value)) return "must be a decimal integer string";
        return std::nullopt;
    case Field::Currency:
        if (value.size() != 3 || !std::all_of(value.begin(), value.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
            return "must be an ISO 4217 code such as EUR";
        }
        return std::nullopt;
    case Field::Hash: {
        std::array<uint8_t, 32> hash{};
        if (value.size() != 66 || !HexDecodeExact(value, hash)) return "must be a 0x-prefixed 32-byte hex hash";
        return std::nullopt;
    }
    case Field::Text:
        if (value.size() > 256) return "must be at most 256 characters";
        return std::nullopt;
    }
    return "unknown field type";
}

} // namespace

Result<std::string> CanonicalOffchainPayload(const std::string& kind, const nlohmann::json& payload)
{
    const auto schema = Schemas().find(kind);
    if (schema == Schemas().end()) {
        std::string known;
        for (const auto& [name, fields] : Schemas()) known += (known.empty() ? "" : ", ") + name;
        return Error{fmt::format("unknown kind '{}'; expected one of: {}", kind, known)};
    }
    if (!payload.is_object()) return Error{"payload must be a JSON object"};
    for (const auto& item : payload.items()) {
        const std::string& key = item.key();
        const auto& value = item.value();
        const auto it = std::find_if(schema->second.begin(), schema->second.end(),
                                     [&](const FieldSpec& f) { return key == f.name; });
        if (it == schema->second.end()) return Error{fmt::format("{} has no field '{}'", kind, key)};
        if (!value.is_string()) return Error{fmt::format("payload.{} must be a string", key)};
        if (auto problem = CheckField(*it, value.get<std::string>())) {
            return Error{fmt::format("payload.{} {}", key, *problem)};
        }
    }
    for (const auto& field : schema->second) {
        if (field.required && !payload.contains(field.name)) return Error{fmt::format("{} needs payload.{}", kind, field.name)};
    }
    // nlohmann's objects keep keys sorted and dump() writes no whitespace: canonical.
    return payload.dump();
}

} // namespace bitacora::rpc
