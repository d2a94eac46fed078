// libFuzzer target for the ABI type parser and the event-log decoder.
// Input: byte 0 picks a mode. Modes 0..3 decode a log of a fixed event (byte 1 is
// the topic count, then 32-byte topics, then data); mode 4 parses a type string
// (up to the first NUL) and decodes the remaining bytes as a tuple of it.
#include "common/hex.h"
#include "indexer/evm/abi.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace bitacora;
using namespace bitacora::evm;

namespace {

const std::vector<EventAbi>& Events()
{
    static const std::vector<EventAbi> events = [] {
        std::vector<EventAbi> out;
        for (const char* text : {
                 "Transfer(address indexed from, address indexed to, uint256 value)",
                 "OrderCreated(uint256 indexed orderId, address indexed seller, address indexed buyer, uint256 amount, "
                 "uint64 expiry, string memo)",
                 "Mixed(int8 a, bytes3 b, bool c, uint32[] d, string[] e, (uint256,bytes)[2] f, bytes g)",
                 "Anon(bytes indexed x, uint256[][] y) anonymous",
             }) {
            auto event = EventAbi::Parse(text);
            if (!event) std::abort();
            out.push_back(std::move(event.value()));
        }
        return out;
    }();
    return events;
}

// Decoded output can never be larger than a fixed multiple of the input: each
// 32-byte word becomes at most 78 decimal digits or 64 hex digits plus punctuation.
void CheckOutputBounded(const std::vector<AbiValue>& values, size_t input_size)
{
    nlohmann::json out = nlohmann::json::array();
    for (const auto& value : values) out.push_back(value.ToJson());
    const size_t dumped = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
    if (dumped > 8 * input_size + 1024) {
        std::fprintf(stderr, "decoded %zu bytes of JSON from %zu bytes of input\n", dumped, input_size);
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t mode = data[0] % 5;
    std::span<const uint8_t> rest(data + 1, size - 1);
    if (mode == 4) {
        const auto* nul = static_cast<const uint8_t*>(std::memchr(rest.data(), 0, rest.size()));
        const size_t type_len = nul == nullptr ? rest.size() : static_cast<size_t>(nul - rest.data());
        const std::string text(reinterpret_cast<const char*>(rest.data()), type_len);
        auto type = AbiType::Parse(text);
        if (!type) return 0;
        // The canonical form must parse back to itself.
        auto again = AbiType::Parse(type->Canonical());
        if (!again || again->Canonical() != type->Canonical()) std::abort();
        const auto payload = rest.subspan(std::min(rest.size(), type_len + 1));
        const std::vector<AbiType> types{type.value()};
        if (auto values = DecodeParameters(types, payload)) CheckOutputBounded(*values, payload.size());
        return 0;
    }
    if (rest.empty()) return 0;
    const EventAbi& event = Events()[mode];
    const size_t topic_count = std::min<size_t>(rest[0] % 5, (rest.size() - 1) / 32);
    std::vector<Hash256> topics(topic_count);
    for (size_t i = 0; i < topic_count; ++i) std::memcpy(topics[i].data(), rest.data() + 1 + 32 * i, 32);
    // Give the real topic0 a chance: a fuzzer cannot guess a keccak hash.
    if (topic_count > 0 && topics[0][0] == 0xee) topics[0] = event.Topic0();
    const auto payload = rest.subspan(1 + 32 * topic_count);
    if (auto values = DecodeLog(event, topics, payload)) CheckOutputBounded(*values, size);
    return 0;
}
