// Signed checkpoints: (tree size, root, time) signed with the operator's BIP-340 key.
#pragma once

#include "common/result.h"
#include "common/sha256.h"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace bitacora::ledger {

using XOnlyPubKey = std::array<uint8_t, 32>;
using SchnorrSignature = std::array<uint8_t, 64>;

struct Checkpoint {
    uint64_t tree_size{0};
    Hash256 root{};
    uint64_t timestamp{0}; // seconds since the Unix epoch
    XOnlyPubKey public_key{};
    SchnorrSignature signature{};
};

// SHA-256("bitacora/checkpoint/v1" || u64 size || root || u64 timestamp), big-endian.
Hash256 CheckpointMessage(uint64_t tree_size, const Hash256& root, uint64_t timestamp);

class CheckpointSigner {
public:
    // Reads the 32-byte secret key at path, or creates one (mode 0600) when absent.
    static Result<std::unique_ptr<CheckpointSigner>> LoadOrCreate(const std::filesystem::path& path);
    ~CheckpointSigner();
    CheckpointSigner(const CheckpointSigner&) = delete;
    CheckpointSigner& operator=(const CheckpointSigner&) = delete;

    const XOnlyPubKey& public_key() const { return m_public_key; }
    Checkpoint Sign(uint64_t tree_size, const Hash256& root, uint64_t timestamp) const;
    // BIP-340 signature of any 32-byte message with the operator key.
    SchnorrSignature SignHash(const Hash256& message) const;

private:
    CheckpointSigner() = default;
    struct Impl;
    std::unique_ptr<Impl> m_impl;
    XOnlyPubKey m_public_key{};
};

// Checks the signature, and that it is by expected_key.
Status VerifyCheckpoint(const Checkpoint& checkpoint, const XOnlyPubKey& expected_key);
// BIP-340 verification of a signature over a 32-byte message.
bool VerifySchnorr(const XOnlyPubKey& key, const Hash256& message, const SchnorrSignature& signature);

} // namespace bitacora::ledger
