// What an eth_getLogs error says about the block range to ask for next. The phrases are
// those real providers send (../shared/fixtures/evm/getlogs-limit-errors.md): a suggested
// range, a maximum number of blocks, or only "too much" (halve).
#pragma once

#include <cstdint>
#include <string_view>

namespace bitacora::evm {

struct RangeAdvice {
    enum class Kind {
        NotRangeError, // something else: back off and retry the same range
        Halve,
        Blocks,        // ask for at most `blocks` blocks
    };
    Kind kind{Kind::NotRangeError};
    uint64_t blocks{0};
};

RangeAdvice AdviseLogRange(std::string_view message, uint64_t requested_blocks);

} // namespace bitacora::evm
