#include "ledger/projections.h"

#include "ledger/encoding.h"
#include "ledger/keys.h"

#include <fmt/format.h>

namespace bitacora::ledger {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

constexpr uint8_t kRecordVersion = 1;

std::string ToString(const Bytes& bytes)
{
    return std::string(bytes.begin(), bytes.end());
}

std::span<const uint8_t> AsSpan(const std::string& s)
{
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool IsZero(const Address& a)
{
    for (const uint8_t b : a) {
        if (b != 0) return false;
    }
    return true;
}

UInt256 Add(const UInt256& a, const UInt256& b)
{
    // 2^256 base units of a 6-decimal token cannot exist; saturate rather than wrap.
    return a.CheckedAdd(b).value_or(UInt256::Max());
}

UInt256 SubSaturating(const UInt256& a, const UInt256& b)
{
    return a.CheckedSub(b).value_or(UInt256());
}

// floor(a * b / c) by bitwise long division (only vault withdrawals and share
// transfers use it). A product over 256 bits cannot come from real balances; the
// caller's whole basis is kept then.
UInt256 MulDiv(const UInt256& a, const UInt256& b, const UInt256& c)
{
    if (c.IsZero()) return UInt256();
    const auto product = a.CheckedMul(b);
    if (!product) return a;
    if (product->BitLength() <= 128 && c.BitLength() <= 128) {
        // The common case: token amounts and share counts fit in 128 bits.
        using u128 = unsigned __int128;
        auto to_u128 = [](const UInt256& v) {
            const auto be = v.ToBigEndian();
            u128 x = 0;
            for (size_t i = 16; i < 32; ++i) x = (x << 8) | be[i];
            return x;
        };
        const u128 q = to_u128(*product) / to_u128(c);
        std::array<uint8_t, 32> out{};
        for (size_t i = 0; i < 16; ++i) out[31 - i] = static_cast<uint8_t>(q >> (8 * i));
        return UInt256::FromBigEndian(out);
    }
    UInt256 quotient;
    UInt256 remainder;
    const auto numerator = product->ToBigEndian();
    for (size_t byte = 0; byte < 32; ++byte) {
        for (int bit = 7; bit >= 0; --bit) {
            remainder = remainder.CheckedMul(UInt256(2)).value_or(UInt256::Max());
            if ((numerator[byte] >> bit) & 1) remainder = Add(remainder, UInt256(1));
            quotient = quotient.CheckedMul(UInt256(2)).value_or(UInt256::Max());
            if (remainder >= c) {
                remainder = *remainder.CheckedSub(c);
                quotient = Add(quotient, UInt256(1));
            }
        }
    }
    return quotient;
}

// Two's-complement addition for the signed realized-yield field.
UInt256 WrappingAdd(const UInt256& a, const UInt256& b)
{
    const auto ab = a.ToBigEndian();
    const auto bb = b.ToBigEndian();
    std::array<uint8_t, 32> out{};
    unsigned carry = 0;
    for (size_t i = 32; i-- > 0;) {
        const unsigned sum = ab[i] + bb[i] + carry;
        out[i] = static_cast<uint8_t>(sum);
        carry = sum >> 8;
    }
    return UInt256::FromBigEndian(out);
}

// Orders touched by a batch, decoded once and encoded once (an order's events tend
// to come close together); written back by ApplyEvents.
using OrderCache = std::unordered_map<std::string, OrderRecord>;

class Projector {
public:
    // `pending`: the event is in the pending overlay, named by its id rather than `index`.
    Projector(StateView& state, Totals& totals, OrderCache& orders, uint64_t index, const Event& event,
              std::optional<PendingId> pending = std::nullopt)
        : m_state(state), m_totals(totals), m_orders(orders), m_index(index), m_event(event), m_pending(pending)
    {
    }

    void Run()
    {
        IndexAccounts();
        std::visit(Overloaded{
                       [&](const OrderCreated& e) { Created(e); },
                       [&](const PaymentConfirmed& e) {
                           Transition(e.order_id, OrderState::AwaitingPayment, OrderState::AwaitingDelivery,
                                      [&](OrderRecord& o) { o.payment_proof = e.payment_proof; });
                       },
                       [&](const OrderReleased& e) { Settle(e.order_id, OrderState::AwaitingDelivery, OrderState::Complete); },
                       [&](const OrderCancelled& e) { Settle(e.order_id, OrderState::AwaitingPayment, OrderState::Refunded); },
                       [&](const OrderExpired& e) { Settle(e.order_id, OrderState::AwaitingPayment, OrderState::Refunded); },
                       [&](const OrderDisputed& e) {
                           Transition(e.order_id, OrderState::AwaitingDelivery, OrderState::Disputed,
                                      [&](OrderRecord& o) { o.disputed_by = e.disputed_by; });
                       },
                       [&](const DisputeResolved& e) {
                           Settle(e.order_id, OrderState::Disputed, e.favor_buyer ? OrderState::Complete : OrderState::Refunded);
                       },
                       [&](const ReputationChanged& e) { m_state.Put(keys::Reputation(e.seller), std::string(1, static_cast<char>(e.current))); },
                       [&](const EscrowPaused& e) { UpdateTotals([&](Totals& t) { t.escrow_paused = e.paused; }); },
                       [&](const RoleChanged&) {},
                       [&](const VaultDeposit& e) { Deposit(e); },
                       [&](const VaultWithdraw& e) { Withdraw(e); },
                       [&](const VaultTransfer& e) { Transfer(e); },
                       [&](const OffchainEvent& e) {
                           m_state.Put(keys::Idempotency(e.idempotency_key), keys::U64(m_index));
                           UpdateTotals([](Totals& t) { ++t.offchain_events; });
                       },
                       [&](const RawEvmLog&) {},
                       [&](const AnchorEvent& e) {
                           Bytes body;
                           Writer(body).U8(e.state).U64(e.anchored_size).Raw(e.anchored_root).Raw(e.txid)
                               .U64(e.block_height).Raw(e.block_hash).U64(m_index);
                           m_state.Put(keys::Anchor(e.anchored_size), ToString(body));
                           UpdateTotals([](Totals& t) { ++t.anchor_events; });
                       },
                   },
                   m_event.body);
    }

private:
    template <typename F>
    void UpdateTotals(F&& change)
    {
        change(m_totals); // written back once per batch by ApplyEvents
    }

    void Record(OrderRecord& order)
    {
        if (order.history.size() < OrderRecord::kHistoryMax) {
            order.history.push_back({m_pending ? 0 : m_index, m_event.kind(), m_pending});
        } else {
            ++order.history_dropped;
        }
    }

    void Anomaly(OrderRecord& order, std::string reason)
    {
        if (order.anomalies.size() < OrderRecord::kAnomaliesMax) {
            order.anomalies.push_back({m_pending ? 0 : m_index, std::move(reason), m_pending});
        } else {
            ++order.anomalies_dropped;
        }
        UpdateTotals([](Totals& t) { ++t.anomalies; });
    }

    OrderRecord& Load(const UInt256& id)
    {
        std::string key = keys::Order(id);
        auto it = m_orders.find(key);
        if (it == m_orders.end()) {
            OrderRecord record;
            if (auto stored = ReadOrder(m_state, id)) {
                record = std::move(*stored);
            } else {
                record.order_id = id;
            }
            it = m_orders.emplace(std::move(key), std::move(record)).first;
        }
        return it->second;
    }

    void Created(const OrderCreated& e)
    {
        OrderRecord& order = Load(e.order_id);
        Record(order);
        if (order.state != OrderState::None) {
            Anomaly(order, "order created twice");
            return;
        }
        order.state = OrderState::AwaitingPayment;
        order.seller = e.seller;
        order.buyer = e.buyer;
        order.amount = e.amount;
        order.expiry = e.expiry;
        m_state.Put(keys::OrderByParty(keys::kOrdersBySellerPrefix, e.seller, e.order_id), std::string());
        m_state.Put(keys::OrderByParty(keys::kOrdersByBuyerPrefix, e.buyer, e.order_id), std::string());
        UpdateTotals([&](Totals& t) {
            t.escrow_locked = Add(t.escrow_locked, e.amount);
            ++t.orders;
            ++t.orders_open;
        });
    }

    template <typename F>
    bool Transition(const UInt256& id, OrderState from, OrderState to, F&& change)
    {
        OrderRecord& order = Load(id);
        Record(order);
        if (order.state != from) {
            Anomaly(order, fmt::format("{} in state {}, expected {}", EventKindName(m_event.kind()),
                                       OrderStateName(order.state), OrderStateName(from)));
            return false;
        }
        order.state = to;
        change(order);
        return true;
    }

    void Settle(const UInt256& id, OrderState from, OrderState to)
    {
        UInt256 amount;
        const bool applied = Transition(id, from, to, [&](OrderRecord& o) { amount = o.amount; });
        if (!applied) return;
        UpdateTotals([&](Totals& t) {
            t.escrow_locked = SubSaturating(t.escrow_locked, amount);
            if (t.orders_open > 0) --t.orders_open;
        });
    }

    VaultPosition LoadPosition(const Address& owner) { return ReadPosition(m_state, owner).value_or(VaultPosition{}); }
    void SavePosition(const Address& owner, const VaultPosition& p) { m_state.Put(keys::Position(owner), ToString(p.Encode())); }

    // Events that are not an order's: indexed under each account they name (not the
    // zero address of mints and burns).
    void IndexAccounts()
    {
        std::array<const Address*, 3> accounts{};
        std::visit(Overloaded{
                       [&](const VaultDeposit& e) { accounts = {&e.sender, &e.owner, nullptr}; },
                       [&](const VaultWithdraw& e) { accounts = {&e.sender, &e.receiver, &e.owner}; },
                       [&](const VaultTransfer& e) { accounts = {&e.from, &e.to, nullptr}; },
                       [&](const ReputationChanged& e) { accounts = {&e.seller, nullptr, nullptr}; },
                       [&](const EscrowPaused& e) { accounts = {&e.account, nullptr, nullptr}; },
                       [&](const RoleChanged& e) { accounts = {&e.account, &e.sender, nullptr}; },
                       [&](const auto&) {},
                   },
                   m_event.body);
        static const Address kZero{};
        for (size_t i = 0; i < accounts.size(); ++i) {
            const Address* a = accounts[i];
            if (a == nullptr || *a == kZero) continue;
            bool seen = false;
            for (size_t j = 0; j < i; ++j) seen = seen || (accounts[j] != nullptr && *accounts[j] == *a);
            if (!seen && !m_pending) m_state.Put(keys::AccountEvent(*a, m_index), std::string());
        }
    }

    void Deposit(const VaultDeposit& e)
    {
        VaultPosition p = LoadPosition(e.owner);
        p.shares = Add(p.shares, e.shares);
        p.assets_in = Add(p.assets_in, e.assets);
        p.cost_basis = Add(p.cost_basis, e.assets);
        SavePosition(e.owner, p);
        UpdateTotals([&](Totals& t) {
            t.vault_assets_in = Add(t.vault_assets_in, e.assets);
            t.vault_shares = Add(t.vault_shares, e.shares);
        });
    }

    void Withdraw(const VaultWithdraw& e)
    {
        VaultPosition p = LoadPosition(e.owner);
        const UInt256 basis_out = e.shares >= p.shares ? p.cost_basis : MulDiv(p.cost_basis, e.shares, p.shares);
        p.shares = SubSaturating(p.shares, e.shares);
        p.cost_basis = SubSaturating(p.cost_basis, basis_out);
        p.assets_out = Add(p.assets_out, e.assets);
        p.realized_yield = WrappingAdd(WrappingAdd(p.realized_yield, e.assets), basis_out.Negated());
        SavePosition(e.owner, p);
        UpdateTotals([&](Totals& t) {
            t.vault_assets_out = Add(t.vault_assets_out, e.assets);
            t.vault_shares = SubSaturating(t.vault_shares, e.shares);
        });
    }

    void Transfer(const VaultTransfer& e)
    {
        // Mints and burns are already counted by Deposit and Withdraw.
        if (IsZero(e.from) || IsZero(e.to) || e.from == e.to) return;
        VaultPosition from = LoadPosition(e.from);
        VaultPosition to = LoadPosition(e.to);
        const UInt256 basis = e.value >= from.shares ? from.cost_basis : MulDiv(from.cost_basis, e.value, from.shares);
        from.shares = SubSaturating(from.shares, e.value);
        from.cost_basis = SubSaturating(from.cost_basis, basis);
        to.shares = Add(to.shares, e.value);
        to.cost_basis = Add(to.cost_basis, basis);
        SavePosition(e.from, from);
        SavePosition(e.to, to);
    }

    StateView& m_state;
    Totals& m_totals;
    OrderCache& m_orders;
    uint64_t m_index;
    const Event& m_event;
    std::optional<PendingId> m_pending;
};

// In a stored record, an index that no final event has: a pending id follows.
constexpr uint64_t kPendingIndexMark = UINT64_MAX;

void WriteIndex(Writer& w, uint64_t index, const std::optional<PendingId>& pending)
{
    w.U64(pending ? kPendingIndexMark : index);
}

void WritePending(Writer& w, const std::optional<PendingId>& pending)
{
    if (pending) w.Raw(pending->block_hash).U32(pending->log_index);
}

bool ReadPending(Reader& r, uint64_t index, std::optional<PendingId>& pending)
{
    if (index != kPendingIndexMark) return true;
    PendingId id;
    if (!r.Fixed(id.block_hash) || !r.U32(id.log_index)) return false;
    pending = id;
    return true;
}

} // namespace

std::string_view OrderStateName(OrderState state)
{
    switch (state) {
    case OrderState::None: return "none";
    case OrderState::AwaitingPayment: return "awaiting_payment";
    case OrderState::AwaitingDelivery: return "awaiting_delivery";
    case OrderState::Disputed: return "disputed";
    case OrderState::Complete: return "complete";
    case OrderState::Refunded: return "refunded";
    }
    return "unknown";
}

Bytes OrderRecord::Encode() const
{
    Bytes out;
    Writer w(out);
    w.U8(kRecordVersion).U256(order_id).U8(static_cast<uint8_t>(state)).Raw(seller).Raw(buyer).U256(amount)
        .U64(expiry).Raw(payment_proof).Raw(disputed_by).U32(history_dropped).U32(anomalies_dropped);
    w.U16(static_cast<uint16_t>(history.size()));
    for (const auto& h : history) {
        WriteIndex(w, h.index, h.pending);
        w.U8(static_cast<uint8_t>(h.kind));
        WritePending(w, h.pending);
    }
    w.U16(static_cast<uint16_t>(anomalies.size()));
    for (const auto& a : anomalies) {
        WriteIndex(w, a.index, a.pending);
        w.Str16(a.reason);
        WritePending(w, a.pending);
    }
    return out;
}

std::optional<OrderRecord> OrderRecord::Decode(std::span<const uint8_t> bytes)
{
    Reader r(bytes);
    OrderRecord o;
    uint8_t version = 0;
    uint8_t state = 0;
    uint16_t count = 0;
    if (!r.U8(version) || version != kRecordVersion || !r.U256(o.order_id) || !r.U8(state) || !r.Fixed(o.seller) ||
        !r.Fixed(o.buyer) || !r.U256(o.amount) || !r.U64(o.expiry) || !r.Fixed(o.payment_proof) ||
        !r.Fixed(o.disputed_by) || !r.U32(o.history_dropped) || !r.U32(o.anomalies_dropped) || !r.U16(count) ||
        count > kHistoryMax) {
        return std::nullopt;
    }
    o.state = static_cast<OrderState>(state);
    for (uint16_t i = 0; i < count; ++i) {
        HistoryEntry h{};
        uint8_t kind = 0;
        if (!r.U64(h.index) || !r.U8(kind) || !ReadPending(r, h.index, h.pending)) return std::nullopt;
        if (h.pending) h.index = 0;
        h.kind = static_cast<EventKind>(kind);
        o.history.push_back(h);
    }
    if (!r.U16(count) || count > kAnomaliesMax) return std::nullopt;
    for (uint16_t i = 0; i < count; ++i) {
        Anomaly a{};
        if (!r.U64(a.index) || !r.Str16(a.reason, 1024) || !ReadPending(r, a.index, a.pending)) return std::nullopt;
        if (a.pending) a.index = 0;
        o.anomalies.push_back(std::move(a));
    }
    if (!r.AtEnd()) return std::nullopt;
    return o;
}

Bytes VaultPosition::Encode() const
{
    Bytes out;
    Writer(out).U8(kRecordVersion).U256(shares).U256(assets_in).U256(assets_out).U256(cost_basis).U256(realized_yield);
    return out;
}

std::optional<VaultPosition> VaultPosition::Decode(std::span<const uint8_t> bytes)
{
    Reader r(bytes);
    VaultPosition p;
    uint8_t version = 0;
    if (!r.U8(version) || version != kRecordVersion || !r.U256(p.shares) || !r.U256(p.assets_in) ||
        !r.U256(p.assets_out) || !r.U256(p.cost_basis) || !r.U256(p.realized_yield) || !r.AtEnd()) {
        return std::nullopt;
    }
    return p;
}

Bytes Totals::Encode() const
{
    Bytes out;
    Writer(out).U8(kRecordVersion).U256(escrow_locked).U256(vault_assets_in).U256(vault_assets_out).U256(vault_shares)
        .U64(orders).U64(orders_open).U64(anomalies).U64(offchain_events).U64(anchor_events).Bool(escrow_paused);
    return out;
}

std::optional<Totals> Totals::Decode(std::span<const uint8_t> bytes)
{
    Reader r(bytes);
    Totals t;
    uint8_t version = 0;
    if (!r.U8(version) || version != kRecordVersion || !r.U256(t.escrow_locked) || !r.U256(t.vault_assets_in) ||
        !r.U256(t.vault_assets_out) || !r.U256(t.vault_shares) || !r.U64(t.orders) || !r.U64(t.orders_open) ||
        !r.U64(t.anomalies) || !r.U64(t.offchain_events) || !r.U64(t.anchor_events) || !r.Bool(t.escrow_paused) ||
        !r.AtEnd()) {
        return std::nullopt;
    }
    return t;
}

std::optional<std::string> LayeredState::Get(const std::string& key)
{
    if (auto it = m_writes.find(key); it != m_writes.end()) return it->second;
    return m_base(key);
}

namespace {

void Apply(std::span<const Event> events, uint64_t first_index, StateView& state, bool pending)
{
    if (events.empty()) return;
    Totals totals = ReadTotals(state);
    OrderCache orders;
    for (size_t i = 0; i < events.size(); ++i) {
        Projector(state, totals, orders, first_index + i, events[i], pending ? PendingIdOf(events[i]) : std::nullopt).Run();
    }
    for (const auto& [key, order] : orders) state.Put(key, ToString(order.Encode()));
    state.Put(keys::Totals(), ToString(totals.Encode()));
}

} // namespace

void ApplyEvents(std::span<const Event> events, uint64_t first_index, StateView& state)
{
    Apply(events, first_index, state, /*pending=*/false);
}

void ApplyPendingEvents(std::span<const Event> events, StateView& state)
{
    Apply(events, 0, state, /*pending=*/true);
}

void ApplyEvent(const Event& event, uint64_t index, StateView& state)
{
    ApplyEvents(std::span<const Event>(&event, 1), index, state);
}

std::optional<OrderRecord> ReadOrder(StateView& state, const UInt256& order_id)
{
    const auto value = state.Get(keys::Order(order_id));
    if (!value) return std::nullopt;
    return OrderRecord::Decode(AsSpan(*value));
}

std::optional<VaultPosition> ReadPosition(StateView& state, const Address& owner)
{
    const auto value = state.Get(keys::Position(owner));
    if (!value) return std::nullopt;
    return VaultPosition::Decode(AsSpan(*value));
}

std::optional<uint8_t> ReadReputation(StateView& state, const Address& seller)
{
    const auto value = state.Get(keys::Reputation(seller));
    if (!value || value->size() != 1) return std::nullopt;
    return static_cast<uint8_t>((*value)[0]);
}

Totals ReadTotals(StateView& state)
{
    const auto value = state.Get(keys::Totals());
    if (!value) return Totals{};
    return Totals::Decode(AsSpan(*value)).value_or(Totals{});
}

std::optional<uint64_t> ReadIdempotencyKey(StateView& state, const std::string& key)
{
    const auto value = state.Get(keys::Idempotency(key));
    if (!value || value->size() != 8) return std::nullopt;
    return keys::ParseU64(*value);
}

} // namespace bitacora::ledger
