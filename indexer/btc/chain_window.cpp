#include "indexer/btc/chain_window.h"

#include <algorithm>
#include <cassert>

namespace bitacora::btc {

std::optional<uint64_t> StartBase(int64_t start_height, uint64_t node_blocks)
{
    int64_t start = start_height < 0 ? static_cast<int64_t>(node_blocks) + 1 : start_height;
    start = std::max<int64_t>(start, 1); // the first block followed is after some block: at least 1
    const uint64_t base = static_cast<uint64_t>(start - 1);
    if (base > node_blocks) return std::nullopt;
    return base;
}

void ChainWindow::Reset(ChainTip tip)
{
    m_blocks.clear();
    m_blocks.push_back(tip);
}

ChainWindow::Walk ChainWindow::BeforeAsking(uint64_t best_height) const
{
    assert(!empty());
    return tip().height > best_height ? Walk::Disconnect : Walk::Ask; // above the node's best: not on it
}

ChainWindow::Walk ChainWindow::AfterAsking(const std::optional<Hash256>& at_height) const
{
    assert(!empty());
    return at_height && *at_height == tip().hash ? Walk::OnBest : Walk::Disconnect;
}

std::optional<ChainTip> ChainWindow::Parent() const
{
    if (m_blocks.size() < 2) return std::nullopt;
    return m_blocks[m_blocks.size() - 2];
}

void ChainWindow::Connect(ChainTip next)
{
    assert(!empty() && next.height == tip().height + 1);
    m_blocks.push_back(next);
    while (m_blocks.size() > m_blocks_max) m_blocks.pop_front();
    AssertChained();
}

void ChainWindow::Disconnect(ChainTip parent)
{
    assert(!empty() && tip().height > 0 && parent.height == tip().height - 1);
    assert(m_blocks.size() < 2 || m_blocks[m_blocks.size() - 2] == parent);
    m_blocks.pop_back();
    if (m_blocks.empty()) m_blocks.push_back(parent);
    AssertChained();
}

// Each change touches the tip only, so checking the tip against its parent keeps the
// whole window chained by height.
void ChainWindow::AssertChained() const
{
    assert(!m_blocks.empty());
    assert(m_blocks.size() < 2 || m_blocks.back().height == m_blocks[m_blocks.size() - 2].height + 1);
}

} // namespace bitacora::btc
