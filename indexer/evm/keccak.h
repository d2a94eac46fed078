// Keccak-256 as Ethereum uses it (original Keccak padding 0x01, not SHA3-256's 0x06).
#pragma once

#include "common/sha256.h" // Hash256

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace bitacora::evm {

class Keccak256 {
public:
    Keccak256& Update(std::span<const uint8_t> data);
    Hash256 Finalize(); // the hasher must not be reused afterwards

private:
    static constexpr size_t kRateBytes = 136; // 1600 - 2*256 bits

    std::array<uint64_t, 25> m_state{};
    std::array<uint8_t, kRateBytes> m_buffer{};
    size_t m_buffered{0};
};

Hash256 Keccak(std::span<const uint8_t> data);
Hash256 Keccak(std::string_view text);

} // namespace bitacora::evm
