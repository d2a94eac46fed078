#include "indexer/evm/pending_chain.h"

namespace bitacora::evm {

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
