// Ethereum ABI decoding of event logs (Solidity ABI spec, "Events" and
// "Formal Specification of the Encoding"). Every malformed input is a decode
// error; the decoder never reads outside the given spans and never produces more
// values or bytes than the input holds, however the offsets are arranged.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"
#include "common/uint256.h"

#include <nlohmann/json_fwd.hpp>

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::evm {

struct AbiType {
    enum class Kind { Uint, Int, Address, Bool, FixedBytes, Bytes, String, Array, FixedArray, Tuple };

    // Nesting beyond this is refused; Solidity's own limit is far below anything useful past it.
    static constexpr unsigned kNestingMax = 16;
    // A static type wider than this many 32-byte words is refused (uint256[1e9] etc.).
    static constexpr size_t kStaticWordsMax = 1u << 16;

    Kind kind{Kind::Uint};
    unsigned size{0};                 // bits (Uint, Int), bytes (FixedBytes), length (FixedArray)
    std::vector<AbiType> components;  // element (Array, FixedArray) or members (Tuple)
    std::vector<std::string> names;   // member names of a Tuple, when known

    bool IsDynamic() const;
    // Bytes this type occupies in the head of an enclosing tuple.
    size_t HeadSize() const;
    // Canonical form used in signatures: "uint256", "(address,bytes)[]".
    std::string Canonical() const;

    // Parses a canonical or shorthand ("uint", "int", "byte") type name.
    static Result<AbiType> Parse(std::string_view text);
    // Parses one entry of a JSON ABI "inputs" array (handles "tuple" with "components").
    static Result<AbiType> FromJson(const nlohmann::json& input);
};

struct AbiValue {
    AbiType::Kind kind{AbiType::Kind::Uint};
    UInt256 number;                // Uint, Int (two's complement, sign-extended), Bool (0 or 1)
    Bytes bytes;                   // Address (20), FixedBytes, Bytes, String (raw UTF-8), or topic hash
    std::vector<AbiValue> items;   // Array, FixedArray, Tuple
    bool hashed_topic{false};      // indexed reference type: bytes is the 32-byte topic (its keccak)

    // Decimal strings for integers, 0x-hex for addresses and bytes, arrays for lists and tuples.
    nlohmann::json ToJson() const;
};

struct EventParam {
    std::string name;
    AbiType type;
    bool indexed{false};
};

struct EventAbi {
    std::string name;
    std::vector<EventParam> params;
    bool anonymous{false};

    std::string Signature() const; // "Transfer(address,address,uint256)"
    Hash256 Topic0() const;        // keccak256 of Signature()

    // "event Transfer(address indexed from, address indexed to, uint256 value)";
    // the leading "event" and a trailing "anonymous" are optional.
    static Result<EventAbi> Parse(std::string_view text);
    // One {"type":"event", ...} entry of a JSON ABI.
    static Result<EventAbi> FromJson(const nlohmann::json& entry);
};

// Every event of a JSON ABI array (functions, errors and constructors are skipped).
Result<std::vector<EventAbi>> EventsFromAbiJson(const nlohmann::json& abi);

// Decodes one log: one value per parameter, in declaration order.
Result<std::vector<AbiValue>> DecodeLog(const EventAbi& event, std::span<const Hash256> topics,
                                        std::span<const uint8_t> data);

// Decodes a tuple of the given types from ABI-encoded data (eth_call results, log data).
Result<std::vector<AbiValue>> DecodeParameters(std::span<const AbiType> types, std::span<const uint8_t> data);

} // namespace bitacora::evm
