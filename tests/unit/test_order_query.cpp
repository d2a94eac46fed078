// escrow_getOrders' query plan (ledger/order_query.h) on a real ledger: pages in order-id
// order that join up without a gap or a repeat, the party indexes and the state filter,
// an answer that fills up, and the orders that exist only in pending blocks.
#include "ledger/order_query.h"
#include "tests/unit/ledger_testing.h"

#include <doctest/doctest.h>

#include <set>

using namespace bitacora;
using namespace bitacora::ledger;

namespace {

struct Fixture {
    testing::TempDir dir{"order-query"};
    std::unique_ptr<Ledger> ledger;

    Fixture()
    {
        auto opened = Ledger::Open(dir.path / "db", {});
        REQUIRE(opened);
        ledger = std::move(*opened);
        std::vector<Event> events;
        for (uint64_t i = 0; i < 400; ++i) events.push_back(testing::ReferenceEvent(i)); // orders 1 to 100
        REQUIRE(ledger->Append(events, {}));
    }

    // Every match of `query`, page by page; the ids in the order they came.
    std::vector<uint64_t> AllPages(OrderQuery query)
    {
        std::vector<uint64_t> ids;
        for (int page = 0; page < 1'000; ++page) {
            const auto result = QueryOrders(*ledger, query, [&](const OrderRecord& order, bool) {
                ids.push_back(order.order_id.Low64());
                return true;
            });
            if (!result.more) break;
            query.after = result.last_scanned;
        }
        return ids;
    }
};

} // namespace

TEST_CASE("pages join up in order-id order, by id and by a party's index, with the state filter")
{
    Fixture f;
    OrderQuery query;
    query.limit = 7;
    const auto all = f.AllPages(query);
    REQUIRE(all.size() == 100);
    for (size_t i = 0; i < all.size(); ++i) CHECK(all[i] == i + 1);

    query.state = OrderState::Refunded; // the cancelled ones: every fifth
    const auto refunded = f.AllPages(query);
    CHECK(refunded.size() == 20);
    for (const auto id : refunded) CHECK(id % 5 == 0);

    query = OrderQuery{};
    query.limit = 1;
    query.seller = testing::Addr(2); // orders 1 and 98 (order % 97 + 1 == 2)
    CHECK(f.AllPages(query) == std::vector<uint64_t>{1, 98});
    query.seller.reset();
    query.buyer = testing::Addr(201); // orders 1 and 90 (order % 89 + 200 == 201)
    query.expiry_from = 1'700'000'050;
    CHECK(f.AllPages(query) == std::vector<uint64_t>{90});

    // A small scan budget only shortens pages; the cursor goes on.
    query = OrderQuery{};
    query.scan_max = 3;
    query.state = OrderState::Refunded;
    CHECK(f.AllPages(query).size() == 20);
}

TEST_CASE("an answer that fills up leaves the refused order for the next page")
{
    Fixture f;
    OrderQuery query;
    query.limit = 50;
    std::vector<uint64_t> taken;
    const auto result = QueryOrders(*f.ledger, query, [&](const OrderRecord& order, bool) {
        if (taken.size() == 3) return false;
        taken.push_back(order.order_id.Low64());
        return true;
    });
    CHECK(taken == std::vector<uint64_t>{1, 2, 3});
    CHECK(result.more);
    REQUIRE(result.last_scanned);
    CHECK(result.last_scanned->Low64() == 3);
}

TEST_CASE("orders only in pending blocks come after the last final page, and only with include_pending")
{
    Fixture f;
    Event created{testing::OriginFor(10'000), OrderCreated{UInt256(5'000), testing::Addr(7), testing::Addr(8), UInt256(1), 0}};
    Event released{testing::OriginFor(10'001), OrderReleased{UInt256(100), testing::Addr(100 % 97 + 1), testing::Addr(100 % 89 + 200), UInt256(1)}};
    REQUIRE(f.ledger->AddPendingBlock("evm", PendingBlock{created.origin->block_number, created.origin->block_hash, {created, released}}));
    OrderQuery query;
    query.limit = 1'000;
    std::vector<std::pair<uint64_t, bool>> seen;
    auto take = [&](const OrderRecord& order, bool pending) {
        seen.emplace_back(order.order_id.Low64(), pending);
        return true;
    };
    CHECK_FALSE(QueryOrders(*f.ledger, query, take).more);
    CHECK(seen.size() == 100);
    CHECK(seen.back() == std::pair<uint64_t, bool>{100, false});

    seen.clear();
    query.include_pending = true;
    CHECK_FALSE(QueryOrders(*f.ledger, query, take).more);
    REQUIRE(seen.size() == 101);
    CHECK(seen[99].first == 100);
    CHECK(seen.back() == std::pair<uint64_t, bool>{5'000, true});
    query.pending_only_max = 100; // the answer already holds 100
    seen.clear();
    QueryOrders(*f.ledger, query, take);
    CHECK(seen.size() == 100);
}
