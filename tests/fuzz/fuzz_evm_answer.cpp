// libFuzzer target for what an EVM node sends back: eth_getLogs answers and header
// batches (simdjson), and the decoding of every parsed log into a ledger event.
// Properties: no crash, no exception, no hang; a log that decodes re-encodes; whatever
// the nesting bound lets through (what the nlohmann-based clients for EVM nodes and
// bitcoind parse) can be copied, compared and dumped without deep recursion.
#include "common/json_bounds.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/log_decoder.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

using namespace bitacora;
using namespace bitacora::evm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static AnswerParser parser;
    static const LogDecoder decoder = [] {
        Address escrow{};
        escrow.fill(0x11);
        Address vault{};
        vault.fill(0x22);
        return LogDecoder(1, escrow, vault);
    }();
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    if (auto answer = parser.ParseGetLogs(body, 1, 10'000)) {
        for (const auto& log : answer->logs) {
            auto decoded = decoder.Decode(log);
            if (!decoded) continue;
            const Bytes leaf = ledger::EncodeEvent(decoded->event);
            if (!ledger::DecodeEvent(leaf)) {
                std::fprintf(stderr, "a decoded log does not round-trip through the leaf encoding\n");
                std::abort();
            }
        }
    }
    (void)parser.ParseHeaderBatch(body, 1, 3);
    const BoundedJson bounded = ParseJsonBounded(body);
    if (bounded.ok()) {
        const nlohmann::json copy = bounded.value;
        if (copy != bounded.value || copy.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).empty()) {
            std::abort();
        }
    }
    return 0;
}
