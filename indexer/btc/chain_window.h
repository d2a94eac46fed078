// The Bitcoin follower's decisions, apart from its effects: the window of the last blocks
// it processed (tip last) and what the node's answers mean for it. The follower asks the
// node and moves the ledger's cursor; this decides where to start, whether our tip is still
// on the best chain, and whether a block extends it. No I/O here, so each case is
// unit-tested and the window's chaining is asserted.
#pragma once

#include "common/sha256.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

namespace bitacora::btc {

struct ChainTip {
    uint64_t height{0};
    Hash256 hash{};
    bool operator==(const ChainTip&) const = default;
};

// The block after which a first start follows the chain: -btcstartheight minus one, or
// the node's tip when it is negative (only new blocks); nullopt when the start height is
// above the node's chain (wait for it).
std::optional<uint64_t> StartBase(int64_t start_height, uint64_t node_blocks);

class ChainWindow {
public:
    explicit ChainWindow(size_t blocks_max) : m_blocks_max(blocks_max) {}

    bool empty() const { return m_blocks.empty(); }
    const ChainTip& tip() const { return m_blocks.back(); }
    void Reset(ChainTip tip);

    // Walking back over a reorg, one tip at a time.
    enum class Walk {
        OnBest,     // the node's best chain holds our tip: stop walking
        Disconnect, // it does not: disconnect our tip
        Ask,        // ask the node for its hash at our tip's height, then AfterAsking
    };
    Walk BeforeAsking(uint64_t best_height) const;
    // `at_height`: the node's hash at our tip's height (nullopt: it has no block there).
    Walk AfterAsking(const std::optional<Hash256>& at_height) const;
    // The tip's parent, when the window holds it (else the node is asked for it).
    std::optional<ChainTip> Parent() const;

    // Whether a block whose parent is `prev` extends our tip (else a reorg happened
    // between the node's answers: walk back on the next pass).
    bool Extends(const Hash256& prev) const { return !empty() && prev == tip().hash; }
    void Connect(ChainTip next);
    void Disconnect(ChainTip parent);

private:
    void AssertChained() const;

    std::deque<ChainTip> m_blocks;
    size_t m_blocks_max;
};

} // namespace bitacora::btc
