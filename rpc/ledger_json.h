// The JSON forms of ledger records, shared by the API and bitacora-inspect. Amounts and
// ids are decimal strings, never floats; hashes and addresses 0x-hex.
#pragma once

#include "ledger/event.h"
#include "ledger/ledger.h"
#include "ledger/projections.h"

#include <nlohmann/json.hpp>

namespace bitacora::rpc {

nlohmann::json OrderJson(const ledger::OrderRecord& order);
nlohmann::json PositionJson(const ledger::VaultPosition& position);
nlohmann::json TotalsJson(const ledger::Totals& totals);
nlohmann::json EventJson(const ledger::Event& event); // kind, origin (on-chain), fields
nlohmann::json CheckpointJson(const ledger::Checkpoint& checkpoint);

} // namespace bitacora::rpc
