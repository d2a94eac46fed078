#include "indexer/evm/abi.h"

#include "indexer/evm/keccak.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>

namespace bitacora::evm {
namespace {

using Kind = AbiType::Kind;

std::string_view Trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

// Splits on commas that are not inside parentheses; nullopt when parentheses do not balance.
std::optional<std::vector<std::string_view>> SplitTopLevel(std::string_view s)
{
    std::vector<std::string_view> parts;
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '(') ++depth;
        if (s[i] == ')' && --depth < 0) return std::nullopt;
        if (s[i] == ',' && depth == 0) {
            parts.push_back(Trim(s.substr(start, i - start)));
            start = i + 1;
        }
    }
    if (depth != 0) return std::nullopt;
    parts.push_back(Trim(s.substr(start)));
    return parts;
}

// Strict decimal: digits only, no leading zero, at most 9 digits.
std::optional<unsigned> ParseSmallNumber(std::string_view s)
{
    if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
    return value;
}

bool IsIdentifier(std::string_view s)
{
    if (s.empty()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

Status CheckStaticSize(const AbiType& type)
{
    if (!type.IsDynamic() && type.HeadSize() / 32 > AbiType::kStaticWordsMax) {
        return Error{fmt::format("type {} is wider than {} words", type.Canonical(), AbiType::kStaticWordsMax)};
    }
    return {};
}

// element[length] or element[] (length empty); context names the whole type for errors.
Result<AbiType> ArrayOf(AbiType element, std::string_view length, std::string_view context)
{
    AbiType type;
    type.components.push_back(std::move(element));
    if (length.empty()) {
        type.kind = Kind::Array;
    } else {
        const auto n = ParseSmallNumber(length);
        if (!n || *n == 0 || *n > AbiType::kStaticWordsMax) {
            return Error{fmt::format("invalid array length in '{}'", context)};
        }
        type.kind = Kind::FixedArray;
        type.size = *n;
    }
    if (auto status = CheckStaticSize(type); !status) return status.failure();
    return type;
}

Result<AbiType> ParseElementary(std::string_view text)
{
    AbiType type;
    auto with_bits = [&](Kind kind, std::string_view digits) -> Result<AbiType> {
        type.kind = kind;
        if (digits.empty()) {
            type.size = 256;
            return type;
        }
        const auto bits = ParseSmallNumber(digits);
        if (!bits || *bits == 0 || *bits > 256 || *bits % 8 != 0) {
            return Error{fmt::format("invalid integer width in '{}'", text)};
        }
        type.size = *bits;
        return type;
    };
    if (text == "address") { type.kind = Kind::Address; return type; }
    if (text == "bool") { type.kind = Kind::Bool; return type; }
    if (text == "string") { type.kind = Kind::String; return type; }
    if (text == "bytes") { type.kind = Kind::Bytes; return type; }
    if (text == "byte") { type.kind = Kind::FixedBytes; type.size = 1; return type; }
    if (text.starts_with("uint")) return with_bits(Kind::Uint, text.substr(4));
    if (text.starts_with("int")) return with_bits(Kind::Int, text.substr(3));
    if (text.starts_with("bytes")) {
        const auto n = ParseSmallNumber(text.substr(5));
        if (!n || *n == 0 || *n > 32) return Error{fmt::format("invalid fixed bytes width in '{}'", text)};
        type.kind = Kind::FixedBytes;
        type.size = *n;
        return type;
    }
    return Error{fmt::format("unknown ABI type '{}'", text)};
}

Result<AbiType> ParseType(std::string_view text, unsigned depth)
{
    text = Trim(text);
    if (depth > AbiType::kNestingMax) return Error{"ABI type nested too deeply"};
    if (text.empty()) return Error{"empty ABI type"};

    if (text.back() == ']') {
        const size_t open = text.rfind('[');
        if (open == std::string_view::npos) return Error{fmt::format("unbalanced brackets in '{}'", text)};
        const std::string_view length = text.substr(open + 1, text.size() - open - 2);
        auto element = ParseType(text.substr(0, open), depth + 1);
        if (!element) return element;
        return ArrayOf(std::move(element.value()), length, text);
    }
    if (text.front() == '(') {
        if (text.back() != ')') return Error{fmt::format("unbalanced parentheses in '{}'", text)};
        const auto parts = SplitTopLevel(text.substr(1, text.size() - 2));
        if (!parts) return Error{fmt::format("unbalanced parentheses in '{}'", text)};
        if (parts->size() == 1 && (*parts)[0].empty()) return Error{"empty tuple type"};
        AbiType type;
        type.kind = Kind::Tuple;
        for (const auto part : *parts) {
            auto member = ParseType(part, depth + 1);
            if (!member) return member;
            type.components.push_back(std::move(member.value()));
        }
        if (auto status = CheckStaticSize(type); !status) return status.failure();
        return type;
    }
    return ParseElementary(text);
}

Result<AbiType> TypeFromJson(const nlohmann::json& input, unsigned depth)
{
    if (depth > AbiType::kNestingMax) return Error{"ABI type nested too deeply"};
    if (!input.is_object() || !input.contains("type") || !input["type"].is_string()) {
        return Error{"ABI input without a string \"type\""};
    }
    const std::string& text = input["type"].get_ref<const std::string&>();
    if (!std::string_view(text).starts_with("tuple")) return ParseType(text, depth);

    AbiType tuple;
    tuple.kind = Kind::Tuple;
    if (!input.contains("components") || !input["components"].is_array() || input["components"].empty()) {
        return Error{fmt::format("tuple input '{}' without components", text)};
    }
    for (const auto& component : input["components"]) {
        auto member = TypeFromJson(component, depth + 1);
        if (!member) return member;
        tuple.components.push_back(std::move(member.value()));
        const auto name = component.find("name");
        tuple.names.push_back(name != component.end() && name->is_string() ? name->get<std::string>() : "");
    }
    // Array suffixes apply left to right: "tuple[2][]" is a dynamic array of pairs.
    AbiType type = std::move(tuple);
    std::string_view suffix = std::string_view(text).substr(5);
    while (!suffix.empty()) {
        if (suffix.front() != '[') return Error{fmt::format("invalid tuple type '{}'", text)};
        const size_t close = suffix.find(']');
        if (close == std::string_view::npos) return Error{fmt::format("invalid tuple type '{}'", text)};
        auto array = ArrayOf(std::move(type), suffix.substr(1, close - 1), text);
        if (!array) return array;
        type = std::move(array.value());
        suffix.remove_prefix(close + 1);
    }
    if (auto status = CheckStaticSize(type); !status) return status.failure();
    return type;
}

// Reads values out of one buffer. The budgets make aliased offsets (many heads
// pointing at one tail) fail instead of multiplying work and memory.
class Decoder {
public:
    explicit Decoder(std::span<const uint8_t> data)
        : m_data(data), m_values_left(data.size() / 32 + 1), m_bytes_left(data.size())
    {
    }

    Result<AbiValue> Decode(const AbiType& type, size_t pos, unsigned depth)
    {
        if (depth > AbiType::kNestingMax) return Error{"value nested too deeply"};
        if (type.kind == Kind::Tuple) {
            AbiValue value;
            value.kind = Kind::Tuple;
            auto items = DecodeSequence([&](size_t i) -> const AbiType& { return type.components[i]; },
                                        type.components.size(), pos, depth);
            if (!items) return items.failure();
            value.items = std::move(items.value());
            return value;
        }
        if (type.kind == Kind::FixedArray) {
            AbiValue value;
            value.kind = Kind::FixedArray;
            auto items = DecodeSequence([&](size_t) -> const AbiType& { return type.components[0]; }, type.size, pos, depth);
            if (!items) return items.failure();
            value.items = std::move(items.value());
            return value;
        }
        if (m_values_left == 0) return Error{"encoding references more values than the data holds"};
        --m_values_left;

        const auto word = Word(pos);
        if (!word) return Error{fmt::format("data too short: {} needs a word at offset {}, data is {} bytes",
                                            type.Canonical(), pos, m_data.size())};
        if (IsStaticWord(type.kind)) return DecodeWord(type, *word);
        AbiValue value;
        value.kind = type.kind;
        switch (type.kind) {
        case Kind::Bytes:
        case Kind::String: {
            const auto length = Length(*word, pos + 32, 1);
            if (!length) return length.failure();
            if (*length > m_bytes_left) return Error{"encoding references more bytes than the data holds"};
            m_bytes_left -= *length;
            value.bytes.assign(m_data.begin() + static_cast<std::ptrdiff_t>(pos + 32),
                               m_data.begin() + static_cast<std::ptrdiff_t>(pos + 32 + *length));
            return value;
        }
        case Kind::Array: {
            // Each element takes at least one 32-byte head word.
            const auto length = Length(*word, pos + 32, 32);
            if (!length) return length.failure();
            auto items = DecodeSequence([&](size_t) -> const AbiType& { return type.components[0]; }, *length,
                                        pos + 32, depth);
            if (!items) return items.failure();
            value.items = std::move(items.value());
            return value;
        }
        case Kind::Uint:
        case Kind::Int:
        case Kind::Address:
        case Kind::Bool:
        case Kind::FixedBytes:
        case Kind::FixedArray:
        case Kind::Tuple: break; // handled above
        }
        return Error{"unsupported ABI type"};
    }

    static bool IsStaticWord(Kind kind)
    {
        return kind == Kind::Uint || kind == Kind::Int || kind == Kind::Address || kind == Kind::Bool ||
               kind == Kind::FixedBytes;
    }

    // A value that is one word: each must be the only encoding of its value (no stray
    // high bits, padding or sign extension).
    static Result<AbiValue> DecodeWord(const AbiType& type, std::span<const uint8_t, 32> word)
    {
        AbiValue value;
        value.kind = type.kind;
        switch (type.kind) {
        case Kind::Uint:
            value.number = UInt256::FromBigEndian(word);
            if (value.number.BitLength() > type.size) return Error{fmt::format("value exceeds {} bits", type.size)};
            return value;
        case Kind::Int: {
            value.number = UInt256::FromBigEndian(word);
            // The 256-bit word must be the sign extension of a type.size-bit integer.
            const UInt256 magnitude = value.number.IsNegative() ? value.number.Negated() : value.number;
            const UInt256 limit = Pow2(type.size - 1);
            const bool in_range = value.number.IsNegative() ? magnitude <= limit : magnitude < limit;
            if (!in_range) return Error{fmt::format("value is not a sign-extended int{}", type.size)};
            return value;
        }
        case Kind::Address:
            for (size_t i = 0; i < 12; ++i) {
                if (word[i] != 0) return Error{"address has non-zero upper bytes"};
            }
            value.bytes.assign(word.begin() + 12, word.end());
            return value;
        case Kind::Bool:
            value.number = UInt256::FromBigEndian(word);
            if (value.number > UInt256(1)) return Error{"bool is neither 0 nor 1"};
            return value;
        case Kind::FixedBytes:
            for (size_t i = type.size; i < 32; ++i) {
                if (word[i] != 0) return Error{fmt::format("bytes{} has non-zero padding", type.size)};
            }
            value.bytes.assign(word.begin(), word.begin() + type.size);
            return value;
        case Kind::Bytes:
        case Kind::String:
        case Kind::Array:
        case Kind::FixedArray:
        case Kind::Tuple: break;
        }
        return Error{"not a one-word ABI type"};
    }

    // Decodes count values laid out as a tuple starting at pos (heads, then tails).
    template <typename TypeAt>
    Result<std::vector<AbiValue>> DecodeSequence(TypeAt type_at, size_t count, size_t pos, unsigned depth)
    {
        std::vector<AbiValue> items;
        size_t head = pos;
        for (size_t i = 0; i < count; ++i) {
            const AbiType& member = type_at(i);
            size_t at = head;
            if (member.IsDynamic()) {
                const auto word = Word(head);
                if (!word) return Error{fmt::format("data too short: offset word at {} is out of range", head)};
                const UInt256 offset = UInt256::FromBigEndian(*word);
                if (pos > m_data.size() || !offset.FitsUint64() || offset.Low64() > m_data.size() - pos) {
                    return Error{fmt::format("offset {} at {} points outside the data", offset.ToDecimal(), head)};
                }
                at = pos + offset.Low64();
            }
            auto item = Decode(member, at, depth + 1);
            if (!item) return item.failure();
            items.push_back(std::move(item.value()));
            head += member.HeadSize();
        }
        return items;
    }

private:
    static UInt256 Pow2(unsigned bits)
    {
        std::array<uint8_t, 32> word{};
        word[31 - bits / 8] = static_cast<uint8_t>(1u << (bits % 8));
        return UInt256::FromBigEndian(word);
    }

    std::optional<std::span<const uint8_t, 32>> Word(size_t pos) const
    {
        if (pos > m_data.size() || m_data.size() - pos < 32) return std::nullopt;
        return m_data.subspan(pos).first<32>();
    }

    // A length word whose items of unit_bytes each must fit in the data after start.
    Result<size_t> Length(std::span<const uint8_t, 32> word, size_t start, size_t unit_bytes) const
    {
        const UInt256 length = UInt256::FromBigEndian(word);
        const size_t available = start <= m_data.size() ? m_data.size() - start : 0;
        if (!length.FitsUint64() || length.Low64() > available / unit_bytes) {
            return Error{fmt::format("length {} exceeds the {} bytes of data after offset {}", length.ToDecimal(),
                                     available, start)};
        }
        return static_cast<size_t>(length.Low64());
    }

    std::span<const uint8_t> m_data;
    size_t m_values_left;
    size_t m_bytes_left;
};

bool IsTopicDecodable(const AbiType& type)
{
    switch (type.kind) {
    case Kind::Uint: case Kind::Int: case Kind::Address: case Kind::Bool: case Kind::FixedBytes: return true;
    default: return false;
    }
}

nlohmann::json BytesToJsonString(const Bytes& bytes)
{
    // Invalid UTF-8 from the chain is kept visible rather than rejected.
    std::string text(bytes.begin(), bytes.end());
    const std::string dumped = nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return nlohmann::json::parse(dumped);
}

} // namespace

bool AbiType::IsDynamic() const
{
    switch (kind) {
    case Kind::Bytes: case Kind::String: case Kind::Array: return true;
    case Kind::FixedArray: return components[0].IsDynamic();
    case Kind::Tuple:
        for (const auto& c : components) {
            if (c.IsDynamic()) return true;
        }
        return false;
    default: return false;
    }
}

size_t AbiType::HeadSize() const
{
    if (IsDynamic()) return 32;
    if (kind == Kind::FixedArray) return size * components[0].HeadSize();
    if (kind == Kind::Tuple) {
        size_t total = 0;
        for (const auto& c : components) total += c.HeadSize();
        return total;
    }
    return 32;
}

std::string AbiType::Canonical() const
{
    switch (kind) {
    case Kind::Uint: return fmt::format("uint{}", size);
    case Kind::Int: return fmt::format("int{}", size);
    case Kind::Address: return "address";
    case Kind::Bool: return "bool";
    case Kind::FixedBytes: return fmt::format("bytes{}", size);
    case Kind::Bytes: return "bytes";
    case Kind::String: return "string";
    case Kind::Array: return components[0].Canonical() + "[]";
    case Kind::FixedArray: return fmt::format("{}[{}]", components[0].Canonical(), size);
    case Kind::Tuple: {
        std::string out = "(";
        for (size_t i = 0; i < components.size(); ++i) {
            if (i > 0) out += ",";
            out += components[i].Canonical();
        }
        return out + ")";
    }
    }
    return "?";
}

Result<AbiType> AbiType::Parse(std::string_view text)
{
    return ParseType(text, 0);
}

Result<AbiType> AbiType::FromJson(const nlohmann::json& input)
{
    return TypeFromJson(input, 0);
}

nlohmann::json AbiValue::ToJson() const
{
    if (hashed_topic) return HexEncode0x(bytes);
    switch (kind) {
    case Kind::Uint: return number.ToDecimal();
    case Kind::Int: return number.ToSignedDecimal();
    case Kind::Bool: return !number.IsZero();
    case Kind::Address: case Kind::FixedBytes: case Kind::Bytes: return HexEncode0x(bytes);
    case Kind::String: return BytesToJsonString(bytes);
    case Kind::Array: case Kind::FixedArray: case Kind::Tuple: {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& item : items) out.push_back(item.ToJson());
        return out;
    }
    }
    return nullptr;
}

std::string EventAbi::Signature() const
{
    std::string out = name + "(";
    for (size_t i = 0; i < params.size(); ++i) {
        if (i > 0) out += ",";
        out += params[i].type.Canonical();
    }
    return out + ")";
}

Hash256 EventAbi::Topic0() const
{
    return Keccak(Signature());
}

namespace {
Status CheckIndexedCount(const EventAbi& event)
{
    size_t indexed = 0;
    for (const auto& p : event.params) indexed += p.indexed ? 1 : 0;
    const size_t max = event.anonymous ? 4 : 3;
    if (indexed > max) return Error{fmt::format("event {} has {} indexed parameters, at most {} allowed", event.name, indexed, max)};
    return {};
}
} // namespace

Result<EventAbi> EventAbi::Parse(std::string_view text)
{
    text = Trim(text);
    if (text.starts_with("event ")) text = Trim(text.substr(6));
    EventAbi event;
    if (text.ends_with("anonymous")) {
        const std::string_view before = Trim(text.substr(0, text.size() - 9));
        if (before.ends_with(")")) {
            event.anonymous = true;
            text = before;
        }
    }
    const size_t open = text.find('(');
    if (open == std::string_view::npos || text.back() != ')') return Error{fmt::format("not an event signature: '{}'", text)};
    event.name = std::string(Trim(text.substr(0, open)));
    if (!IsIdentifier(event.name)) return Error{fmt::format("invalid event name '{}'", event.name)};
    const auto parts = SplitTopLevel(text.substr(open + 1, text.size() - open - 2));
    if (!parts) return Error{fmt::format("unbalanced parentheses in '{}'", text)};
    if (!(parts->size() == 1 && (*parts)[0].empty())) {
        for (const auto part : *parts) {
            // "<type> [indexed] [name]"; a tuple type may itself contain spaces only inside parentheses.
            int depth = 0;
            size_t type_end = part.size();
            for (size_t i = 0; i < part.size(); ++i) {
                if (part[i] == '(') ++depth;
                if (part[i] == ')') --depth;
                if (part[i] == ' ' && depth == 0) { type_end = i; break; }
            }
            auto type = AbiType::Parse(part.substr(0, type_end));
            if (!type) return type.failure();
            EventParam param;
            param.type = std::move(type.value());
            std::string_view rest = type_end < part.size() ? Trim(part.substr(type_end)) : std::string_view{};
            if (rest == "indexed" || rest.starts_with("indexed ")) {
                param.indexed = true;
                rest = Trim(rest.substr(7));
            }
            if (!rest.empty() && !IsIdentifier(rest)) return Error{fmt::format("invalid parameter name '{}'", rest)};
            param.name = std::string(rest);
            event.params.push_back(std::move(param));
        }
    }
    if (auto status = CheckIndexedCount(event); !status) return status.failure();
    return event;
}

Result<EventAbi> EventAbi::FromJson(const nlohmann::json& entry)
{
    if (!entry.is_object() || entry.value("type", "") != "event") return Error{"ABI entry is not an event"};
    EventAbi event;
    const auto name = entry.find("name");
    if (name == entry.end() || !name->is_string() || !IsIdentifier(name->get_ref<const std::string&>())) {
        return Error{"event without a valid name"};
    }
    event.name = name->get<std::string>();
    const auto anonymous = entry.find("anonymous");
    event.anonymous = anonymous != entry.end() && anonymous->is_boolean() && anonymous->get<bool>();
    const auto inputs = entry.find("inputs");
    if (inputs == entry.end() || !inputs->is_array()) return Error{fmt::format("event {} without inputs", event.name)};
    for (const auto& input : *inputs) {
        auto type = AbiType::FromJson(input);
        if (!type) return Error{fmt::format("event {}: {}", event.name, type.error())};
        EventParam param;
        param.type = std::move(type.value());
        const auto indexed = input.find("indexed");
        param.indexed = indexed != input.end() && indexed->is_boolean() && indexed->get<bool>();
        const auto param_name = input.find("name");
        if (param_name != input.end() && param_name->is_string()) param.name = param_name->get<std::string>();
        event.params.push_back(std::move(param));
    }
    if (auto status = CheckIndexedCount(event); !status) return status.failure();
    return event;
}

Result<std::vector<EventAbi>> EventsFromAbiJson(const nlohmann::json& abi)
{
    if (!abi.is_array()) return Error{"ABI is not a JSON array"};
    std::vector<EventAbi> events;
    for (const auto& entry : abi) {
        if (!entry.is_object() || entry.value("type", "") != "event") continue;
        auto event = EventAbi::FromJson(entry);
        if (!event) return event.failure();
        events.push_back(std::move(event.value()));
    }
    return events;
}

Result<std::vector<AbiValue>> DecodeParameters(std::span<const AbiType> types, std::span<const uint8_t> data)
{
    Decoder decoder(data);
    return decoder.DecodeSequence([&](size_t i) -> const AbiType& { return types[i]; }, types.size(), 0, 0);
}

Result<std::vector<AbiValue>> DecodeLog(const EventAbi& event, std::span<const Hash256> topics,
                                        std::span<const uint8_t> data)
{
    size_t indexed = 0;
    for (const auto& p : event.params) indexed += p.indexed ? 1 : 0;
    const size_t expected_topics = indexed + (event.anonymous ? 0 : 1);
    if (topics.size() != expected_topics) {
        return Error{fmt::format("{}: expected {} topics, log has {}", event.name, expected_topics, topics.size())};
    }
    size_t next_topic = 0;
    if (!event.anonymous) {
        if (topics[0] != event.Topic0()) return Error{fmt::format("{}: topic0 does not match the event signature", event.name)};
        next_topic = 1;
    }

    std::vector<AbiType> data_types;
    for (const auto& p : event.params) {
        if (!p.indexed) data_types.push_back(p.type);
    }
    auto data_values = DecodeParameters(data_types, data);
    if (!data_values) return Error{fmt::format("{}: data: {}", event.name, data_values.error())};

    std::vector<AbiValue> values;
    size_t next_data = 0;
    for (size_t i = 0; i < event.params.size(); ++i) {
        const EventParam& p = event.params[i];
        if (!p.indexed) {
            values.push_back(std::move(data_values.value()[next_data++]));
            continue;
        }
        const Hash256& topic = topics[next_topic++];
        if (!IsTopicDecodable(p.type)) {
            AbiValue hashed;
            hashed.kind = p.type.kind;
            hashed.hashed_topic = true;
            hashed.bytes.assign(topic.begin(), topic.end());
            values.push_back(std::move(hashed));
            continue;
        }
        Decoder topic_decoder(topic);
        auto value = topic_decoder.Decode(p.type, 0, 0);
        if (!value) return Error{fmt::format("{}: indexed parameter {} '{}': {}", event.name, i, p.name, value.error())};
        values.push_back(std::move(value.value()));
    }
    return values;
}

} // namespace bitacora::evm
