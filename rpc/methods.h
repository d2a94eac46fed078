// The API's method table: what the backend, auditors and operators call. Names follow
// Ethereum's namespace_method style so that cast rpc, viem and go-ethereum's rpc client
// work unchanged. docs/api.md is checked against this table by a test.
#pragma once

#include "ledger/ledger.h"
#include "rpc/json_rpc.h"

#include <functional>

namespace bitacora::rpc {

struct MethodContext {
    ledger::Ledger* ledger{nullptr};
    // The followers' state for bitacora_status (sync heights, reorgs, drift); may be empty.
    std::function<nlohmann::json()> sources;
};

void RegisterMethods(Dispatcher& dispatcher, MethodContext context);

} // namespace bitacora::rpc
