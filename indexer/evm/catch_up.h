// The catch-up's decisions, apart from its fetching: how many blocks the next eth_getLogs
// asks for, what a failed one means for that size, which headers a range needs and
// whether they agree with each other and with the block the node called final. The
// follower's fetchers perform them (indexer/evm/follower.cpp); the simulator and the
// unit tests drive them directly.
#pragma once

#include "indexer/evm/chain.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::evm {

// The eth_getLogs range size, learned from answers: it aims at `logs_target` logs per
// request (growing at most 2x a step), and shrinks on a node's limit: a stated one is a
// ceiling from then on; a bare "too much" is a soft ceiling until `soft_ceiling_successes`
// ranges in a row succeed. A value type: the follower keeps one under its range lock.
class RangeSizer {
public:
    RangeSizer(uint64_t initial_blocks, uint64_t max_blocks, size_t logs_target, uint64_t soft_ceiling_successes);
    uint64_t blocks() const { return m_blocks; }
    // After a range of `blocks` blocks that returned `logs` logs; the new size.
    uint64_t AfterSuccess(uint64_t blocks, size_t logs);
    // After a refusal that allows at most `blocks` (at least 1); the new size.
    uint64_t Shrink(uint64_t blocks, bool stated);

private:
    uint64_t m_blocks;
    uint64_t m_max_blocks;
    size_t m_logs_target;
    uint64_t m_soft_ceiling_successes;
    uint64_t m_ceiling_blocks{UINT64_MAX};      // a limit the node stated
    uint64_t m_soft_ceiling_blocks{UINT64_MAX}; // below a size that was "too much", for a while
    uint64_t m_successes{0};
};

// What a failed eth_getLogs of `blocks` blocks means for the range.
struct LogsRefusal {
    enum class Kind {
        Retry,  // not about the range: back off and ask the same again
        Shrink, // ask for at most `blocks` from now on
    };
    Kind kind{Kind::Retry};
    uint64_t blocks{0};
    bool stated{false}; // the node named its limit
};
// The answer outgrew our cap (`cut_off`: the transfer was stopped, so a single block
// cannot be asked for in less) or held more logs than one request may.
LogsRefusal OnLogsTooLarge(uint64_t blocks, bool cut_off);
// A JSON-RPC error answer, read for the range-limit phrases providers send.
LogsRefusal OnLogsError(std::string_view message, uint64_t blocks);

// The heights whose headers range from..to needs: both ends, the block after it (its
// parent hash vouches for the last block, which may hold no log), each block with a log,
// and under `every_block` (receipts verification) all of them. An Error names a log
// outside the range.
Result<std::vector<uint64_t>> HeadersWanted(uint64_t from, uint64_t to, uint64_t target_number, bool every_block,
                                            std::span<const Log> logs);

// The headers of range from..to against each other and the final block `target`.
struct RangeCheck {
    enum class Kind {
        Ok,
        Inconsistent, // the answers contradict each other: ask again
        Disputed,     // the range's last block is not the one the node called final: a fresh target
    };
    Kind kind{Kind::Ok};
    std::string why;
};
RangeCheck CheckRangeHeaders(uint64_t from, uint64_t to, const BlockHeader& target,
                             const std::map<uint64_t, BlockHeader>& headers, bool every_block);

} // namespace bitacora::evm
