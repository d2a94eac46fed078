#include "rpc/ledger_json.h"

#include <algorithm>

#include "common/hex.h"

namespace bitacora::rpc {
namespace {

using nlohmann::json;

template <class... Ts>
struct Overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string Addr(const ledger::Address& a) { return HexEncode0x(a); }
std::string Dec(const UInt256& v) { return v.ToDecimal(); }

} // namespace

json OrderJson(const ledger::OrderRecord& o)
{
    // A pending event has no index: null, and its pendingId says which log it is.
    const auto where = [](uint64_t index, const std::optional<ledger::PendingId>& pending) {
        if (!pending) return json{{"index", index}};
        return json{{"index", nullptr}, {"pendingId", ledger::PendingIdText(*pending)}};
    };
    json history = json::array();
    for (const auto& entry : o.history) {
        json item = where(entry.index, entry.pending);
        item["kind"] = ledger::EventKindName(entry.kind);
        history.push_back(std::move(item));
    }
    json anomalies = json::array();
    for (const auto& anomaly : o.anomalies) {
        json item = where(anomaly.index, anomaly.pending);
        item["reason"] = anomaly.reason;
        anomalies.push_back(std::move(item));
    }
    return {{"orderId", Dec(o.order_id)},
            {"state", ledger::OrderStateName(o.state)},
            {"stateCode", static_cast<int>(o.state)},
            {"seller", Addr(o.seller)},
            {"buyer", Addr(o.buyer)},
            {"amount", Dec(o.amount)},
            {"expiry", o.expiry},
            {"paymentProof", HexEncode0x(o.payment_proof)},
            {"disputedBy", Addr(o.disputed_by)},
            {"history", history},
            {"historyDropped", o.history_dropped},
            {"anomalies", anomalies},
            {"anomaliesDropped", o.anomalies_dropped}};
}

json PositionJson(const ledger::VaultPosition& p)
{
    return {{"shares", Dec(p.shares)},
            {"assetsIn", Dec(p.assets_in)},
            {"assetsOut", Dec(p.assets_out)},
            {"costBasis", Dec(p.cost_basis)},
            {"realizedYield", p.realized_yield.ToSignedDecimal()}};
}

json TotalsJson(const ledger::Totals& t)
{
    return {{"escrowLocked", Dec(t.escrow_locked)},   {"vaultAssetsIn", Dec(t.vault_assets_in)},
            {"vaultAssetsOut", Dec(t.vault_assets_out)}, {"vaultShares", Dec(t.vault_shares)},
            {"orders", t.orders},                        {"ordersOpen", t.orders_open},
            {"anomalies", t.anomalies},                  {"offchainEvents", t.offchain_events},
            {"anchorEvents", t.anchor_events},           {"escrowPaused", t.escrow_paused}};
}

namespace {

// An event's own fields, by its kind.
json FieldsJson(const ledger::Event& event)
{
    return std::visit(
        Overloaded{
            [](const ledger::OrderCreated& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"seller", Addr(e.seller)}, {"buyer", Addr(e.buyer)},
                        {"amount", Dec(e.amount)}, {"expiry", e.expiry}};
            },
            [](const ledger::PaymentConfirmed& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"buyer", Addr(e.buyer)}, {"paymentProof", HexEncode0x(e.payment_proof)}};
            },
            [](const ledger::OrderReleased& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"seller", Addr(e.seller)}, {"buyer", Addr(e.buyer)}, {"amount", Dec(e.amount)}};
            },
            [](const ledger::OrderCancelled& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"seller", Addr(e.seller)}, {"amount", Dec(e.amount)}};
            },
            [](const ledger::OrderExpired& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"seller", Addr(e.seller)}, {"caller", Addr(e.caller)}, {"amount", Dec(e.amount)}};
            },
            [](const ledger::OrderDisputed& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"disputedBy", Addr(e.disputed_by)}, {"byBuyer", e.by_buyer}};
            },
            [](const ledger::DisputeResolved& e) -> json {
                return {{"orderId", Dec(e.order_id)}, {"arbiter", Addr(e.arbiter)}, {"favorBuyer", e.favor_buyer},
                        {"recipient", Addr(e.recipient)}, {"amount", Dec(e.amount)}};
            },
            [](const ledger::ReputationChanged& e) -> json {
                return {{"seller", Addr(e.seller)}, {"previous", e.previous}, {"current", e.current}};
            },
            [](const ledger::EscrowPaused& e) -> json { return {{"account", Addr(e.account)}, {"paused", e.paused}}; },
            [](const ledger::RoleChanged& e) -> json {
                return {{"role", HexEncode0x(e.role)}, {"account", Addr(e.account)}, {"sender", Addr(e.sender)}, {"granted", e.granted}};
            },
            [](const ledger::VaultDeposit& e) -> json {
                return {{"sender", Addr(e.sender)}, {"owner", Addr(e.owner)}, {"assets", Dec(e.assets)}, {"shares", Dec(e.shares)}};
            },
            [](const ledger::VaultWithdraw& e) -> json {
                return {{"sender", Addr(e.sender)}, {"receiver", Addr(e.receiver)}, {"owner", Addr(e.owner)},
                        {"assets", Dec(e.assets)}, {"shares", Dec(e.shares)}};
            },
            [](const ledger::VaultTransfer& e) -> json { return {{"from", Addr(e.from)}, {"to", Addr(e.to)}, {"value", Dec(e.value)}}; },
            [](const ledger::OffchainEvent& e) -> json {
                return {{"offchainKind", e.kind}, {"idempotencyKey", e.idempotency_key},
                        {"payload", std::string(e.payload.begin(), e.payload.end())}, {"submitter", HexEncode0x(e.submitter)},
                        {"signature", HexEncode0x(e.signature)}};
            },
            [](const ledger::AnchorEvent& e) -> json {
                static constexpr const char* kStates[] = {"", "broadcast", "confirmed", "final", "dropped", "abandoned"};
                return {{"state", e.state}, {"stateName", e.state < 6 ? kStates[e.state] : "unknown"},
                        {"anchoredSize", e.anchored_size}, {"anchoredRoot", HexEncode0x(e.anchored_root)},
                        {"txid", BitcoinHashHex(e.txid)}, {"blockHeight", e.block_height},
                        {"blockHash", BitcoinHashHex(e.block_hash)}};
            },
            [](const ledger::RawEvmLog& e) -> json {
                json topics = json::array();
                for (const auto& topic : e.topics) topics.push_back(HexEncode0x(topic));
                return {{"topics", topics}, {"data", HexEncode0x(e.data)}};
            },
        },
        event.body);
}

} // namespace

json EventJson(const ledger::Event& event)
{
    json out = {{"kind", ledger::EventKindName(event.kind())}};
    if (event.origin) {
        const auto& o = *event.origin;
        out["origin"] = {{"chainId", o.chain_id},           {"blockNumber", o.block_number},
                         {"blockHash", HexEncode0x(o.block_hash)}, {"transactionHash", HexEncode0x(o.tx_hash)},
                         {"logIndex", o.log_index},          {"contract", Addr(o.contract)}};
    }
    out["fields"] = FieldsJson(event);
    return out;
}

json CheckpointJson(const ledger::Checkpoint& c)
{
    return {{"treeSize", c.tree_size},
            {"root", HexEncode0x(c.root)},
            {"timestamp", c.timestamp},
            {"publicKey", HexEncode0x(c.public_key)},
            {"signature", HexEncode0x(c.signature)}};
}

std::string BitcoinHashHex(const Hash256& hash)
{
    Hash256 reversed;
    std::reverse_copy(hash.begin(), hash.end(), reversed.begin());
    return HexEncode0x(reversed);
}

json AnchorProofJson(const ledger::AnchorRecord& a)
{
    if (!a.proof) return nullptr;
    const auto& p = *a.proof;
    json branch = json::array();
    for (const auto& node : p.branch) branch.push_back(HexEncode0x(node));
    return {{"id", a.id},
            {"status", a.state == ledger::AnchorState::Final ? "final" : "confirmed"},
            {"treeSize", a.tree_size},
            {"root", HexEncode0x(a.root)},
            {"payload", HexEncode0x(ledger::AnchorPayload(a.tree_size, a.root))},
            {"tx", HexEncode0x(p.tx)},
            {"txid", BitcoinHashHex(p.txid)},
            {"outputIndex", p.output_index},
            {"payloadOffset", p.payload_offset},
            {"txIndex", p.tx_index},
            {"branch", branch},
            {"header", HexEncode0x(p.header)},
            {"blockHash", BitcoinHashHex(p.block_hash)},
            {"blockHeight", p.block_height}};
}

json AnchorJson(const ledger::AnchorRecord& a)
{
    json txids = json::array();
    for (const auto& txid : a.txids) txids.push_back(BitcoinHashHex(txid));
    json out = {{"id", a.id},
                {"state", ledger::AnchorStateName(a.state)},
                {"treeSize", a.tree_size},
                {"root", HexEncode0x(a.root)},
                {"plannedTime", a.planned_time},
                {"updatedTime", a.updated_time},
                {"txids", txids},
                {"feeBumps", a.fee_bumps}};
    if (!a.txids.empty()) out["txid"] = BitcoinHashHex(a.proof ? a.proof->txid : a.txids.back());
    if (a.proof) {
        out["blockHeight"] = a.proof->block_height;
        out["blockHash"] = BitcoinHashHex(a.proof->block_hash);
    }
    if (!a.note.empty()) out["note"] = a.note;
    return out;
}

json HealthJson(const ledger::LedgerHealth& health)
{
    return {{"state", ledger::LedgerHealthName(health.state)}, {"reason", health.reason}};
}

json ConsistencyReportJson(const ledger::ConsistencyReport& r)
{
    return {{"consistent", r.ok()},
            {"treeSize", r.tree_size},
            {"root", HexEncode0x(r.root)},
            {"recomputedRoot", HexEncode0x(r.recomputed_root)},
            {"nodesChecked", r.nodes_checked},
            {"stateHash", HexEncode0x(r.state_hash)},
            {"derivedStateHash", HexEncode0x(r.derived_state_hash)},
            {"problems", r.problems},
            {"problemsTotal", r.problems_total}};
}

} // namespace bitacora::rpc
