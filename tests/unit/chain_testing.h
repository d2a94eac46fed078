// Block hashes for the chain-decision tests: one per (height, chain) pair, distinct, and
// readable in a failure (the chain's letter first, the height last).
#pragma once

#include "common/sha256.h"

#include <cstdint>

namespace bitacora::testing {

inline Hash256 H(uint64_t height, uint8_t chain)
{
    Hash256 out{};
    out[0] = chain;
    for (size_t i = 0; i < 8; ++i) out[31 - i] = static_cast<uint8_t>(height >> (8 * i));
    return out;
}

} // namespace bitacora::testing
