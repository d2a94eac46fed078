#include "ledger/event.h"

#include "ledger/encoding.h"

#include <fmt/format.h>

namespace bitacora::ledger {
namespace {

constexpr size_t kOffchainKindMax = 64;
constexpr size_t kIdempotencyKeyMax = 128;
constexpr size_t kPayloadMax = 64 * 1024;

template <class... Ts>
struct Overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

void EncodeBody(Writer& w, const EventBody& body)
{
    std::visit(Overloaded{
                   [&](const OrderCreated& e) { w.U256(e.order_id).Raw(e.seller).Raw(e.buyer).U256(e.amount).U64(e.expiry); },
                   [&](const PaymentConfirmed& e) { w.U256(e.order_id).Raw(e.buyer).Raw(e.payment_proof); },
                   [&](const OrderReleased& e) { w.U256(e.order_id).Raw(e.seller).Raw(e.buyer).U256(e.amount); },
                   [&](const OrderCancelled& e) { w.U256(e.order_id).Raw(e.seller).U256(e.amount); },
                   [&](const OrderExpired& e) { w.U256(e.order_id).Raw(e.seller).Raw(e.caller).U256(e.amount); },
                   [&](const OrderDisputed& e) { w.U256(e.order_id).Raw(e.disputed_by).Bool(e.by_buyer); },
                   [&](const DisputeResolved& e) {
                       w.U256(e.order_id).Raw(e.arbiter).Bool(e.favor_buyer).Raw(e.recipient).U256(e.amount);
                   },
                   [&](const ReputationChanged& e) { w.Raw(e.seller).U8(e.previous).U8(e.current); },
                   [&](const EscrowPaused& e) { w.Raw(e.account).Bool(e.paused); },
                   [&](const RoleChanged& e) { w.Raw(e.role).Raw(e.account).Raw(e.sender).Bool(e.granted); },
                   [&](const VaultDeposit& e) { w.Raw(e.sender).Raw(e.owner).U256(e.assets).U256(e.shares); },
                   [&](const VaultWithdraw& e) {
                       w.Raw(e.sender).Raw(e.receiver).Raw(e.owner).U256(e.assets).U256(e.shares);
                   },
                   [&](const VaultTransfer& e) { w.Raw(e.from).Raw(e.to).U256(e.value); },
                   [&](const OffchainEvent& e) {
                       w.Str16(e.kind).Str16(e.idempotency_key).Bytes32(e.payload).Raw(e.submitter).Raw(e.signature);
                   },
                   [&](const RawEvmLog& e) {
                       w.U8(static_cast<uint8_t>(e.topics.size()));
                       for (const auto& topic : e.topics) w.Raw(topic);
                       w.Bytes32(e.data);
                   },
                   [&](const AnchorEvent& e) {
                       w.U8(e.state).U64(e.anchored_size).Raw(e.anchored_root).Raw(e.txid).U64(e.block_height).Raw(e.block_hash);
                   },
               },
               body);
}

template <typename T>
bool DecodeInto(Reader& r, T& e);

template <> bool DecodeInto(Reader& r, OrderCreated& e) { return r.U256(e.order_id) && r.Fixed(e.seller) && r.Fixed(e.buyer) && r.U256(e.amount) && r.U64(e.expiry); }
template <> bool DecodeInto(Reader& r, PaymentConfirmed& e) { return r.U256(e.order_id) && r.Fixed(e.buyer) && r.Fixed(e.payment_proof); }
template <> bool DecodeInto(Reader& r, OrderReleased& e) { return r.U256(e.order_id) && r.Fixed(e.seller) && r.Fixed(e.buyer) && r.U256(e.amount); }
template <> bool DecodeInto(Reader& r, OrderCancelled& e) { return r.U256(e.order_id) && r.Fixed(e.seller) && r.U256(e.amount); }
template <> bool DecodeInto(Reader& r, OrderExpired& e) { return r.U256(e.order_id) && r.Fixed(e.seller) && r.Fixed(e.caller) && r.U256(e.amount); }
template <> bool DecodeInto(Reader& r, OrderDisputed& e) { return r.U256(e.order_id) && r.Fixed(e.disputed_by) && r.Bool(e.by_buyer); }
template <> bool DecodeInto(Reader& r, DisputeResolved& e) { return r.U256(e.order_id) && r.Fixed(e.arbiter) && r.Bool(e.favor_buyer) && r.Fixed(e.recipient) && r.U256(e.amount); }
template <> bool DecodeInto(Reader& r, ReputationChanged& e) { return r.Fixed(e.seller) && r.U8(e.previous) && r.U8(e.current); }
template <> bool DecodeInto(Reader& r, EscrowPaused& e) { return r.Fixed(e.account) && r.Bool(e.paused); }
template <> bool DecodeInto(Reader& r, RoleChanged& e) { return r.Fixed(e.role) && r.Fixed(e.account) && r.Fixed(e.sender) && r.Bool(e.granted); }
template <> bool DecodeInto(Reader& r, VaultDeposit& e) { return r.Fixed(e.sender) && r.Fixed(e.owner) && r.U256(e.assets) && r.U256(e.shares); }
template <> bool DecodeInto(Reader& r, VaultWithdraw& e) { return r.Fixed(e.sender) && r.Fixed(e.receiver) && r.Fixed(e.owner) && r.U256(e.assets) && r.U256(e.shares); }
template <> bool DecodeInto(Reader& r, VaultTransfer& e) { return r.Fixed(e.from) && r.Fixed(e.to) && r.U256(e.value); }
template <> bool DecodeInto(Reader& r, OffchainEvent& e)
{
    return r.Str16(e.kind, kOffchainKindMax) && r.Str16(e.idempotency_key, kIdempotencyKeyMax) &&
           r.Bytes32(e.payload, kPayloadMax) && r.Fixed(e.submitter) && r.Fixed(e.signature);
}
template <> bool DecodeInto(Reader& r, AnchorEvent& e)
{
    return r.U8(e.state) && r.U64(e.anchored_size) && r.Fixed(e.anchored_root) && r.Fixed(e.txid) &&
           r.U64(e.block_height) && r.Fixed(e.block_hash);
}

template <> bool DecodeInto(Reader& r, RawEvmLog& e)
{
    uint8_t count = 0;
    if (!r.U8(count) || count > RawEvmLog::kTopicsMax) return false;
    e.topics.resize(count);
    for (auto& topic : e.topics) {
        if (!r.Fixed(topic)) return false;
    }
    return r.Bytes32(e.data, RawEvmLog::kDataMax);
}

template <typename T>
Result<EventBody> DecodeBody(Reader& r)
{
    T body;
    if (!DecodeInto(r, body)) return Error{"event body is truncated or malformed"};
    return EventBody{std::move(body)};
}

constexpr EventKind kKindByIndex[] = {
    EventKind::OrderCreated,  EventKind::PaymentConfirmed, EventKind::OrderReleased, EventKind::OrderCancelled,
    EventKind::OrderExpired,  EventKind::OrderDisputed,    EventKind::DisputeResolved, EventKind::ReputationChanged,
    EventKind::EscrowPaused,  EventKind::RoleChanged,      EventKind::VaultDeposit,  EventKind::VaultWithdraw,
    EventKind::VaultTransfer, EventKind::Offchain,         EventKind::Anchor,        EventKind::RawEvmLog,
};
static_assert(std::size(kKindByIndex) == std::variant_size_v<EventBody>);

} // namespace

EventKind Event::kind() const
{
    return kKindByIndex[body.index()];
}

bool IsOnChain(EventKind kind)
{
    return kind != EventKind::Offchain && kind != EventKind::Anchor;
}

std::optional<PendingId> PendingIdOf(const Event& event)
{
    if (!event.origin) return std::nullopt;
    return PendingId{event.origin->block_hash, event.origin->log_index};
}

std::string PendingIdText(const PendingId& id)
{
    return fmt::format("pending:{}:{}", HexEncode0x(id.block_hash), id.log_index);
}

std::string_view EventKindName(EventKind kind)
{
    switch (kind) {
    case EventKind::OrderCreated: return "order_created";
    case EventKind::PaymentConfirmed: return "payment_confirmed";
    case EventKind::OrderReleased: return "order_released";
    case EventKind::OrderCancelled: return "order_cancelled";
    case EventKind::OrderExpired: return "order_expired";
    case EventKind::OrderDisputed: return "order_disputed";
    case EventKind::DisputeResolved: return "dispute_resolved";
    case EventKind::ReputationChanged: return "reputation_changed";
    case EventKind::EscrowPaused: return "escrow_paused";
    case EventKind::RoleChanged: return "role_changed";
    case EventKind::VaultDeposit: return "vault_deposit";
    case EventKind::VaultWithdraw: return "vault_withdraw";
    case EventKind::VaultTransfer: return "vault_transfer";
    case EventKind::Offchain: return "offchain";
    case EventKind::Anchor: return "anchor";
    case EventKind::RawEvmLog: return "raw_evm_log";
    }
    return "unknown";
}

Bytes EncodeEvent(const Event& event)
{
    Bytes out;
    out.reserve(256);
    Writer w(out);
    const EventKind kind = event.kind();
    w.U8(kLeafFormatVersion).U8(static_cast<uint8_t>(kind));
    if (IsOnChain(kind)) {
        // Callers must give on-chain events their origin; a default one would still encode.
        const EvmOrigin origin = event.origin.value_or(EvmOrigin{});
        w.U64(origin.chain_id).U64(origin.block_number).Raw(origin.block_hash).Raw(origin.tx_hash)
            .U32(origin.log_index).Raw(origin.contract);
    }
    EncodeBody(w, event.body);
    return out;
}

Result<Event> DecodeEvent(std::span<const uint8_t> leaf)
{
    Reader r(leaf);
    uint8_t version = 0;
    uint8_t kind_byte = 0;
    if (!r.U8(version) || !r.U8(kind_byte)) return Error{"leaf is shorter than its header"};
    if (version != kLeafFormatVersion) return Error{fmt::format("unknown leaf format version {}", version)};
    Event event;
    const auto kind = static_cast<EventKind>(kind_byte);
    if (IsOnChain(kind)) {
        EvmOrigin origin;
        if (!r.U64(origin.chain_id) || !r.U64(origin.block_number) || !r.Fixed(origin.block_hash) ||
            !r.Fixed(origin.tx_hash) || !r.U32(origin.log_index) || !r.Fixed(origin.contract)) {
            return Error{"leaf origin is truncated"};
        }
        event.origin = origin;
    }
    Result<EventBody> body = Error{fmt::format("unknown event kind 0x{:02x}", kind_byte)};
    switch (kind) {
    case EventKind::OrderCreated: body = DecodeBody<OrderCreated>(r); break;
    case EventKind::PaymentConfirmed: body = DecodeBody<PaymentConfirmed>(r); break;
    case EventKind::OrderReleased: body = DecodeBody<OrderReleased>(r); break;
    case EventKind::OrderCancelled: body = DecodeBody<OrderCancelled>(r); break;
    case EventKind::OrderExpired: body = DecodeBody<OrderExpired>(r); break;
    case EventKind::OrderDisputed: body = DecodeBody<OrderDisputed>(r); break;
    case EventKind::DisputeResolved: body = DecodeBody<DisputeResolved>(r); break;
    case EventKind::ReputationChanged: body = DecodeBody<ReputationChanged>(r); break;
    case EventKind::EscrowPaused: body = DecodeBody<EscrowPaused>(r); break;
    case EventKind::RoleChanged: body = DecodeBody<RoleChanged>(r); break;
    case EventKind::VaultDeposit: body = DecodeBody<VaultDeposit>(r); break;
    case EventKind::VaultWithdraw: body = DecodeBody<VaultWithdraw>(r); break;
    case EventKind::VaultTransfer: body = DecodeBody<VaultTransfer>(r); break;
    case EventKind::Offchain: body = DecodeBody<OffchainEvent>(r); break;
    case EventKind::Anchor: body = DecodeBody<AnchorEvent>(r); break;
    case EventKind::RawEvmLog: body = DecodeBody<RawEvmLog>(r); break;
    }
    if (!body) return body.failure();
    if (!r.AtEnd()) return Error{"leaf has trailing bytes"};
    event.body = std::move(body.value());
    return event;
}

Hash256 OffchainSigningHash(const OffchainEvent& event)
{
    Bytes message;
    Writer w(message);
    static constexpr std::string_view kTag = "bitacora/offchain/v1";
    w.Raw(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kTag.data()), kTag.size()));
    w.Str16(event.kind).Str16(event.idempotency_key).Bytes32(event.payload);
    return Sha256(message);
}

} // namespace bitacora::ledger
