#include "rpc/methods.h"

#include "common/hex.h"
#include "ledger/order_query.h"
#include "rpc/ledger_json.h"
#include "rpc/offchain.h"
#include "rpc/schemas.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>

namespace bitacora::rpc {
namespace {

using nlohmann::json;

UInt256 OrderId(const Params& params, size_t i)
{
    const auto id = UInt256::FromDecimal(params.String(i));
    if (!id) throw RpcException{kInvalidParams, "orderId must be a decimal integer below 2^256"};
    return *id;
}

ledger::Address AddressParam(const Params& params, size_t i, std::string_view name)
{
    ledger::Address out{};
    const std::string text = params.String(i);
    if (text.size() != 42 || !HexDecodeExact(text, out)) {
        throw RpcException{kInvalidParams, fmt::format("{} must be a 0x-prefixed 20-byte hex address", name)};
    }
    return out;
}

// A record read with and without the pending overlay: "final" when they agree.
template <typename T, typename Encode>
json WithStatus(const std::optional<T>& final_view, const std::optional<T>& pending_view, bool include_pending, Encode encode)
{
    const auto& shown = include_pending ? pending_view : final_view;
    if (!shown) return nullptr;
    json out = encode(*shown);
    const bool same = final_view && pending_view && final_view->Encode() == pending_view->Encode();
    out["status"] = !include_pending || same ? "final" : "pending";
    return out;
}

constexpr uint64_t kPageMax = 1'000;
constexpr uint64_t kPageDefault = 100;
constexpr size_t kScanMax = 10'000; // records looked at per call; a cursor continues

// Every list takes `cursor` (absent for the first page, else the previous answer's
// nextCursor with the same filters) and `limit`, and answers `nextCursor`: a string to
// pass on, or null when there is no more. A cursor is the decimal position of the first
// item not given yet (a ledger index, an order id, an anchor id, a history entry), so
// positions are inclusive everywhere, and a client that reached the end resumes from its
// last item's position + 1.
const ParamSpec kCursor{"cursor", ParamType::String, false,
                        "nextCursor of the previous page (same filters); absent for the first", SchemaRef("Cursor")};
const ParamSpec kLimit{"limit", ParamType::Unsigned, false, "items per page, 1 to 1000 (default 100)",
                       {{"type", "integer"}, {"minimum", 1}, {"maximum", kPageMax}}};

uint64_t LimitParam(const Params& p, size_t i)
{
    const uint64_t limit = p.Has(i) ? p.Unsigned(i) : kPageDefault;
    if (limit == 0 || limit > kPageMax) throw RpcException{kInvalidParams, "limit must be 1 to 1000"};
    return limit;
}

std::optional<uint64_t> DecimalU64(std::string_view text)
{
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// A position cursor, at most `end` (the position after the last item): a position beyond
// the list is refused, not answered with an empty page.
std::optional<uint64_t> PositionCursor(const Params& p, size_t i, uint64_t end)
{
    if (!p.Has(i)) return std::nullopt;
    const auto position = DecimalU64(p.String(i));
    if (!position) throw RpcException{kInvalidParams, "cursor is not one this method returned"};
    if (*position > end) {
        throw RpcException{kInvalidParams, fmt::format("cursor {} is past the end of the list ({})", *position, end)};
    }
    return position;
}

json CursorJson(std::optional<uint64_t> next) { return next ? json(std::to_string(*next)) : json(nullptr); }

// The items of a list answer, stopped before the answer outgrows what this call may send
// (-rpcmaxresponse, less what earlier calls of its batch took). A list that cannot hold
// even its first item is an error: an empty page would send the client round forever.
class ListBudget {
public:
    static constexpr size_t kEnvelopeBytes = 256; // the answer's other members

    explicit ListBudget(const Params& params)
        : m_left(params.answer_bytes_max() > kEnvelopeBytes ? params.answer_bytes_max() - kEnvelopeBytes : 0) {}

    // Whether `item` still fits; `so_far` items are already in the list.
    bool Take(const json& item, size_t so_far)
    {
        const size_t bytes = item.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1;
        if (bytes <= m_left) {
            m_left -= bytes;
            return true;
        }
        if (so_far == 0) {
            throw RpcException{kLimitExceeded, fmt::format("the first item alone is larger than the {} bytes this "
                                                           "answer may still take (-rpcmaxresponse)", m_left)};
        }
        return false;
    }

private:
    size_t m_left;
};

// One event of the final log as the lists give it.
json EventItem(const ledger::Ledger& ledger, uint64_t index)
{
    const auto leaf = ledger.GetLeaf(index);
    if (!leaf) throw RpcException{kInternalError, fmt::format("event {} cannot be read: {}", index, leaf.error())};
    const auto event = ledger::DecodeEvent(*leaf);
    if (!event) throw RpcException{kInternalError, fmt::format("stored leaf {} does not decode", index)};
    return {{"index", index}, {"event", EventJson(*event)}, {"leaf", HexEncode0x(*leaf)}};
}

// The first index at or after `low` whose EVM event is of block `from_block` or later, by
// binary search (the log is in block order; off-chain events take the next EVM event's).
uint64_t FirstIndexOfBlock(const ledger::Ledger& ledger, uint64_t low, uint64_t size, uint64_t from_block)
{
    auto block_of = [&](uint64_t i) -> std::optional<uint64_t> {
        for (uint64_t j = i; j < size && j < i + kScanMax; ++j) {
            const auto leaf = ledger.GetLeaf(j);
            if (!leaf) return std::nullopt;
            const auto event = ledger::DecodeEvent(*leaf);
            if (event && event->origin) return event->origin->block_number;
        }
        return std::nullopt;
    };
    uint64_t high = size;
    while (low < high) {
        const uint64_t mid = low + (high - low) / 2;
        const auto block = block_of(mid);
        if (block && *block < from_block) low = mid + 1;
        else high = mid;
    }
    return low;
}

// escrow_getOrders' filter object: {seller?, buyer?, state?, expiryFrom?, expiryTo?}.
ledger::OrderQuery OrderFilter(const json& filter)
{
    ledger::OrderQuery query;
    for (const auto& [key, value] : filter.items()) {
        if (key == "seller" || key == "buyer") {
            ledger::Address address{};
            if (!value.is_string() || value.get<std::string>().size() != 42 || !HexDecodeExact(value.get<std::string>(), address)) {
                throw RpcException{kInvalidParams, fmt::format("filter.{} must be an address", key)};
            }
            (key == "seller" ? query.seller : query.buyer) = address;
        } else if (key == "state") {
            for (int code = 1; code <= 5; ++code) {
                const auto state = static_cast<ledger::OrderState>(code);
                if (value == ledger::OrderStateName(state)) query.state = state;
            }
            if (!query.state) throw RpcException{kInvalidParams, "filter.state is not an order state"};
        } else if (key == "expiryFrom" || key == "expiryTo") {
            if (!value.is_number_unsigned()) throw RpcException{kInvalidParams, fmt::format("filter.{} must be unix seconds", key)};
            (key == "expiryFrom" ? query.expiry_from : query.expiry_to) = value.get<uint64_t>();
        } else {
            throw RpcException{kInvalidParams, fmt::format("unknown filter '{}'", key)};
        }
    }
    return query;
}

const ParamSpec kIncludePending{"includePending", ParamType::Bool, false,
                                "true (default): include unfinalized blocks and say \"pending\" where they change the record"};

MethodSpec BitacoraStatus(Dispatcher&, const MethodContext& context)
{
    return {.name = "bitacora_status",
            .summary = "The ledger's size and root, and each source's sync heights (final and pending), reorgs and "
                       "reconciliation.",
            .result = "{ledger: {size, root, checkpointKey, health: {state, reason}}, sources: {evm: {...}}}",
            .result_schema = SchemaRef("BitacoraStatus"),
            .handler = [&ledger = *context.ledger, sources = context.sources](const Params&) -> json {
                json out = {{"ledger", {{"size", ledger.size()}, {"root", HexEncode0x(ledger.root())}}}};
                if (auto key = ledger.checkpoint_public_key()) out["ledger"]["checkpointKey"] = HexEncode0x(*key);
                out["ledger"]["health"] = HealthJson(ledger.health());
                out["sources"] = sources ? sources() : json::object();
                return out;
            }};
}

MethodSpec EscrowGetOrder(Dispatcher&, const MethodContext& context)
{
    return {.name = "escrow_getOrder",
            .params = {{"orderId", ParamType::String, true, "decimal order id", SchemaRef("Decimal")}, kIncludePending},
            .summary = "One order: its state, parties, amount and the ledger indices of its events.",
            .result = "order object with status \"final\" or \"pending\"; error -32001 if unknown",
            .result_schema = SchemaRef("Order"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const UInt256 id = OrderId(p, 0);
                const bool pending = p.Bool(1, true);
                json out = WithStatus(ledger.GetOrder(id, false), pending ? ledger.GetOrder(id, true) : std::nullopt,
                                      pending, OrderJson);
                if (out.is_null()) throw RpcException{kNotFound, fmt::format("no order {}", id.ToDecimal())};
                return out;
            }};
}

MethodSpec EscrowGetReputation(Dispatcher&, const MethodContext& context)
{
    return {.name = "escrow_getReputation",
            .params = {{"seller", ParamType::String, true, "seller address", SchemaRef("AddressInput")}, kIncludePending},
            .summary = "A seller's reputation, 0 to 100 (50 before any order).",
            .result = "{seller, reputation, status}",
            .result_schema = SchemaRef("Reputation"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const auto seller = AddressParam(p, 0, "seller");
                const bool pending = p.Bool(1, true);
                const auto final_view = ledger.GetReputation(seller, false);
                const auto shown = pending ? ledger.GetReputation(seller, true) : final_view;
                return {{"seller", HexEncode0x(seller)},
                        {"reputation", shown.value_or(50)},
                        {"status", !pending || shown == final_view ? "final" : "pending"}};
            }};
}

MethodSpec VaultGetPosition(Dispatcher&, const MethodContext& context)
{
    return {.name = "vault_getPosition",
            .params = {{"owner", ParamType::String, true, "owner address", SchemaRef("AddressInput")}, kIncludePending},
            .summary = "A vault position: shares, assets in and out, cost basis and realized yield.",
            .result = "position object with status; error -32001 if the owner never held shares",
            .result_schema = SchemaRef("Position"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const auto owner = AddressParam(p, 0, "owner");
                const bool pending = p.Bool(1, true);
                json out = WithStatus(ledger.GetPosition(owner, false), pending ? ledger.GetPosition(owner, true) : std::nullopt,
                                      pending, PositionJson);
                if (out.is_null()) throw RpcException{kNotFound, fmt::format("no position of {}", HexEncode0x(owner))};
                out["owner"] = HexEncode0x(owner);
                return out;
            }};
}

MethodSpec EscrowGetOrders(Dispatcher&, const MethodContext& context)
{
    return {.name = "escrow_getOrders",
            .params = {{"filter", ParamType::Object, false,
                        "{seller?, buyer?, state? (awaiting_payment, awaiting_delivery, disputed, complete, refunded), "
                        "expiryFrom?, expiryTo? (unix seconds, inclusive)}",
                        SchemaRef("OrderFilter")},
                       kCursor,
                       kLimit,
                       {"includePending", ParamType::Bool, false,
                        "false (default): the final log only. true: each order as the unfinalized blocks leave it "
                        "(status \"pending\" where they change it), and after the last final page the orders that "
                        "exist only in unfinalized blocks"}},
            .summary = "Orders matching a filter, in order-id order, a page at a time. Pages are stable while the log "
                       "grows: new orders have higher ids and come on later pages.",
            .result = "{orders: [order with status], nextCursor: string or null (null: no more)}",
            .result_schema = SchemaRef("OrderPage"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                ledger::OrderQuery query = OrderFilter(p.Has(0) ? p[0] : json::object());
                // The cursor is the first order id not given yet: one after a final order.
                if (p.Has(1)) {
                    const auto from = UInt256::FromDecimal(p.String(1));
                    query.after = from ? from->CheckedSub(UInt256(1)) : std::nullopt;
                    if (!query.after || !ledger.GetOrder(*query.after, false)) {
                        throw RpcException{kInvalidParams, "cursor is not one this method returned"};
                    }
                }
                query.limit = LimitParam(p, 2);
                query.include_pending = p.Bool(3, false);
                query.scan_max = kScanMax;
                query.pending_only_max = kPageMax;
                json orders = json::array();
                ListBudget budget(p);
                const auto result = ledger::QueryOrders(ledger, query, [&](const ledger::OrderRecord& order, bool pending) {
                    json item = OrderJson(order);
                    item["status"] = pending ? "pending" : "final";
                    if (!budget.Take(item, orders.size())) return false;
                    orders.push_back(std::move(item));
                    return true;
                });
                const auto next = result.more && result.last_scanned ? result.last_scanned->CheckedAdd(UInt256(1)) : std::nullopt;
                return {{"orders", orders}, {"nextCursor", next ? json(next->ToDecimal()) : json(nullptr)}};
            }};
}

MethodSpec EscrowGetOrderEvents(Dispatcher&, const MethodContext& context)
{
    return {.name = "escrow_getOrderEvents",
            .params = {{"orderId", ParamType::String, true, "decimal order id", SchemaRef("Decimal")}, kCursor, kLimit},
            .summary = "The events of one order in the final log, in log order (the order's history, at most 64 "
                       "events: historyDropped counts those after).",
            .result = "{orderId, events: [{index, event, leaf}], historyDropped, nextCursor: string or null}",
            .result_schema = SchemaRef("OrderEventPage"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const UInt256 id = OrderId(p, 0);
                const auto order = ledger.GetOrder(id, false);
                if (!order) throw RpcException{kNotFound, fmt::format("no final order {}", id.ToDecimal())};
                const uint64_t limit = LimitParam(p, 2);
                uint64_t position = PositionCursor(p, 1, order->history.size()).value_or(0);
                json events = json::array();
                ListBudget budget(p);
                for (; position < order->history.size() && events.size() < limit; ++position) {
                    auto item = EventItem(ledger, order->history[position].index);
                    if (!budget.Take(item, events.size())) break; // the cursor stays at this event
                    events.push_back(std::move(item));
                }
                return {{"orderId", id.ToDecimal()}, {"events", events}, {"historyDropped", order->history_dropped},
                        {"nextCursor", CursorJson(position < order->history.size() ? std::optional(position) : std::nullopt)}};
            }};
}

MethodSpec LedgerGetEventsByAccount(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getEventsByAccount",
            .params = {{"account", ParamType::String, true, "address", SchemaRef("AddressInput")}, kCursor, kLimit},
            .summary = "Events of the final log that concern an account, in log order: its orders' events as seller or "
                       "buyer, its vault operations and share transfers, its reputation changes and roles.",
            .result = "{events: [{index, event, leaf}], nextCursor: string or null}",
            .result_schema = SchemaRef("EventPage"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const auto account = AddressParam(p, 0, "account");
                const uint64_t from = PositionCursor(p, 1, ledger.size()).value_or(0);
                const uint64_t limit = LimitParam(p, 2);
                const std::optional<uint64_t> after = from > 0 ? std::optional(from - 1) : std::nullopt;
                // One more than the page, to know whether there is more.
                std::vector<uint64_t> indices = ledger.AccountEvents(account, after, limit + 1);
                // Its orders' events, through the orders-by-party indexes (at most kScanMax orders).
                for (const bool as_seller : {true, false}) {
                    for (const auto& id : ledger.OrdersByParty(as_seller, account, std::nullopt, kScanMax)) {
                        const auto order = ledger.GetOrder(id, false);
                        if (!order) continue;
                        for (const auto& entry : order->history) {
                            if (entry.index >= from) indices.push_back(entry.index);
                        }
                    }
                }
                std::sort(indices.begin(), indices.end());
                indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
                json events = json::array();
                ListBudget budget(p);
                std::optional<uint64_t> next;
                for (const uint64_t index : indices) {
                    auto item = events.size() < limit ? EventItem(ledger, index) : json(nullptr);
                    if (item.is_null() || !budget.Take(item, events.size())) {
                        next = index; // the first event not given
                        break;
                    }
                    events.push_back(std::move(item));
                }
                return {{"events", events}, {"nextCursor", CursorJson(next)}};
            }};
}

MethodSpec LedgerGetEvents(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getEvents",
            .params = {{"fromIndex", ParamType::Unsigned, false, "first ledger index, inclusive (default 0; at most the "
                                                                 "log's size)"},
                       kLimit,
                       {"fromBlock", ParamType::Unsigned, false, "only EVM events of blocks from this one"},
                       {"toBlock", ParamType::Unsigned, false, "only EVM events of blocks up to this one"},
                       kCursor},
            .summary = "Events of the final log from an index on, optionally only those of an EVM block range (the "
                       "first matching index is found by binary search: the log is in block order). A cursor replaces "
                       "fromIndex.",
            .result = "{events: [{index, event, leaf}], nextCursor: string or null}",
            .result_schema = SchemaRef("EventPage"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const uint64_t size = ledger.size();
                if (p.Has(0) && p.Has(4)) throw RpcException{kInvalidParams, "give fromIndex or cursor, not both"};
                if (p.Has(0) && p.Unsigned(0) > size) {
                    throw RpcException{kNotFound, fmt::format("fromIndex {} is past the log's end ({})", p.Unsigned(0), size)};
                }
                uint64_t index = p.Has(0) ? p.Unsigned(0) : PositionCursor(p, 4, size).value_or(0);
                const uint64_t limit = LimitParam(p, 1);
                const bool by_block = p.Has(2) || p.Has(3);
                const uint64_t from_block = p.Has(2) ? p.Unsigned(2) : 0;
                const uint64_t to_block = p.Has(3) ? p.Unsigned(3) : UINT64_MAX;
                if (from_block > 0) index = FirstIndexOfBlock(ledger, index, size, from_block);
                json events = json::array();
                ListBudget budget(p);
                size_t scanned = 0;
                for (; index < size && events.size() < limit && scanned < kScanMax; ++index, ++scanned) {
                    auto item = EventItem(ledger, index);
                    if (by_block) {
                        const json& event = item.at("event");
                        if (!event.contains("origin")) continue;
                        if (event["origin"]["blockNumber"].get<uint64_t>() > to_block) {
                            index = size; // past the range: done
                            break;
                        }
                    }
                    if (!budget.Take(item, events.size())) break; // nextCursor is this event
                    events.push_back(std::move(item));
                }
                return {{"events", events}, {"nextCursor", CursorJson(index < size ? std::optional(index) : std::nullopt)}};
            }};
}

MethodSpec LedgerGetTotals(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getTotals",
            .params = {kIncludePending},
            .summary = "Totals over the projections: USDC locked in open orders, vault flows and shares, counts.",
            .result = "totals object with status",
            .result_schema = SchemaRef("Totals"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const bool pending = p.Bool(0, false);
                json out = TotalsJson(ledger.GetTotals(pending));
                out["status"] = pending ? "pending" : "final";
                return out;
            }};
}

MethodSpec LedgerGetEvent(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getEvent",
            .params = {{"index", ParamType::Unsigned, true, "ledger index, from 0"}},
            .summary = "One event of the final log with its canonical leaf bytes.",
            .result = "{index, event, leaf, status: \"final\"}; error -32001 past the end",
            .result_schema = SchemaRef("FinalEvent"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const uint64_t index = p.Unsigned(0);
                const auto leaf = ledger.GetLeaf(index);
                if (!leaf) throw RpcException{kNotFound, leaf.error()};
                const auto event = ledger::DecodeEvent(*leaf);
                if (!event) throw RpcException{kInternalError, "stored leaf does not decode: " + event.error()};
                return {{"index", index}, {"event", EventJson(*event)}, {"leaf", HexEncode0x(*leaf)}, {"status", "final"}};
            }};
}

MethodSpec LedgerGetCheckpoint(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getCheckpoint",
            .summary = "A checkpoint of the log as it is now: tree size, root and time, signed (BIP-340) with the "
                       "operator key.",
            .result = "{treeSize, root, timestamp, publicKey, signature}",
            .result_schema = SchemaRef("Checkpoint"),
            .handler = [&ledger = *context.ledger](const Params&) -> json {
                const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch());
                auto checkpoint = ledger.SignCheckpoint(static_cast<uint64_t>(now.count()));
                if (!checkpoint) throw RpcException{kNotAvailable, checkpoint.error()};
                return CheckpointJson(*checkpoint);
            }};
}

MethodSpec LedgerGetInclusionProof(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getInclusionProof",
            .params = {{"index", ParamType::Unsigned, true, "ledger index of the event"},
                       {"treeSize", ParamType::Unsigned, false, "tree size to prove against (default: the current size)"}},
            .summary = "RFC 9162 inclusion proof of an event in the tree of the given size.",
            .result = "{index, treeSize, leaf, path: [hex], root}",
            .result_schema = SchemaRef("InclusionProof"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const uint64_t size = p.Has(1) ? p.Unsigned(1) : ledger.size();
                auto proof = ledger.ProveInclusion(p.Unsigned(0), size);
                if (!proof) throw RpcException{kNotFound, proof.error()};
                json out = json::object();
                out["index"] = proof->index;
                out["treeSize"] = proof->tree_size;
                out["leaf"] = HexEncode0x(proof->leaf);
                json& path = out["path"] = json::array();
                for (const auto& node : proof->path) path.push_back(HexEncode0x(node));
                out["root"] = HexEncode0x(proof->root);
                return out;
            }};
}

MethodSpec LedgerGetConsistencyProof(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getConsistencyProof",
            .params = {{"firstSize", ParamType::Unsigned, true, "the older tree size"},
                       {"secondSize", ParamType::Unsigned, false, "the newer tree size (default: the current size)"}},
            .summary = "RFC 9162 consistency proof: the tree of firstSize is a prefix of the tree of secondSize.",
            .result = "{firstSize, secondSize, firstRoot, secondRoot, path: [hex]}",
            .result_schema = SchemaRef("ConsistencyProof"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const uint64_t first = p.Unsigned(0);
                const uint64_t second = p.Has(1) ? p.Unsigned(1) : ledger.size();
                auto proof = ledger.ProveConsistency(first, second);
                if (!proof) throw RpcException{kNotFound, proof.error()};
                auto first_root = ledger.RootAt(first);
                auto second_root = ledger.RootAt(second);
                if (!first_root || !second_root) throw RpcException{kNotFound, "no such tree size"};
                json path = json::array();
                for (const auto& node : *proof) path.push_back(HexEncode0x(node));
                return {{"firstSize", first}, {"secondSize", second}, {"firstRoot", HexEncode0x(*first_root)},
                        {"secondRoot", HexEncode0x(*second_root)}, {"path", path}};
            }};
}

MethodSpec LedgerGetProofBundle(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getProofBundle",
            .params = {{"index", ParamType::Unsigned, true, "ledger index of the event"}},
            .summary = "What an auditor needs to check one event against Bitcoin alone: the event, its leaf, an "
                       "inclusion proof to the smallest anchored tree size that holds it, a checkpoint over that size, "
                       "and the anchor (transaction, its Merkle branch, the block header and height). Before any anchor "
                       "covers the event, anchor is null and the proof goes to a freshly signed checkpoint of the whole "
                       "log. docs/auditor-guide.md gives the format byte by byte; bitacora-cli verifyproof checks it.",
            .result = "{version: 2, index, event, proof: {index, treeSize, leaf, path, root}, checkpoint, anchor: "
                      "{id, status, treeSize, root, payload, tx, txid, outputIndex, payloadOffset, txIndex, branch, header, "
                      "blockHash, blockHeight} | null}",
            .result_schema = SchemaRef("ProofBundle"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const uint64_t index = p.Unsigned(0);
                if (index >= ledger.size()) throw RpcException{kNotFound, fmt::format("no event {}", index)};
                const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch());
                const auto anchor = ledger.AnchorCovering(index);
                auto checkpoint = anchor ? ledger.SignCheckpointAt(anchor->tree_size, static_cast<uint64_t>(now.count()))
                                         : ledger.SignCheckpoint(static_cast<uint64_t>(now.count()));
                if (!checkpoint) throw RpcException{kNotAvailable, checkpoint.error()};
                auto proof = ledger.ProveInclusion(index, checkpoint->tree_size);
                if (!proof) throw RpcException{kNotFound, proof.error()};
                const auto event = ledger::DecodeEvent(proof->leaf);
                if (!event) throw RpcException{kInternalError, "stored leaf does not decode: " + event.error()};
                json path = json::array();
                for (const auto& node : proof->path) path.push_back(HexEncode0x(node));
                return {{"version", 2},
                        {"index", index},
                        {"event", EventJson(*event)},
                        {"proof", {{"index", proof->index}, {"treeSize", proof->tree_size}, {"leaf", HexEncode0x(proof->leaf)},
                                   {"path", path}, {"root", HexEncode0x(proof->root)}}},
                        {"checkpoint", CheckpointJson(*checkpoint)},
                        {"anchor", anchor ? AnchorProofJson(*anchor) : json(nullptr)}};
            }};
}

MethodSpec LedgerGetAnchors(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getAnchors",
            .params = {kCursor, kLimit},
            .summary = "Anchors in id order with their state (planned, signed, broadcast, confirmed, final, abandoned), "
                       "transactions and blocks. Each anchor in a block carries an RFC 9162 consistency proof from the "
                       "previous anchor in a block, so an auditor can check that the log only grew between them.",
            .result = "{anchors: [{id, state, treeSize, root, txid, txids, blockHeight, blockHash, consistency: "
                      "{fromAnchor, firstSize, firstRoot, secondSize, secondRoot, path} (from the previous anchor in a block, looked for among the 64 before "
                      "the page)}], nextCursor: string or null}",
            .result_schema = SchemaRef("AnchorPage"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                // Anchor ids count from 1; a cursor is the next id, after one that exists.
                const uint64_t next_id = p.Has(0) ? DecimalU64(p.String(0)).value_or(0) : 1;
                if (next_id == 0 || (next_id > 1 && !ledger.GetAnchor(next_id - 1))) {
                    throw RpcException{kInvalidParams, "cursor is not one this method returned"};
                }
                const uint64_t after = next_id - 1;
                const uint64_t limit = LimitParam(p, 1);
                // The previous proven anchor, for the first consistency proof of the page.
                std::optional<ledger::AnchorRecord> previous;
                if (after > 0) {
                    const uint64_t from = after > 64 ? after - 64 : 0;
                    for (auto& a : ledger.ListAnchors(from, after - from)) {
                        if (a.proven() && a.id <= after) previous = a;
                    }
                }
                json anchors = json::array();
                const auto page = ledger.ListAnchors(after, limit + 1); // one more: whether there is more
                ListBudget budget(p);
                std::optional<uint64_t> next;
                for (const auto& a : page) {
                    if (anchors.size() == limit) {
                        next = a.id;
                        break;
                    }
                    json item = AnchorJson(a);
                    if (a.proven()) {
                        if (previous && previous->tree_size <= a.tree_size) {
                            auto proof = ledger.ProveConsistency(previous->tree_size, a.tree_size);
                            if (proof) {
                                json path = json::array();
                                for (const auto& node : *proof) path.push_back(HexEncode0x(node));
                                // The fields of ledger_getConsistencyProof, and the anchor it starts from.
                                item["consistency"] = {{"fromAnchor", previous->id}, {"firstSize", previous->tree_size},
                                                       {"firstRoot", HexEncode0x(previous->root)},
                                                       {"secondSize", a.tree_size}, {"secondRoot", HexEncode0x(a.root)},
                                                       {"path", path}};
                            }
                        }
                    }
                    if (!budget.Take(item, anchors.size())) {
                        next = a.id;
                        break;
                    }
                    if (a.proven()) previous = a;
                    anchors.push_back(std::move(item));
                }
                return {{"anchors", anchors}, {"nextCursor", CursorJson(next)}};
            }};
}

MethodSpec LedgerGetAnchor(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_getAnchor",
            .params = {{"id", ParamType::Unsigned, true, "anchor id"}},
            .summary = "One anchor with its state and, once it is in a block, the stored proof material.",
            .result = "{id, state, treeSize, root, txid, txids, blockHeight, blockHash, proof: {...} | null}; -32001 if "
                      "unknown",
            .result_schema = SchemaRef("Anchor"),
            .handler = [&ledger = *context.ledger](const Params& p) -> json {
                const auto anchor = ledger.GetAnchor(p.Unsigned(0));
                if (!anchor) throw RpcException{kNotFound, fmt::format("no anchor {}", p.Unsigned(0))};
                json out = AnchorJson(*anchor);
                out["proof"] = AnchorProofJson(*anchor);
                return out;
            }};
}

MethodSpec AdminCheckLedger(Dispatcher&, const MethodContext& context)
{
    return {.name = "admin_checkLedger",
            .access = Access::Write,
            .summary = "Checks the whole ledger: every leaf re-read, the root and every stored Merkle node recomputed, "
                       "the high-water mark compared, the projections re-derived and their state hash compared. Reads "
                       "a snapshot (appends go on); takes about as long as -rebuild. A problem found degrades the "
                       "ledger's health.",
            .result = "{consistent, treeSize, root, recomputedRoot, nodesChecked, stateHash, derivedStateHash, "
                      "problems: [...], problemsTotal}",
            .result_schema = SchemaRef("ConsistencyReport"),
            .handler = [&ledger = *context.ledger](const Params&) -> json {
                auto report = ledger.CheckConsistency();
                if (!report) throw RpcException{kInternalError, report.error()};
                return ConsistencyReportJson(*report);
            }};
}

MethodSpec AdminBackup(Dispatcher&, const MethodContext& context)
{
    return {.name = "admin_backup",
            .access = Access::Write,
            .params = {{"dir", ParamType::String, true, "absolute path on the daemon's machine, absent or empty"},
                       {"includeKey", ParamType::Bool, false, "copy checkpoint.key beside the ledger (default true)"}},
            .summary = "Writes a consistent copy of the running ledger into dir while appends go on: dir/ledger (a "
                       "RocksDB checkpoint with its high-water mark), dir/checkpoint.key (mode 0600) and, last, "
                       "dir/BACKUP.json with the tree size and root the copy holds. Waits up to 30 s; call again "
                       "with the same dir while it answers done: false.",
            .result = "{done, dir, treeSize, root, schemaVersion, anchors, latestAnchor, highWaterMark, checkpointKey: "
                      "{included, file, publicKey}, elapsedMs, ...} (the content of BACKUP.json), or {done: false, dir, "
                      "message}; -32602 for a dir that is relative or not empty",
            .result_schema = SchemaRef("BackupResult"),
            .handler = [backup = context.backup](const Params& p) -> json {
                if (!backup) throw RpcException{kNotAvailable, "backups are not served here"};
                return backup(p.String(0), p.Bool(1, true));
            }};
}

MethodSpec AdminAnchorNow(Dispatcher&, const MethodContext& context)
{
    return {.name = "admin_anchorNow",
            .access = Access::Write,
            .summary = "Anchors the log now instead of at the next interval (when it grew since the last anchor and no "
                       "anchor is in progress), and waits up to 10 s for the transaction to be sent.",
            .result = fmt::format("{{anchored: bool, message, anchor: {{...}} | null}}; {} without a Bitcoin node "
                                  "(-btcrpcconnect)",
                                  static_cast<int>(kNotAvailable)),
            .result_schema = SchemaRef("AnchorNowResult"),
            .handler = [anchor_now = context.anchor_now](const Params&) -> json {
                if (!anchor_now) throw RpcException{kNotAvailable, "anchoring is off: no -btcrpcconnect configured"};
                return anchor_now();
            }};
}

MethodSpec LedgerSubmitEvent(Dispatcher&, const MethodContext& context)
{
    return {.name = "ledger_submitEvent",
            .access = Access::Write,
            .params = {{"kind", ParamType::String, true, "offer.posted, offer.matched, offer.cancelled or dispute.note",
                        {{"type", "string"}, {"enum", {"offer.posted", "offer.matched", "offer.cancelled", "dispute.note"}}}},
                       {"idempotencyKey", ParamType::String, true, "1 to 128 bytes; a retry with the same key and event "
                                                                   "returns the first index",
                        {{"type", "string"}, {"minLength", 1}, {"maxLength", 128}}},
                       {"payload", ParamType::Object, true, "the kind's fields, string values only",
                        {{"type", "object"}, {"additionalProperties", {{"type", "string"}}}}},
                       {"submitter", ParamType::String, true, "the backend's x-only public key (hex), one of -backendkey",
                        SchemaRef("HexInput32")},
                       {"signature", ParamType::String, true, "BIP-340 signature (hex) of the off-chain signing hash",
                        SchemaRef("HexInput64")}},
            .summary = "Appends an off-chain event of the platform's backend to the final log, once per idempotency key; "
                       "the ledger is fsynced before the answer.",
            .result = fmt::format("{{index, idempotencyKey, status: \"final\"}}; {} schema or signature, {} key reused "
                                  "for another event, {} submitter not configured",
                                  static_cast<int>(kInvalidParams), static_cast<int>(kConflict), static_cast<int>(kForbidden)),
            .result_schema = SchemaRef("SubmitResult"),
            .handler = [&ledger = *context.ledger, keys = context.backend_keys](const Params& p) -> json {
                if (keys.empty()) throw RpcException{kNotAvailable, "off-chain submission is off: no -backendkey configured"};
                ledger::OffchainEvent event;
                event.kind = p.String(0);
                event.idempotency_key = p.String(1);
                auto payload = CanonicalOffchainPayload(event.kind, p[2]);
                if (!payload) throw RpcException{kInvalidParams, payload.error()};
                event.payload.assign(payload->begin(), payload->end());
                if (!HexDecodeExact(p.String(3), event.submitter)) {
                    throw RpcException{kInvalidParams, "submitter must be a 32-byte hex x-only key"};
                }
                if (std::find(keys.begin(), keys.end(), event.submitter) == keys.end()) {
                    throw RpcException{kForbidden, "submitter is not a configured backend key (-backendkey)"};
                }
                if (!HexDecodeExact(p.String(4), event.signature)) {
                    throw RpcException{kInvalidParams, "signature must be 64 bytes of hex"};
                }
                if (event.idempotency_key.empty() || event.idempotency_key.size() > 128) {
                    throw RpcException{kInvalidParams, "idempotencyKey must be 1 to 128 bytes"};
                }
                if (!ledger::VerifySchnorr(event.submitter, ledger::OffchainSigningHash(event), event.signature)) {
                    throw RpcException{kInvalidParams, "signature does not verify for the submitter key"};
                }
                auto index = ledger.AppendOffchain(event);
                if (!index) throw RpcException{CodeOf(index.error_kind()), index.error()};
                return {{"index", *index}, {"idempotencyKey", event.idempotency_key}, {"status", "final"}};
            }};
}

MethodSpec RpcMethods(Dispatcher& d, const MethodContext&)
{
    return {.name = "rpc_methods",
            .summary = "Every method with its params, access and summary (what bitacora-cli help prints).",
            .result = "[{name, access, params: [{name, type, required, help}], summary, result}]",
            .result_schema = SchemaRef("MethodList"),
            .handler = [&d](const Params&) -> json {
                json out = json::array();
                for (const auto& m : d.methods()) {
                    json params = json::array();
                    for (const auto& p : m.params) {
                        static constexpr const char* kTypes[] = {"string", "unsigned", "bool", "object", "any"};
                        params.push_back({{"name", p.name}, {"type", kTypes[static_cast<int>(p.type)]},
                                          {"required", p.required}, {"help", p.help}});
                    }
                    out.push_back({{"name", m.name}, {"access", m.access == Access::Read ? "read" : "write"},
                                   {"params", params}, {"summary", m.summary}, {"result", m.result}});
                }
                return out;
            }};
}

// The API, one function per method, in the order rpc_methods and docs/api.md list it.
using MethodMaker = MethodSpec (*)(Dispatcher&, const MethodContext&);
constexpr MethodMaker kMethods[] = {
    &BitacoraStatus,
    &EscrowGetOrder,
    &EscrowGetReputation,
    &VaultGetPosition,
    &EscrowGetOrders,
    &EscrowGetOrderEvents,
    &LedgerGetEventsByAccount,
    &LedgerGetEvents,
    &LedgerGetTotals,
    &LedgerGetEvent,
    &LedgerGetCheckpoint,
    &LedgerGetInclusionProof,
    &LedgerGetConsistencyProof,
    &LedgerGetProofBundle,
    &LedgerGetAnchors,
    &LedgerGetAnchor,
    &AdminCheckLedger,
    &AdminBackup,
    &AdminAnchorNow,
    &LedgerSubmitEvent,
    &RpcMethods,
};

} // namespace

void RegisterMethods(Dispatcher& d, MethodContext context)
{
    for (MethodMaker make : kMethods) d.Add(make(d, context));

    // OpenRPC service discovery: rpc_discover in the namespace_method style of the rest,
    // and rpc.discover, the name OpenRPC's tools call.
    for (const char* name : {"rpc_discover", "rpc.discover"}) {
        d.Add({.name = name,
               .summary = "The OpenRPC document of this API: every method with a JSON Schema of its params and result, "
                          "and of every event kind's fields, generated from the method table (types for TypeScript, "
                          "Go, ...).",
               .result = "{openrpc, info, methods: [{name, summary, params: [{name, required, schema}], result: "
                         "{schema}}], components: {schemas}}",
               .result_schema = SchemaRef("OpenRpcDocument"),
               .handler = [&d](const Params&) -> json { return OpenRpcDocument(d); }});
    }
}

} // namespace bitacora::rpc
