// Turns logs of the platform's contracts into ledger events: every event of
// contracts/src that the ledger records is decoded; anything else a watched contract
// emits (an unknown event, or a known one that does not decode) is kept verbatim as a
// RawEvmLog, so that nothing the chain said is dropped.
#pragma once

#include "indexer/evm/chain.h"
#include "indexer/evm/platform_events.h"
#include "ledger/event.h"

#include <cstdint>
#include <map>
#include <optional>

namespace bitacora::evm {

struct DecodedLog {
    ledger::Event event;
    bool raw{false}; // kept verbatim: no known event matched
};

class LogDecoder {
public:
    LogDecoder(uint64_t chain_id, const Address& escrow, const Address& vault);

    // Logs of other addresses are an error: the node answered a question we did not ask.
    Result<DecodedLog> Decode(const Log& log) const;

private:
    uint64_t m_chain_id;
    Address m_escrow;
    Address m_vault;
    std::map<std::pair<PlatformContract, Hash256>, const PlatformEvent*> m_by_topic;
};

} // namespace bitacora::evm
