// Decisions about the pending overlay's chain: which block the node calls final and what
// that does to the blocks we hold, what the node's head says of them, and which of them is
// the common ancestor after a reorg. Observations in, actions out: no I/O here (the
// follower fetches, these decide), so the cases are unit-tested.
#pragma once

#include "common/sha256.h"

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string_view>

namespace bitacora::evm {

// How a block becomes final (-evmfinality): the node's "finalized" or "safe" tag, or a
// number of blocks below its head.
enum class FinalityRule { Finalized, Safe, Depth };

// How to ask the node for its final block, given its head.
struct FinalQuery {
    enum class Kind {
        Tag,     // the header of block tag `tag`
        Number,  // the header at height `number`
        Head,    // the head itself (a depth of 0)
        Nothing, // the chain is shorter than the depth: nothing is final yet
    };
    Kind kind{Kind::Tag};
    std::string_view tag;
    uint64_t number{0};
};
FinalQuery DecideFinalQuery(FinalityRule rule, uint64_t depth, uint64_t head_number);

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

// What we hold: the final block (the ledger's cursor) and the pending blocks above it.
struct FinalView {
    uint64_t final_number{0};          // start_block - 1 before any block is final
    std::optional<Hash256> final_hash; // nullopt before any block is final
    uint64_t start_block{0};
    std::span<const PendingRef> pending; // final_number + 1, final_number + 2, ...
};

struct FinalDecision {
    enum class Kind {
        CheckFinalBlock, // the node has another block at our final height: confirm it, or stop
        Finalize,        // our pending blocks up to `up_to` are the node's: make them final
        AskTip,          // the node finalised past our tip: ask its hash at our tip's height
        FindAncestor,    // our pending block at the final height is not the node's: reorg,
                         // the common ancestor at or below `search_max`
        CatchUp,         // we hold no pending block: catch up over final ranges to the node's
        Follow,          // finality did not move: follow the unfinalised blocks to the head
    };
    Kind kind{Kind::Follow};
    uint64_t up_to{0};
    uint64_t search_max{0};
};

// On each poll, from the node's final block (its number and hash).
FinalDecision DecideOnFinal(const FinalView& view, uint64_t node_final_number, const Hash256& node_final_hash);
// After AskTip: the node's hash at our pending tip's height (a final height for it).
FinalDecision DecideOnFinalTip(const FinalView& view, const Hash256& node_hash_at_tip);

// The heights to fetch after our tip (the pending tip, or the final block when nothing is
// pending): up to the head, the overlay's limit above the final block, and one batch.
struct BlockRange {
    uint64_t from{0};
    uint64_t to{0};
    bool cut{false}; // the batch ended it before the head or the limit: fetch on at once
    bool empty() const { return from > to; }
};
BlockRange NextPendingRange(uint64_t tip_number, uint64_t final_number, uint64_t head_number,
                            uint64_t pending_blocks_max, uint64_t batch_max);

// A fetched header, as linkage sees it.
struct HeaderLink {
    uint64_t number{0};
    Hash256 hash{};
    Hash256 parent_hash{};
};

struct LinkDecision {
    enum class Kind {
        Linked,      // the first `linked` headers extend our tip, each its predecessor (a
                     // break later in the batch is the node moving: the rest is asked again)
        TipReplaced, // the first does not link to our pending tip: a reorg at our tip
        FinalMoved,  // nothing is pending and the first does not link to our final block
    };
    Kind kind{Kind::Linked};
    size_t linked{0};
};
// `parent`: our tip's hash (nullopt before any block: anything links). `headers`: the
// heights after our tip, in order, as far as the node answered them without a gap.
LinkDecision LinkToTip(const std::optional<Hash256>& parent, bool pending_empty, std::span<const HeaderLink> headers);

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

// How many of our blocks the next step of an ancestor search asks about, when `asked`
// were asked before: a few first (most reorgs replace a block or two), then twice as
// many each step, up to `batch_max`. Asking for all of them at once fetched every
// pending header again at each shallow reorg.
size_t AncestorSearchBatch(size_t asked, size_t batch_max);

// The highest of our blocks at or below `search_max` that the node has with the same hash
// (`node`: the hashes it gave by height; a height it lacks is gone). nullopt: none of the
// blocks asked about is still there.
std::optional<uint64_t> CommonAncestor(std::span<const PendingRef> ours, uint64_t search_max,
                                       const std::map<uint64_t, Hash256>& node);

} // namespace bitacora::evm
