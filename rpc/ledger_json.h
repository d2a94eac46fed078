// The JSON forms of ledger records, shared by the API and bitacora-inspect. Amounts and
// ids are decimal strings, never floats; hashes, addresses and bytes 0x-hex.
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
// Bitcoin hashes (txids, block hashes) in bitcoind's display order (reversed), 0x-prefixed
// like every hash of this API.
std::string BitcoinHashHex(const Hash256& hash);
// An anchor's state and, once in a block, the proof material (tx, header, branch).
nlohmann::json AnchorJson(const ledger::AnchorRecord& anchor);
// The "anchor" member of a proof bundle (docs/auditor-guide.md).
nlohmann::json AnchorProofJson(const ledger::AnchorRecord& anchor);
// The ledger's health (state, reason) and a consistency check's findings.
nlohmann::json HealthJson(const ledger::LedgerHealth& health);
nlohmann::json ConsistencyReportJson(const ledger::ConsistencyReport& report);

} // namespace bitacora::rpc
