#include "indexer/evm/pending_chain.h"

namespace bitacora::evm {

HeadDecision DecideOnHead(std::span<const PendingRef> ours, uint64_t head_number, const Hash256& head_hash)
{
    using Kind = HeadDecision::Kind;
    if (ours.empty() || head_number > ours.back().number) return {Kind::Extend};
    const uint64_t first = ours.front().number;
    const bool head_in_overlay = head_number >= first;
    const bool same_at_head = head_in_overlay && ours[head_number - first].hash == head_hash;
    if (head_number == ours.back().number) {
        if (same_at_head) return {Kind::Extend}; // up to date
        return {.kind = Kind::FindAncestor, .search_max = head_number == 0 ? 0 : head_number - 1};
    }
    // The head is below our tip: everything above it is gone.
    if (same_at_head) return {.kind = Kind::RollBack, .ancestor = head_number};
    // Below our first pending block the overlay holds nothing the node can still have.
    if (!head_in_overlay) return {.kind = Kind::FindAncestor, .search_max = first - 1};
    return {.kind = Kind::FindAncestor, .search_max = head_number - 1};
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
