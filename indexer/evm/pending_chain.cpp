#include "indexer/evm/pending_chain.h"

#include "common/mutation.h"

#include <algorithm>
#include <cassert>

namespace bitacora::evm {
namespace {

// Our pending block at `up_to` against the node's final block there.
FinalDecision CompareFinal(const FinalView& view, uint64_t up_to, const Hash256& node_hash)
{
    using Kind = FinalDecision::Kind;
    assert(!view.pending.empty() && up_to >= view.pending.front().number && up_to <= view.pending.back().number);
    if (view.pending[up_to - view.pending.front().number].hash != node_hash) {
        return {.kind = Kind::FindAncestor, .search_max = up_to - 1};
    }
    return {.kind = Kind::Finalize, .up_to = up_to};
}

} // namespace

FinalQuery DecideFinalQuery(FinalityRule rule, uint64_t depth, uint64_t head_number)
{
    using Kind = FinalQuery::Kind;
    if (sim::Mutated(sim::Mutation::AppendBeforeFinality)) return {.kind = Kind::Head};
    switch (rule) {
    case FinalityRule::Finalized: return {.kind = Kind::Tag, .tag = "finalized"};
    case FinalityRule::Safe: return {.kind = Kind::Tag, .tag = "safe"};
    case FinalityRule::Depth:
        if (head_number < depth) return {.kind = Kind::Nothing};
        if (depth == 0) return {.kind = Kind::Head};
        return {.kind = Kind::Number, .number = head_number - depth};
    }
    return {.kind = Kind::Nothing};
}

FinalDecision DecideOnFinal(const FinalView& view, uint64_t node_final_number, const Hash256& node_final_hash)
{
    using Kind = FinalDecision::Kind;
    // Invariant: the pending blocks are the ones right above the final block.
    assert(view.pending.empty() || view.pending.front().number == view.final_number + 1);
    if (view.final_hash && node_final_number == view.final_number && node_final_hash != *view.final_hash) {
        return {.kind = Kind::CheckFinalBlock};
    }
    if (node_final_number <= view.final_number || node_final_number < view.start_block) return {.kind = Kind::Follow};
    if (view.pending.empty()) return {.kind = Kind::CatchUp};
    if (node_final_number > view.pending.back().number) return {.kind = Kind::AskTip};
    return CompareFinal(view, node_final_number, node_final_hash);
}

FinalDecision DecideOnFinalTip(const FinalView& view, const Hash256& node_hash_at_tip)
{
    assert(!view.pending.empty());
    return CompareFinal(view, view.pending.back().number, node_hash_at_tip);
}

BlockRange NextPendingRange(uint64_t tip_number, uint64_t final_number, uint64_t head_number,
                            uint64_t pending_blocks_max, uint64_t batch_max)
{
    assert(tip_number >= final_number && batch_max > 0);
    const uint64_t from = tip_number + 1;
    const uint64_t end = std::min(head_number, final_number + pending_blocks_max);
    const uint64_t batch_end = from + batch_max - 1;
    return BlockRange{.from = from, .to = std::min(end, batch_end), .cut = batch_end < end};
}

LinkDecision LinkToTip(const std::optional<Hash256>& parent, bool pending_empty, std::span<const HeaderLink> headers)
{
    std::optional<Hash256> expected = parent;
    size_t linked = 0;
    for (const auto& header : headers) {
        assert(linked == 0 || header.number == headers[linked - 1].number + 1);
        if (expected && header.parent_hash != *expected && !sim::Mutated(sim::Mutation::SkipParentCheck)) {
            if (linked > 0) break;
            return {.kind = pending_empty ? LinkDecision::Kind::FinalMoved : LinkDecision::Kind::TipReplaced};
        }
        expected = header.hash;
        ++linked;
    }
    return {.kind = LinkDecision::Kind::Linked, .linked = linked};
}

HeadDecision DecideOnHead(std::span<const PendingRef> ours, uint64_t head_number, const Hash256& head_hash)
{
    using Kind = HeadDecision::Kind;
    if (ours.empty() || head_number > ours.back().number) return {Kind::Extend};
    if (head_number < ours.back().number) return {Kind::CheckTip};
    if (ours.back().hash == head_hash) return {Kind::Extend}; // up to date
    return {.kind = Kind::FindAncestor, .search_max = head_number == 0 ? 0 : head_number - 1};
}

HeadDecision DecideOnTip(std::span<const PendingRef> ours, uint64_t head_number, const Hash256& head_hash,
                         const std::optional<Hash256>& at_tip)
{
    using Kind = HeadDecision::Kind;
    if (ours.empty() || head_number >= ours.back().number) return DecideOnHead(ours, head_number, head_hash);
    if (at_tip && *at_tip == ours.back().hash) return {Kind::NodeBehind};
    const uint64_t first = ours.front().number;
    // Below our first pending block the overlay holds nothing the node can still have.
    if (head_number < first) return {.kind = Kind::FindAncestor, .search_max = first - 1};
    if (ours[head_number - first].hash == head_hash) return {.kind = Kind::RollBack, .ancestor = head_number};
    return {.kind = Kind::FindAncestor, .search_max = head_number == 0 ? 0 : head_number - 1};
}

size_t AncestorSearchBatch(size_t asked, size_t batch_max)
{
    constexpr size_t kFirstBatch = 4;
    return std::max<size_t>(1, std::min(batch_max, std::max(kFirstBatch, asked)));
}

std::optional<uint64_t> CommonAncestor(std::span<const PendingRef> ours, uint64_t search_max,
                                       const std::map<uint64_t, Hash256>& node)
{
    for (size_t i = ours.size(); i > 0; --i) {
        const PendingRef& block = ours[i - 1];
        if (block.number > search_max) continue;
        const auto found = node.find(block.number);
        if (found != node.end() && found->second == block.hash) return block.number;
    }
    return std::nullopt;
}

} // namespace bitacora::evm
