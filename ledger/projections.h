// Projections: the ledger's current state as pure functions of the event log.
// Orders (state machine, history, anomalies), seller reputation, vault positions,
// totals, and the off-chain idempotency index all live in the `proj` column family
// under the prefixes of ledger/keys.h; Apply() folds one event into them.
#pragma once

#include "common/hex.h"
#include "common/uint256.h"
#include "ledger/event.h"

#include <functional>
#include <map>
#include <span>
#include <unordered_map>
#include <optional>
#include <string>
#include <vector>

namespace bitacora::ledger {

enum class OrderState : uint8_t { None = 0, AwaitingPayment = 1, AwaitingDelivery = 2, Disputed = 3, Complete = 4, Refunded = 5 };
std::string_view OrderStateName(OrderState state);

struct OrderRecord {
    static constexpr size_t kHistoryMax = 64;
    static constexpr size_t kAnomaliesMax = 64;

    // An event of the order: final (its ledger index), or in the pending overlay (its
    // pending id; `index` unused). Final records never hold pending entries.
    struct HistoryEntry {
        uint64_t index;
        EventKind kind;
        std::optional<PendingId> pending;
        bool operator==(const HistoryEntry&) const = default;
    };
    struct Anomaly {
        uint64_t index;
        std::string reason;
        std::optional<PendingId> pending;
        bool operator==(const Anomaly&) const = default;
    };

    UInt256 order_id;
    OrderState state{OrderState::None};
    Address seller{};
    Address buyer{};
    UInt256 amount;
    uint64_t expiry{0};
    Hash256 payment_proof{};
    Address disputed_by{};
    std::vector<HistoryEntry> history;  // at most kHistoryMax, then counted
    std::vector<Anomaly> anomalies;     // at most kAnomaliesMax, then counted
    uint32_t history_dropped{0};
    uint32_t anomalies_dropped{0};

    Bytes Encode() const;
    static std::optional<OrderRecord> Decode(std::span<const uint8_t> bytes);
};

struct VaultPosition {
    UInt256 shares;
    UInt256 assets_in;
    UInt256 assets_out;
    UInt256 cost_basis;     // assets paid for the shares still held (average cost)
    UInt256 realized_yield; // two's complement: assets out minus the cost of the shares given up

    Bytes Encode() const;
    static std::optional<VaultPosition> Decode(std::span<const uint8_t> bytes);
};

struct Totals {
    UInt256 escrow_locked;    // USDC in open orders
    UInt256 vault_assets_in;  // deposited
    UInt256 vault_assets_out; // withdrawn
    UInt256 vault_shares;     // shares outstanding
    uint64_t orders{0};
    uint64_t orders_open{0};
    uint64_t anomalies{0};
    uint64_t offchain_events{0};
    uint64_t anchor_events{0};
    bool escrow_paused{false};

    Bytes Encode() const;
    static std::optional<Totals> Decode(std::span<const uint8_t> bytes);
};

// Key-value view that Apply() reads and writes: a batch over the database, or the
// pending overlay over the final state.
class StateView {
public:
    virtual ~StateView() = default;
    virtual std::optional<std::string> Get(const std::string& key) = 0;
    virtual void Put(const std::string& key, const std::string& value) = 0;
};

// Writes buffered in memory over a base reader; reads see the buffered writes first.
class LayeredState final : public StateView {
public:
    using BaseReader = std::function<std::optional<std::string>(const std::string& key)>;
    explicit LayeredState(BaseReader base) : m_base(std::move(base)) {}
    std::optional<std::string> Get(const std::string& key) override;
    void Put(const std::string& key, const std::string& value) override { m_writes[key] = value; }
    const std::unordered_map<std::string, std::string>& writes() const { return m_writes; }

private:
    BaseReader m_base;
    std::unordered_map<std::string, std::string> m_writes;
};

// Folds event number `index` into the projections. Transitions the order state
// machine does not allow are recorded as anomalies on the order, never thrown.
void ApplyEvent(const Event& event, uint64_t index, StateView& state);
// The same for consecutive events from first_index on; totals are read and written once.
void ApplyEvents(std::span<const Event> events, uint64_t first_index, StateView& state);
// The same for events of unfinalized blocks (the pending overlay): they have no index, so
// orders name them by PendingId and no index-keyed entry is written.
void ApplyPendingEvents(std::span<const Event> events, StateView& state);

std::optional<OrderRecord> ReadOrder(StateView& state, const UInt256& order_id);
std::optional<VaultPosition> ReadPosition(StateView& state, const Address& owner);
std::optional<uint8_t> ReadReputation(StateView& state, const Address& seller);
Totals ReadTotals(StateView& state);
std::optional<uint64_t> ReadIdempotencyKey(StateView& state, const std::string& key);

} // namespace bitacora::ledger
