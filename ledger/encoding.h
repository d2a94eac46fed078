// Big-endian fixed-width writer and bounds-checked reader shared by the event
// encoding, the projection records and the key layout.
#pragma once

#include "common/hex.h"
#include "common/uint256.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bitacora::ledger {

class Writer {
public:
    explicit Writer(Bytes& out) : m_out(out) {}
    Writer& U8(uint8_t v) { m_out.push_back(v); return *this; }
    Writer& U16(uint16_t v) { return Int(v, 2); }
    Writer& U32(uint32_t v) { return Int(v, 4); }
    Writer& U64(uint64_t v) { return Int(v, 8); }
    Writer& Bool(bool v) { return U8(v ? 1 : 0); }
    Writer& U256(const UInt256& v) { const auto be = v.ToBigEndian(); return Raw(be); }
    Writer& Raw(std::span<const uint8_t> bytes) { m_out.insert(m_out.end(), bytes.begin(), bytes.end()); return *this; }
    Writer& Str16(std::string_view s) { U16(static_cast<uint16_t>(s.size())); m_out.insert(m_out.end(), s.begin(), s.end()); return *this; }
    Writer& Bytes32(std::span<const uint8_t> b) { U32(static_cast<uint32_t>(b.size())); return Raw(b); }

private:
    Writer& Int(uint64_t v, int width)
    {
        for (int i = width - 1; i >= 0; --i) m_out.push_back(static_cast<uint8_t>(v >> (8 * i)));
        return *this;
    }
    Bytes& m_out;
};

// Every getter fails (returns false) rather than read past the end.
class Reader {
public:
    explicit Reader(std::span<const uint8_t> in) : m_in(in) {}
    bool U8(uint8_t& v) { return Int(v, 1); }
    bool U16(uint16_t& v) { return Int(v, 2); }
    bool U32(uint32_t& v) { return Int(v, 4); }
    bool U64(uint64_t& v) { return Int(v, 8); }
    bool Bool(bool& v)
    {
        uint8_t b = 0;
        if (!U8(b) || b > 1) return false;
        v = b == 1;
        return true;
    }
    bool U256(UInt256& v)
    {
        if (m_in.size() - m_pos < 32) return false;
        v = UInt256::FromBigEndian(m_in.subspan(m_pos).first<32>());
        m_pos += 32;
        return true;
    }
    template <size_t N>
    bool Fixed(std::array<uint8_t, N>& out)
    {
        if (m_in.size() - m_pos < N) return false;
        std::copy_n(m_in.begin() + static_cast<std::ptrdiff_t>(m_pos), N, out.begin());
        m_pos += N;
        return true;
    }
    bool Str16(std::string& out, size_t max_bytes)
    {
        uint16_t n = 0;
        if (!U16(n) || n > max_bytes || m_in.size() - m_pos < n) return false;
        out.assign(reinterpret_cast<const char*>(m_in.data() + m_pos), n);
        m_pos += n;
        return true;
    }
    bool Bytes32(Bytes& out, size_t max_bytes)
    {
        uint32_t n = 0;
        if (!U32(n) || n > max_bytes || m_in.size() - m_pos < n) return false;
        out.assign(m_in.begin() + static_cast<std::ptrdiff_t>(m_pos), m_in.begin() + static_cast<std::ptrdiff_t>(m_pos + n));
        m_pos += n;
        return true;
    }
    bool AtEnd() const { return m_pos == m_in.size(); }

private:
    template <typename T>
    bool Int(T& v, int width)
    {
        if (m_in.size() - m_pos < static_cast<size_t>(width)) return false;
        uint64_t x = 0;
        for (int i = 0; i < width; ++i) x = (x << 8) | m_in[m_pos + static_cast<size_t>(i)];
        v = static_cast<T>(x);
        m_pos += static_cast<size_t>(width);
        return true;
    }
    std::span<const uint8_t> m_in;
    size_t m_pos{0};
};

} // namespace bitacora::ledger
