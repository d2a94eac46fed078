#include "ledger/order_query.h"

#include <algorithm>
#include <variant>

namespace bitacora::ledger {
namespace {

constexpr size_t kScanBatchMax = 256; // orders read from an index at a time

bool Matches(const OrderQuery& q, const OrderRecord& o)
{
    return (!q.seller || o.seller == *q.seller) && (!q.buyer || o.buyer == *q.buyer) && (!q.state || o.state == *q.state) &&
           (!q.expiry_from || o.expiry >= *q.expiry_from) && (!q.expiry_to || o.expiry <= *q.expiry_to);
}

// The next final orders after `after`, from the party's index or by id.
std::vector<OrderRecord> Candidates(Ledger& ledger, const OrderQuery& q, const std::optional<UInt256>& after, size_t count)
{
    if (!q.seller && !q.buyer) return ledger.OrdersAfter(after, count);
    std::vector<OrderRecord> out;
    for (const auto& id : ledger.OrdersByParty(q.seller.has_value(), q.seller ? *q.seller : *q.buyer, after, count)) {
        if (auto order = ledger.GetOrder(id, false)) out.push_back(std::move(*order));
    }
    return out;
}

// The orders created in pending blocks and not final yet, after the final pages.
void PendingOnly(Ledger& ledger, const OrderQuery& q, size_t given,
                 const std::function<bool(const OrderRecord&, bool)>& take)
{
    std::vector<UInt256> created;
    for (const auto& block : ledger.GetPending("evm")) {
        for (const auto& event : block.events) {
            if (const auto* e = std::get_if<OrderCreated>(&event.body)) created.push_back(e->order_id);
        }
    }
    std::sort(created.begin(), created.end());
    for (const auto& id : created) {
        if (given >= q.pending_only_max) return; // bounded; they become final (and paged) soon
        if ((q.after && !(*q.after < id)) || ledger.GetOrder(id, false)) continue;
        const auto order = ledger.GetOrder(id, true);
        if (!order || !Matches(q, *order)) continue;
        if (!take(*order, true)) return;
        ++given;
    }
}

} // namespace

OrderQueryResult QueryOrders(Ledger& ledger, const OrderQuery& q, const std::function<bool(const OrderRecord&, bool)>& take)
{
    OrderQueryResult result;
    size_t given = 0;
    size_t scanned = 0;
    bool exhausted = false;
    bool full = false; // `take` refused: the cursor stays before that order
    while (given < q.limit && scanned < q.scan_max && !exhausted && !full) {
        const size_t batch = std::min(q.scan_max - scanned, kScanBatchMax);
        const auto candidates = Candidates(ledger, q, result.last_scanned ? result.last_scanned : q.after, batch);
        exhausted = candidates.size() < batch;
        for (const auto& order : candidates) {
            std::optional<OrderRecord> pending_view;
            if (q.include_pending) pending_view = ledger.GetOrder(order.order_id, true);
            const OrderRecord& shown = pending_view ? *pending_view : order;
            if (Matches(q, shown)) {
                if (!take(shown, pending_view && pending_view->Encode() != order.Encode())) {
                    full = true;
                    break;
                }
                ++given;
            }
            ++scanned;
            result.last_scanned = order.order_id;
            if (given == q.limit) break;
        }
    }
    result.more = full || !exhausted || (result.last_scanned && given == q.limit);
    if (!result.more && q.include_pending) PendingOnly(ledger, q, given, take);
    return result;
}

} // namespace bitacora::ledger
