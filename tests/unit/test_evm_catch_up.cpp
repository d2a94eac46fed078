// The catch-up's decisions (indexer/evm/catch_up.h): range sizing, what a refused
// eth_getLogs means, which headers a range needs and how they are cross-checked.
#include "indexer/evm/catch_up.h"
#include "tests/unit/chain_testing.h"

#include <doctest/doctest.h>

using namespace bitacora;
using namespace bitacora::evm;
using bitacora::testing::H;

TEST_CASE("the range grows toward the logs target, at most 2x a step, up to its maximum")
{
    RangeSizer sizer(10, 1'000, 1'000, 50);
    CHECK(sizer.blocks() == 10);
    CHECK(sizer.AfterSuccess(10, 0) == 20);      // no logs: doubles
    CHECK(sizer.AfterSuccess(20, 10) == 40);     // aims at 2,000 blocks, grows 2x only
    CHECK(sizer.AfterSuccess(40, 4'000) == 10);  // ten times too many logs: a tenth
    for (int i = 0; i < 20; ++i) sizer.AfterSuccess(sizer.blocks(), 0);
    CHECK(sizer.blocks() == 1'000);
    CHECK(sizer.AfterSuccess(1'000, 1'000'000) == 1); // never below one block
    CHECK(RangeSizer(5'000, 100, 1'000, 50).blocks() == 100);
}

TEST_CASE("a stated limit is a ceiling for good; a bare 'too much' only for a while")
{
    RangeSizer stated(100, 10'000, 1'000, 3);
    CHECK(stated.Shrink(50, /*stated=*/true) == 50);
    for (int i = 0; i < 10; ++i) stated.AfterSuccess(stated.blocks(), 0);
    CHECK(stated.blocks() == 50);

    RangeSizer soft(100, 10'000, 1'000, 3);
    CHECK(soft.Shrink(40, /*stated=*/false) == 40);
    CHECK(soft.AfterSuccess(40, 0) == 40); // held at the soft ceiling
    CHECK(soft.AfterSuccess(40, 0) == 40);
    CHECK(soft.AfterSuccess(40, 0) == 80); // the third success in a row lifts it
    CHECK(soft.Shrink(0, false) == 1);     // a limit of nothing still asks for one block
}

TEST_CASE("a refused eth_getLogs shrinks the range only when the refusal is about its size")
{
    using K = LogsRefusal::Kind;
    CHECK(OnLogsTooLarge(100, /*cut_off=*/true).kind == K::Shrink);
    CHECK(OnLogsTooLarge(100, true).blocks == 50);
    CHECK(OnLogsTooLarge(1, true).kind == K::Retry);   // one block cannot be asked for in less
    CHECK(OnLogsTooLarge(1, false).kind == K::Shrink); // too many logs: stays at one block
    CHECK(OnLogsTooLarge(1, false).blocks == 1);

    const LogsRefusal named = OnLogsError("maximum [from, to] blocks distance: 2500", 5'000);
    CHECK(named.kind == K::Shrink);
    CHECK(named.blocks == 2'500);
    CHECK(named.stated);
    CHECK(OnLogsError("maximum block range: 50000", 5'000).blocks == 5'000); // never grows here
    const LogsRefusal halve = OnLogsError("logs matched by query exceeds limit of 10000", 5'000);
    CHECK(halve.kind == K::Shrink);
    CHECK(halve.blocks == 2'500);
    CHECK_FALSE(halve.stated);
    CHECK(OnLogsError("header not found", 5'000).kind == K::Retry);
}

TEST_CASE("a range needs the headers of its ends, the block after it and each block with a log")
{
    std::vector<Log> logs(2);
    logs[0].block_number = 105;
    logs[1].block_number = 107;
    auto wanted = HeadersWanted(100, 110, 200, false, logs);
    REQUIRE(wanted);
    CHECK(*wanted == std::vector<uint64_t>{100, 105, 107, 110, 111});
    // At the final block there is no child to ask for; receipts mode asks for every block.
    wanted = HeadersWanted(100, 103, 103, true, {});
    REQUIRE(wanted);
    CHECK(*wanted == std::vector<uint64_t>{100, 101, 102, 103});
    logs[1].block_number = 111;
    CHECK_FALSE(HeadersWanted(100, 110, 200, false, logs));
}

namespace {
std::map<uint64_t, BlockHeader> Chain(uint64_t from, uint64_t to, uint8_t letter)
{
    std::map<uint64_t, BlockHeader> headers;
    for (uint64_t n = from; n <= to; ++n) {
        headers[n] = BlockHeader{.number = n, .hash = H(n, letter), .parent_hash = H(n - 1, letter)};
    }
    return headers;
}
} // namespace

TEST_CASE("a range's headers are checked against its child, each other and the final block")
{
    using K = RangeCheck::Kind;
    const BlockHeader target{.number = 120, .hash = H(120, 'a')};
    auto headers = Chain(100, 111, 'a');
    CHECK(CheckRangeHeaders(100, 110, target, headers, true).kind == K::Ok);
    headers[111].parent_hash = H(110, 'b'); // the child says its parent is another block
    CHECK(CheckRangeHeaders(100, 110, target, headers, false).kind == K::Inconsistent);

    std::map<uint64_t, BlockHeader> broken = Chain(100, 111, 'a');
    broken[105].parent_hash = H(104, 'b');
    CHECK(CheckRangeHeaders(100, 110, target, broken, true).kind == K::Inconsistent);
    CHECK(CheckRangeHeaders(100, 110, target, broken, false).kind == K::Ok); // only receipts mode links every block

    // The range ends at the final block, and the node's own header there differs.
    const BlockHeader other_final{.number = 110, .hash = H(110, 'b')};
    const RangeCheck disputed = CheckRangeHeaders(100, 110, other_final, Chain(100, 110, 'a'), false);
    CHECK(disputed.kind == K::Disputed);
    CHECK(disputed.why.find("final") != std::string::npos);
}
