// GET /health: what the daemon says of itself, decided from the ledger's health and each
// followed source's state (a pure function, so that the rule is tested apart from HTTP).
//   ready        200  the ledger is ok and every source answers
//   degraded     200  a source is failing (its node refuses, errs or hangs) for less than
//                     the stall bound, or its node answers but its head has not moved
//                     for -evmheadstall / -btcheadstall: the API still serves what the
//                     ledger holds
//   unavailable  503  the ledger is degraded or read-only, a follower stopped (failed),
//                     or a source's node has not answered for the whole stall bound
// The body names each source's state and why it is failing.
#pragma once

#include "common/upstream_monitor.h"
#include "ledger/ledger.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace bitacora::rpc {

struct SourceHealth {
    std::string name;       // "evm", "btc"
    std::string state;      // the follower's own state name (following, synced, node_down, ...)
    bool failed{false};     // the follower stopped and needs an operator
    std::string error;      // the follower's last error
    std::optional<UpstreamVerdict> upstream; // none: the source is not watched
    // Seconds since the node's head (EVM latest, Bitcoin best block) last changed (none:
    // not seen yet), and how long it may stand still before the source is degraded (0: never).
    std::optional<uint64_t> head_age_s;
    uint64_t head_stall_s{0};
};

struct HealthAnswer {
    int http_status{200};
    nlohmann::json body;
};

HealthAnswer DecideHealth(const ledger::LedgerHealth& ledger, const std::vector<SourceHealth>& sources);

} // namespace bitacora::rpc
