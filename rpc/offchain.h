// Off-chain events the platform's backend submits (ledger_submitEvent): the kinds the
// ledger accepts and the schema of each payload. The payload is signed as its canonical
// JSON: keys sorted, no whitespace, string values only (so no number formatting can
// differ between the backend and us). See docs/api.md.
#pragma once

#include "common/result.h"
#include "ledger/event.h"

#include <nlohmann/json.hpp>

#include <string>

namespace bitacora::rpc {

// Checks kind and payload; returns the canonical payload bytes to sign and store.
Result<std::string> CanonicalOffchainPayload(const std::string& kind, const nlohmann::json& payload);

} // namespace bitacora::rpc
