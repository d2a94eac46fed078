// The pending overlay's reorg decisions (indexer/evm/pending_chain.h): a head below our
// tip is a shorter chain, seen on the poll that sees the head (issue 13: it was seen
// only once the new chain grew past the old tip).
#include "indexer/evm/pending_chain.h"
#include "tests/unit/chain_testing.h"

#include <doctest/doctest.h>

#include <vector>

using namespace bitacora;
using bitacora::testing::H;
using namespace bitacora::evm;
using Kind = HeadDecision::Kind;

namespace {

// Our overlay: blocks 151..156 of chain 'a'.
std::vector<PendingRef> Ours()
{
    std::vector<PendingRef> out;
    for (uint64_t n = 151; n <= 156; ++n) out.push_back({n, H(n, 'a')});
    return out;
}

} // namespace

TEST_CASE("a head past or at our tip on our chain extends")
{
    const auto ours = Ours();
    CHECK(DecideOnHead(ours, 157, H(157, 'a')).kind == Kind::Extend);
    CHECK(DecideOnHead(ours, 200, H(200, 'b')).kind == Kind::Extend); // checked by linkage when fetched
    CHECK(DecideOnHead(ours, 156, H(156, 'a')).kind == Kind::Extend);
    CHECK(DecideOnHead({}, 3, H(3, 'a')).kind == Kind::Extend);
}

TEST_CASE("a head below our tip asks for the block at our tip's height")
{
    CHECK(DecideOnHead(Ours(), 153, H(153, 'a')).kind == Kind::CheckTip);
    CHECK(DecideOnHead(Ours(), 153, H(153, 'b')).kind == Kind::CheckTip);
    CHECK(DecideOnHead(Ours(), 140, H(140, 'a')).kind == Kind::CheckTip);
}

TEST_CASE("our tip gone and the head ours: roll back to the head at once")
{
    // evm_revert, then 3 blocks that happen to equal ours: 154..156 are gone.
    const auto decision = DecideOnTip(Ours(), 153, H(153, 'a'), std::nullopt);
    CHECK(decision.kind == Kind::RollBack);
    CHECK(decision.ancestor == 153);
    // Replaced rather than gone: the same.
    CHECK(DecideOnTip(Ours(), 153, H(153, 'a'), H(156, 'b')).kind == Kind::RollBack);
}

TEST_CASE("our tip still there: the node's head came from behind, nothing is rolled back")
{
    CHECK(DecideOnTip(Ours(), 153, H(153, 'a'), H(156, 'a')).kind == Kind::NodeBehind);
}

TEST_CASE("our tip gone and the head another chain's: search below the head")
{
    const auto decision = DecideOnTip(Ours(), 153, H(153, 'b'), std::nullopt);
    REQUIRE(decision.kind == Kind::FindAncestor);
    CHECK(decision.search_max == 152);
    // The node has 151 and 152 as ours, 153 replaced.
    const std::map<uint64_t, Hash256> node{{151, H(151, 'a')}, {152, H(152, 'a')}};
    CHECK(CommonAncestor(Ours(), decision.search_max, node) == 152);
}

TEST_CASE("a head at our tip with another hash searches below the tip")
{
    const auto decision = DecideOnHead(Ours(), 156, H(156, 'b'));
    REQUIRE(decision.kind == Kind::FindAncestor);
    CHECK(decision.search_max == 155);
}

TEST_CASE("a head below every pending block leaves nothing to search")
{
    const auto decision = DecideOnTip(Ours(), 140, H(140, 'a'), std::nullopt);
    REQUIRE(decision.kind == Kind::FindAncestor);
    CHECK(decision.search_max == 150);
    CHECK_FALSE(CommonAncestor(Ours(), decision.search_max, {{140, H(140, 'a')}}).has_value());
}

TEST_CASE("the common ancestor: the highest block the node has with our hash, never above the bound")
{
    const auto ours = Ours();
    std::map<uint64_t, Hash256> node;
    for (uint64_t n = 151; n <= 156; ++n) node[n] = H(n, n <= 153 ? 'a' : 'b');
    CHECK(CommonAncestor(ours, 156, node) == 153);
    CHECK(CommonAncestor(ours, 152, node) == 152);
    // Heights the node lacks (gone) are no ancestor.
    CHECK(CommonAncestor(ours, 156, {{154, H(154, 'a')}}) == 154);
    CHECK_FALSE(CommonAncestor(ours, 156, {}).has_value());
    CHECK_FALSE(CommonAncestor(ours, 156, {{151, H(151, 'b')}}).has_value());
}

TEST_CASE("the final block is asked by tag, or at a depth below the head")
{
    using Q = FinalQuery::Kind;
    CHECK(DecideFinalQuery(FinalityRule::Finalized, 0, 500).tag == "finalized");
    CHECK(DecideFinalQuery(FinalityRule::Safe, 0, 500).tag == "safe");
    const auto deep = DecideFinalQuery(FinalityRule::Depth, 64, 500);
    CHECK(deep.kind == Q::Number);
    CHECK(deep.number == 436);
    CHECK(DecideFinalQuery(FinalityRule::Depth, 64, 64).number == 0);
    CHECK(DecideFinalQuery(FinalityRule::Depth, 64, 63).kind == Q::Nothing);
    CHECK(DecideFinalQuery(FinalityRule::Depth, 0, 63).kind == Q::Head);
}

TEST_CASE("finality moving over our pending blocks finalises them when the node has the same blocks")
{
    using F = FinalDecision::Kind;
    const auto ours = Ours(); // 151..156 above our final block 150
    const FinalView view{.final_number = 150, .final_hash = H(150, 'a'), .start_block = 10, .pending = ours};
    CHECK(DecideOnFinal(view, 150, H(150, 'a')).kind == F::Follow); // finality did not move
    CHECK(DecideOnFinal(view, 149, H(149, 'z')).kind == F::Follow); // a node behind: not a reason to act
    CHECK(DecideOnFinal(view, 150, H(150, 'b')).kind == F::CheckFinalBlock);
    auto decision = DecideOnFinal(view, 153, H(153, 'a'));
    CHECK(decision.kind == F::Finalize);
    CHECK(decision.up_to == 153);
    decision = DecideOnFinal(view, 153, H(153, 'b')); // our 153 was replaced before it became final
    CHECK(decision.kind == F::FindAncestor);
    CHECK(decision.search_max == 152);
    CHECK(DecideOnFinal(view, 170, H(170, 'a')).kind == F::AskTip); // past our tip: is our tip in its chain?
    decision = DecideOnFinalTip(view, H(156, 'a'));
    CHECK(decision.kind == F::Finalize);
    CHECK(decision.up_to == 156);
    decision = DecideOnFinalTip(view, H(156, 'b'));
    CHECK(decision.kind == F::FindAncestor);
    CHECK(decision.search_max == 155);

    const FinalView empty{.final_number = 150, .final_hash = H(150, 'a'), .start_block = 10, .pending = {}};
    CHECK(DecideOnFinal(empty, 170, H(170, 'a')).kind == F::CatchUp);
    // Before the start block nothing is followed; before any final block there is nothing to check.
    const FinalView fresh{.final_number = 99, .final_hash = std::nullopt, .start_block = 100, .pending = {}};
    CHECK(DecideOnFinal(fresh, 99, H(99, 'x')).kind == F::Follow);
    CHECK(DecideOnFinal(fresh, 100, H(100, 'x')).kind == F::CatchUp);
}

TEST_CASE("the next heights to fetch stop at the head, the overlay's limit and one batch")
{
    auto range = NextPendingRange(156, 150, 500, 1'000, 50);
    CHECK(range.from == 157);
    CHECK(range.to == 206); // one batch
    CHECK(range.cut);
    range = NextPendingRange(156, 150, 160, 1'000, 50);
    CHECK(range.to == 160); // the head
    CHECK_FALSE(range.cut);
    range = NextPendingRange(156, 150, 500, 8, 50);
    CHECK(range.to == 158); // the overlay holds at most 8 blocks above the final one
    CHECK_FALSE(range.cut);
    CHECK_FALSE(NextPendingRange(156, 150, 206, 1'000, 50).cut); // the batch ends at the head
    CHECK(NextPendingRange(156, 150, 156, 1'000, 50).empty());
    CHECK(NextPendingRange(158, 150, 500, 8, 50).empty());
}

TEST_CASE("fetched headers must link to our tip and to each other")
{
    using L = LinkDecision::Kind;
    std::vector<HeaderLink> headers;
    for (uint64_t n = 157; n <= 160; ++n) headers.push_back({n, H(n, 'a'), H(n - 1, 'a')});
    auto link = LinkToTip(H(156, 'a'), false, headers);
    CHECK(link.kind == L::Linked);
    CHECK(link.linked == 4);
    // The node moved inside the batch: the linked prefix is kept, the rest asked again.
    headers[2] = {159, H(159, 'b'), H(158, 'b')};
    link = LinkToTip(H(156, 'a'), false, headers);
    CHECK(link.kind == L::Linked);
    CHECK(link.linked == 2);
    // Our tip was replaced: a reorg; with nothing pending, our final block is checked.
    CHECK(LinkToTip(H(156, 'b'), false, headers).kind == L::TipReplaced);
    CHECK(LinkToTip(H(156, 'b'), true, headers).kind == L::FinalMoved);
    // Before any final block, the first header links to anything.
    CHECK(LinkToTip(std::nullopt, true, std::span(headers).first(2)).linked == 2);
    CHECK(LinkToTip(H(156, 'a'), false, {}).linked == 0);
}

TEST_CASE("ancestor search: a few blocks first, then twice as many each step, within the batch limit")
{
    CHECK(AncestorSearchBatch(0, 100) == 4);
    CHECK(AncestorSearchBatch(4, 100) == 4);   // 8 asked in all
    CHECK(AncestorSearchBatch(8, 100) == 8);   // 16
    CHECK(AncestorSearchBatch(16, 100) == 16); // 32
    CHECK(AncestorSearchBatch(64, 100) == 64);
    CHECK(AncestorSearchBatch(128, 100) == 100);
    CHECK(AncestorSearchBatch(0, 2) == 2);
    CHECK(AncestorSearchBatch(0, 0) == 1); // never a step that asks nothing
}
