// Verification of RFC 9162 inclusion and consistency proofs (sections 2.1.3.2 and
// 2.1.4.2). Deliberately independent of merkle.cpp's generator: it shares only the
// two hash functions, so a bug in one is not mirrored in the other.
#pragma once

#include "common/result.h"
#include "common/sha256.h"

#include <cstdint>
#include <span>

namespace bitacora::ledger {

Status VerifyInclusion(const Hash256& leaf_hash, uint64_t index, uint64_t tree_size, std::span<const Hash256> path,
                       const Hash256& root);

Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash256& old_root, const Hash256& new_root,
                         std::span<const Hash256> path);

} // namespace bitacora::ledger
