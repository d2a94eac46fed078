// escrow_getOrders' query plan: which orders a filtered page looks at and in what order
// (the seller's or buyer's index, or every order by id), with the pending view joined in
// and, after the last final page, the orders that exist only in pending blocks. The API
// shapes each order and says when its answer is full; the plan stays here, beside the
// indexes it reads.
#pragma once

#include "ledger/ledger.h"

#include <cstddef>
#include <functional>
#include <optional>

namespace bitacora::ledger {

struct OrderQuery {
    std::optional<Address> seller; // by the seller's index (seller wins over buyer)
    std::optional<Address> buyer;  // by the buyer's index
    std::optional<OrderState> state;
    std::optional<uint64_t> expiry_from; // unix seconds, inclusive
    std::optional<uint64_t> expiry_to;
    std::optional<UInt256> after; // the last order id already given
    size_t limit{100};
    size_t scan_max{10'000};      // final orders looked at per call; the cursor goes on
    size_t pending_only_max{1'000}; // orders that exist only in pending blocks, per answer
    bool include_pending{false};
};

struct OrderQueryResult {
    std::optional<UInt256> last_scanned; // the last final order looked at
    bool more{false};                    // the next page starts after last_scanned
};

// Calls `take` for each match in order-id order (`pending`: the pending blocks change the
// order, or it exists only in them); `take` returns false when the answer is full, and the
// order it refused is not counted as looked at.
OrderQueryResult QueryOrders(Ledger& ledger, const OrderQuery& query,
                             const std::function<bool(const OrderRecord& order, bool pending)>& take);

} // namespace bitacora::ledger
