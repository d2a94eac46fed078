// Decisions about the pending overlay's chain: what the node's head says of the blocks we
// hold, and which of them is the common ancestor after a reorg. Observations in, actions
// out: no I/O here (the follower fetches, these decide), so the cases are unit-tested.
#pragma once

#include "common/sha256.h"

#include <cstdint>
#include <map>
#include <optional>
#include <span>

namespace bitacora::evm {

// One block of the pending overlay, in height order without gaps.
struct PendingRef {
    uint64_t number{0};
    Hash256 hash{};
};

struct HeadDecision {
    enum class Kind {
        Extend,       // the head is at or past our tip on our chain (or we hold nothing): go on
        CheckTip,     // the head is below our tip: ask the node for the block at our tip's height
        NodeBehind,   // the node still has our tip: its "latest" answer came from behind (a
                      // load balancer's lagging node); keep our blocks and poll again
        RollBack,     // roll back to `ancestor` now: the node's chain is shorter and holds it
        FindAncestor, // our blocks above `search_max` are gone or replaced: find the ancestor
                      // among our blocks at or below `search_max` (none: the final block)
    };
    Kind kind{Kind::Extend};
    uint64_t ancestor{0};
    uint64_t search_max{0};
};

// On each poll, from the node's head. A head at our tip with another hash replaced our
// tip; a head past our tip is checked when its blocks are fetched (they must link to our
// tip); a head below our tip asks for the block at our tip's height (DecideOnTip), so
// that a reorg onto a shorter chain is seen on this poll, not when the new chain grows
// past the old tip.
HeadDecision DecideOnHead(std::span<const PendingRef> ours, uint64_t head_number, const Hash256& head_hash);

// After CheckTip: `at_tip` is the node's hash at our tip's height, nullopt if it has no
// block there (gone). Our tip gone or replaced: everything above the head is gone.
HeadDecision DecideOnTip(std::span<const PendingRef> ours, uint64_t head_number, const Hash256& head_hash,
                         const std::optional<Hash256>& at_tip);

// The highest of our blocks at or below `search_max` that the node has with the same hash
// (`node`: the hashes it gave by height; a height it lacks is gone). nullopt: none of the
// blocks asked about is still there.
std::optional<uint64_t> CommonAncestor(std::span<const PendingRef> ours, uint64_t search_max,
                                       const std::map<uint64_t, Hash256>& node);

} // namespace bitacora::evm
