#include "ledger/merkle_verify.h"

#include "common/hex.h"
#include "ledger/merkle.h"

#include <fmt/format.h>

namespace bitacora::ledger {

Status VerifyInclusion(const Hash256& leaf_hash, uint64_t index, uint64_t tree_size, std::span<const Hash256> path,
                       const Hash256& root)
{
    if (index >= tree_size) return Error{fmt::format("leaf index {} is not below tree size {}", index, tree_size)};
    uint64_t fn = index;
    uint64_t sn = tree_size - 1;
    Hash256 r = leaf_hash;
    for (const Hash256& p : path) {
        if (sn == 0) return Error{"inclusion path is longer than the tree is deep"};
        if ((fn & 1) != 0 || fn == sn) {
            r = MerkleNodeHash(p, r);
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            r = MerkleNodeHash(r, p);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return Error{"inclusion path is shorter than the tree is deep"};
    if (r != root) return Error{fmt::format("inclusion path leads to root {}, expected {}", HexEncode(r), HexEncode(root))};
    return {};
}

Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash256& old_root, const Hash256& new_root,
                         std::span<const Hash256> path)
{
    if (old_size > new_size) return Error{fmt::format("old size {} exceeds new size {}", old_size, new_size)};
    if (old_size == new_size) {
        if (!path.empty()) return Error{"consistency proof between equal sizes must be empty"};
        if (old_root != new_root) return Error{"equal sizes with different roots"};
        return {};
    }
    if (old_size == 0) {
        if (!path.empty()) return Error{"consistency proof from the empty tree must be empty"};
        return {};
    }
    if (path.empty()) return Error{"consistency proof is empty"};

    // When the old tree is a perfect subtree its root is the proof's implicit first entry.
    std::vector<Hash256> nodes;
    if ((old_size & (old_size - 1)) == 0) nodes.push_back(old_root);
    nodes.insert(nodes.end(), path.begin(), path.end());

    uint64_t fn = old_size - 1;
    uint64_t sn = new_size - 1;
    while ((fn & 1) != 0) {
        fn >>= 1;
        sn >>= 1;
    }
    Hash256 fr = nodes[0];
    Hash256 sr = nodes[0];
    for (size_t i = 1; i < nodes.size(); ++i) {
        const Hash256& c = nodes[i];
        if (sn == 0) return Error{"consistency proof is longer than expected"};
        if ((fn & 1) != 0 || fn == sn) {
            fr = MerkleNodeHash(c, fr);
            sr = MerkleNodeHash(c, sr);
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            sr = MerkleNodeHash(sr, c);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return Error{"consistency proof is shorter than expected"};
    if (fr != old_root) return Error{"consistency proof does not reproduce the old root"};
    if (sr != new_root) return Error{"consistency proof does not reproduce the new root"};
    return {};
}

} // namespace bitacora::ledger
