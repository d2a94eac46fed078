// SHA-256 and Bitcoin's double SHA-256, through OpenSSL's EVP interface.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace bitacora {

using Hash256 = std::array<uint8_t, 32>;

Hash256 Sha256(std::span<const uint8_t> data);
Hash256 Sha256d(std::span<const uint8_t> data);

// Incremental SHA-256 for hashing several pieces without concatenating them.
class Sha256Hasher {
public:
    Sha256Hasher();
    ~Sha256Hasher();
    Sha256Hasher(const Sha256Hasher&) = delete;
    Sha256Hasher& operator=(const Sha256Hasher&) = delete;

    Sha256Hasher& Update(std::span<const uint8_t> data);
    Sha256Hasher& Update(uint8_t byte) { return Update(std::span<const uint8_t>(&byte, 1)); }
    // Returns the digest and resets the hasher for reuse.
    Hash256 Finalize();

private:
    struct Impl;
    Impl* m_impl;
};

} // namespace bitacora
