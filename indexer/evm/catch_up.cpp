#include "indexer/evm/catch_up.h"

#include "common/hex.h"
#include "indexer/evm/range_limit.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <set>

namespace bitacora::evm {

RangeSizer::RangeSizer(uint64_t initial_blocks, uint64_t max_blocks, size_t logs_target, uint64_t soft_ceiling_successes)
    : m_blocks(std::clamp<uint64_t>(initial_blocks, 1, std::max<uint64_t>(1, max_blocks))),
      m_max_blocks(std::max<uint64_t>(1, max_blocks)), m_logs_target(std::max<size_t>(1, logs_target)),
      m_soft_ceiling_successes(soft_ceiling_successes)
{
}

uint64_t RangeSizer::AfterSuccess(uint64_t blocks, size_t logs)
{
    const uint64_t aimed = logs == 0 ? blocks * 2 : blocks * m_logs_target / logs;
    if (++m_successes >= m_soft_ceiling_successes) m_soft_ceiling_blocks = UINT64_MAX;
    const uint64_t ceiling = std::min({m_max_blocks, m_ceiling_blocks, m_soft_ceiling_blocks});
    m_blocks = std::clamp<uint64_t>(std::min(aimed, m_blocks * 2), 1, ceiling);
    return m_blocks;
}

uint64_t RangeSizer::Shrink(uint64_t blocks, bool stated)
{
    blocks = std::max<uint64_t>(1, blocks);
    if (stated) {
        m_ceiling_blocks = blocks;
    } else {
        m_soft_ceiling_blocks = blocks;
        m_successes = 0;
    }
    m_blocks = std::min(m_blocks, blocks);
    assert(m_blocks >= 1);
    return m_blocks;
}

LogsRefusal OnLogsTooLarge(uint64_t blocks, bool cut_off)
{
    // A cut-off single block cannot be asked for in less: retried as it is.
    if (cut_off && blocks <= 1) return {};
    return {.kind = LogsRefusal::Kind::Shrink, .blocks = std::max<uint64_t>(1, blocks / 2)};
}

LogsRefusal OnLogsError(std::string_view message, uint64_t blocks)
{
    const RangeAdvice advice = AdviseLogRange(message, blocks);
    switch (advice.kind) {
    case RangeAdvice::Kind::Blocks:
        return {.kind = LogsRefusal::Kind::Shrink, .blocks = std::clamp<uint64_t>(advice.blocks, 1, blocks), .stated = true};
    case RangeAdvice::Kind::Halve: return {.kind = LogsRefusal::Kind::Shrink, .blocks = std::max<uint64_t>(1, blocks / 2)};
    case RangeAdvice::Kind::NotRangeError: break;
    }
    return {};
}

Result<std::vector<uint64_t>> HeadersWanted(uint64_t from, uint64_t to, uint64_t target_number, bool every_block,
                                            std::span<const Log> logs)
{
    std::set<uint64_t> wanted{from, to};
    if (to < target_number) wanted.insert(to + 1);
    if (every_block) {
        for (uint64_t n = from + 1; n < to; ++n) wanted.insert(n);
    }
    for (const auto& log : logs) {
        if (log.block_number < from || log.block_number > to) {
            return Error{fmt::format("eth_getLogs {}..{} returned a log of block {}", from, to, log.block_number)};
        }
        wanted.insert(log.block_number);
    }
    return std::vector<uint64_t>(wanted.begin(), wanted.end());
}

RangeCheck CheckRangeHeaders(uint64_t from, uint64_t to, const BlockHeader& target,
                             const std::map<uint64_t, BlockHeader>& headers, bool every_block)
{
    using Kind = RangeCheck::Kind;
    if (to < target.number && headers.at(to + 1).parent_hash != headers.at(to).hash) {
        return {Kind::Inconsistent, fmt::format("block {} is not the parent of block {}", to, to + 1)};
    }
    if (to == target.number && headers.at(to).hash != target.hash) {
        // Either answer may be the wrong one.
        return {Kind::Disputed, fmt::format("block {} is {}, but the node called {} final", to,
                                            HexEncode0x(headers.at(to).hash), HexEncode0x(target.hash))};
    }
    if (every_block) {
        for (uint64_t n = from + 1; n <= to; ++n) {
            if (headers.at(n).parent_hash != headers.at(n - 1).hash) {
                return {Kind::Inconsistent, fmt::format("block {} is not the parent of block {}", n - 1, n)};
            }
        }
    }
    return {};
}

} // namespace bitacora::evm
