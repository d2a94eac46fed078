// Keccak-f[1600] as specified in FIPS 202 section 3 (theta, rho, pi, chi, iota),
// written lane-wise with loops the compiler unrolls; checked against published vectors in tests/unit/test_keccak.cpp.
#include "indexer/evm/keccak.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace bitacora::evm {
namespace {

constexpr uint64_t kRoundConstants[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

// By lane index x + 5y: rho's rotation of lane (x, y), and where pi moves it,
// (y, 2x + 3y mod 5). Both are indexed by constants once the loops below unroll.
constexpr int kRho[25] = {0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
                          25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14};
constexpr int PiDestination(int lane)
{
    const int x = lane % 5, y = lane / 5;
    return y + 5 * ((2 * x + 3 * y) % 5);
}

// The state in registers for all 24 rounds: theta, rho and pi into b, chi back into a.
void KeccakF1600(std::array<uint64_t, 25>& state)
{
    uint64_t a[25];
    std::memcpy(a, state.data(), sizeof(a));
    for (int round = 0; round < 24; ++round) {
        uint64_t c[5], d[5], b[25];
#pragma GCC unroll 5
        for (int x = 0; x < 5; ++x) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
#pragma GCC unroll 5
        for (int x = 0; x < 5; ++x) d[x] = c[(x + 4) % 5] ^ std::rotl(c[(x + 1) % 5], 1);
#pragma GCC unroll 25
        for (int lane = 0; lane < 25; ++lane) b[PiDestination(lane)] = std::rotl(a[lane] ^ d[lane % 5], kRho[lane]);
#pragma GCC unroll 25
        for (int lane = 0; lane < 25; ++lane) {
            const int row = lane - lane % 5;
            a[lane] = b[lane] ^ (~b[row + (lane + 1) % 5] & b[row + (lane + 2) % 5]);
        }
        a[0] ^= kRoundConstants[round];
    }
    std::memcpy(state.data(), a, sizeof(a));
}

uint64_t LoadLittleEndian64(const uint8_t* p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

void AbsorbBlock(std::array<uint64_t, 25>& state, const uint8_t* block, size_t rate_bytes)
{
    for (size_t i = 0; i < rate_bytes / 8; ++i) state[i] ^= LoadLittleEndian64(block + 8 * i);
    KeccakF1600(state);
}

} // namespace

Keccak256& Keccak256::Update(std::span<const uint8_t> data)
{
    // An empty span may carry a null pointer, which memcpy must never see.
    if (data.empty()) return *this;
    size_t pos = 0;
    if (m_buffered > 0) {
        const size_t take = std::min(kRateBytes - m_buffered, data.size());
        std::memcpy(m_buffer.data() + m_buffered, data.data(), take);
        m_buffered += take;
        pos = take;
        if (m_buffered < kRateBytes) return *this;
        AbsorbBlock(m_state, m_buffer.data(), kRateBytes);
        m_buffered = 0;
    }
    for (; data.size() - pos >= kRateBytes; pos += kRateBytes) AbsorbBlock(m_state, data.data() + pos, kRateBytes);
    std::memcpy(m_buffer.data(), data.data() + pos, data.size() - pos);
    m_buffered = data.size() - pos;
    return *this;
}

Hash256 Keccak256::Finalize()
{
    std::memset(m_buffer.data() + m_buffered, 0, kRateBytes - m_buffered);
    m_buffer[m_buffered] ^= 0x01;
    m_buffer[kRateBytes - 1] ^= 0x80;
    AbsorbBlock(m_state, m_buffer.data(), kRateBytes);
    Hash256 out;
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(m_state[i / 8] >> (8 * (i % 8)));
    return out;
}

Hash256 Keccak(std::span<const uint8_t> data)
{
    return Keccak256().Update(data).Finalize();
}

Hash256 Keccak(std::string_view text)
{
    return Keccak(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

} // namespace bitacora::evm
