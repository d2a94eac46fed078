// The API's method table: what the backend, auditors and operators call. Names follow
// Ethereum's namespace_method style so that cast rpc, viem and go-ethereum's rpc client
// work unchanged. docs/api.md is checked against this table by a test.
#pragma once

#include "ledger/ledger.h"
#include "rpc/json_rpc.h"

#include <array>
#include <functional>
#include <vector>

namespace bitacora::rpc {

struct MethodContext {
    ledger::Ledger* ledger{nullptr};
    // The followers' state for bitacora_status (sync heights, reorgs, drift); may be empty.
    std::function<nlohmann::json()> sources;
    // x-only keys allowed to sign off-chain events (-backendkey); none: submission is off.
    std::vector<std::array<uint8_t, 32>> backend_keys;
    // admin_anchorNow: asks the anchorer for an anchor and waits for the outcome; empty
    // when there is no Bitcoin side (-btcrpcconnect unset).
    std::function<nlohmann::json()> anchor_now;
    // admin_backup(dir, includeKey): a consistent copy of the ledger into dir (absolute,
    // on the daemon's machine); empty where backups are not served.
    std::function<nlohmann::json(const std::string& dir, bool include_key)> backup;
};

void RegisterMethods(Dispatcher& dispatcher, MethodContext context);

} // namespace bitacora::rpc
