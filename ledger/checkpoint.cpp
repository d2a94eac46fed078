#include "ledger/checkpoint.h"

#include "ledger/encoding.h"

#include <fmt/format.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

namespace bitacora::ledger {
namespace {

Status RandomBytes(uint8_t* out, size_t size)
{
    size_t done = 0;
    while (done < size) {
        const ssize_t got = getrandom(out + done, size - done, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return Error{fmt::format("getrandom failed: {}", std::strerror(errno))};
        }
        done += static_cast<size_t>(got);
    }
    return {};
}

secp256k1_context* VerifyContext()
{
    static secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    return ctx;
}

} // namespace

struct CheckpointSigner::Impl {
    secp256k1_context* ctx{nullptr};
    secp256k1_keypair keypair{};
    ~Impl()
    {
        std::memset(&keypair, 0, sizeof(keypair));
        if (ctx != nullptr) secp256k1_context_destroy(ctx);
    }
};

CheckpointSigner::~CheckpointSigner() = default;

Hash256 CheckpointMessage(uint64_t tree_size, const Hash256& root, uint64_t timestamp)
{
    Bytes message;
    static constexpr std::string_view kTag = "bitacora/checkpoint/v1";
    Writer(message).Raw(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kTag.data()), kTag.size()))
        .U64(tree_size).Raw(root).U64(timestamp);
    return Sha256(message);
}

Result<std::unique_ptr<CheckpointSigner>> CheckpointSigner::LoadOrCreate(const std::filesystem::path& path)
{
    std::array<uint8_t, 32> secret{};
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        const ssize_t got = ::read(fd, secret.data(), secret.size());
        uint8_t extra = 0;
        const ssize_t more = ::read(fd, &extra, 1);
        ::close(fd);
        if (got != static_cast<ssize_t>(secret.size()) || more != 0) {
            return Error{fmt::format("checkpoint key {} is not exactly 32 bytes", path.string())};
        }
    } else if (errno == ENOENT) {
        if (auto status = RandomBytes(secret.data(), secret.size()); !status) return status.failure();
        const std::filesystem::path tmp = path.string() + ".tmp";
        const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) return Error{fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno))};
        const bool written = ::write(out, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
                             ::fsync(out) == 0;
        ::close(out);
        if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
            return Error{fmt::format("cannot write checkpoint key {}: {}", path.string(), std::strerror(errno))};
        }
    } else {
        return Error{fmt::format("cannot read checkpoint key {}: {}", path.string(), std::strerror(errno))};
    }

    auto signer = std::unique_ptr<CheckpointSigner>(new CheckpointSigner());
    signer->m_impl = std::make_unique<Impl>();
    signer->m_impl->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    std::array<uint8_t, 32> seed{};
    if (auto status = RandomBytes(seed.data(), seed.size()); !status) return status.failure();
    if (!secp256k1_context_randomize(signer->m_impl->ctx, seed.data()) ||
        !secp256k1_keypair_create(signer->m_impl->ctx, &signer->m_impl->keypair, secret.data())) {
        return Error{fmt::format("checkpoint key {} is not a valid secp256k1 secret key", path.string())};
    }
    std::memset(secret.data(), 0, secret.size());
    secp256k1_xonly_pubkey xonly;
    if (!secp256k1_keypair_xonly_pub(signer->m_impl->ctx, &xonly, nullptr, &signer->m_impl->keypair) ||
        !secp256k1_xonly_pubkey_serialize(signer->m_impl->ctx, signer->m_public_key.data(), &xonly)) {
        return Error{"cannot derive the checkpoint public key"};
    }
    return signer;
}

SchnorrSignature CheckpointSigner::SignHash(const Hash256& message) const
{
    SchnorrSignature signature{};
    std::array<uint8_t, 32> aux{};
    (void)RandomBytes(aux.data(), aux.size()); // BIP-340 stays secure with zero aux randomness
    const int ok = secp256k1_schnorrsig_sign32(m_impl->ctx, signature.data(), message.data(), &m_impl->keypair, aux.data());
    assert(ok == 1);
    (void)ok;
    return signature;
}

Checkpoint CheckpointSigner::Sign(uint64_t tree_size, const Hash256& root, uint64_t timestamp) const
{
    Checkpoint checkpoint{tree_size, root, timestamp, m_public_key, {}};
    checkpoint.signature = SignHash(CheckpointMessage(tree_size, root, timestamp));
    return checkpoint;
}

bool VerifySchnorr(const XOnlyPubKey& key, const Hash256& message, const SchnorrSignature& signature)
{
    secp256k1_xonly_pubkey xonly;
    if (!secp256k1_xonly_pubkey_parse(VerifyContext(), &xonly, key.data())) return false;
    return secp256k1_schnorrsig_verify(VerifyContext(), signature.data(), message.data(), message.size(), &xonly) == 1;
}

Status VerifyCheckpoint(const Checkpoint& checkpoint, const XOnlyPubKey& expected_key)
{
    if (checkpoint.public_key != expected_key) return Error{"checkpoint is signed by another key"};
    const Hash256 message = CheckpointMessage(checkpoint.tree_size, checkpoint.root, checkpoint.timestamp);
    if (!VerifySchnorr(checkpoint.public_key, message, checkpoint.signature)) {
        return Error{"checkpoint signature does not verify for its size, root and time"};
    }
    return {};
}

} // namespace bitacora::ledger
