#include "common/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstdio>

namespace bitacora {
namespace {

// Fetched once: EVP_MD_fetch per call costs more than hashing a 65-byte Merkle node.
const EVP_MD* Sha256Md()
{
    static const EVP_MD* md = [] {
        const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        if (fetched == nullptr) {
            std::fputs("fatal: OpenSSL has no SHA256 implementation\n", stderr);
            std::abort();
        }
        return fetched;
    }();
    return md;
}

void Check(int rc)
{
    // Digest calls fail only when OpenSSL is out of memory or misconfigured.
    if (rc != 1) {
        std::fputs("fatal: OpenSSL SHA256 failed\n", stderr);
        std::abort();
    }
}

} // namespace

struct Sha256Hasher::Impl {
    EVP_MD_CTX* ctx;
};

Sha256Hasher::Sha256Hasher() : m_impl(new Impl{EVP_MD_CTX_new()})
{
    if (m_impl->ctx == nullptr) Check(0);
    Check(EVP_DigestInit_ex2(m_impl->ctx, Sha256Md(), nullptr));
}

Sha256Hasher::~Sha256Hasher()
{
    EVP_MD_CTX_free(m_impl->ctx);
    delete m_impl;
}

Sha256Hasher& Sha256Hasher::Update(std::span<const uint8_t> data)
{
    Check(EVP_DigestUpdate(m_impl->ctx, data.data(), data.size()));
    return *this;
}

Hash256 Sha256Hasher::Finalize()
{
    Hash256 out;
    unsigned int len = 0;
    Check(EVP_DigestFinal_ex(m_impl->ctx, out.data(), &len));
    Check(EVP_DigestInit_ex2(m_impl->ctx, Sha256Md(), nullptr));
    return out;
}

Hash256 Sha256(std::span<const uint8_t> data)
{
    Hash256 out;
    unsigned int len = 0;
    Check(EVP_Digest(data.data(), data.size(), out.data(), &len, Sha256Md(), nullptr));
    return out;
}

Hash256 Sha256d(std::span<const uint8_t> data)
{
    const Hash256 first = Sha256(data);
    return Sha256(first);
}

} // namespace bitacora
