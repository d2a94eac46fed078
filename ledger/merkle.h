// RFC 6962 / RFC 9162 Merkle tree hashing and proof generation over stored nodes.
// Nodes are identified by (level, index): the root of the perfect subtree covering
// leaves [index * 2^level, (index + 1) * 2^level). Only such perfect subtrees are ever
// stored; every other hash (roots of other sizes, proof entries on the right edge) is
// folded from them, so no operation reads all leaves.
#pragma once

#include "common/sha256.h"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace bitacora::ledger {

Hash256 MerkleLeafHash(std::span<const uint8_t> leaf_bytes); // SHA-256(0x00 || leaf)
Hash256 MerkleNodeHash(const Hash256& left, const Hash256& right); // SHA-256(0x01 || l || r)
Hash256 MerkleEmptyRoot();                                     // SHA-256("")

// Reads a stored perfect-subtree node; level 0 is a leaf hash.
using NodeReader = std::function<Hash256(unsigned level, uint64_t index)>;

// The root of leaves [begin, end), begin aligned as in RFC 9162's recursion.
Hash256 MerkleRangeRoot(const NodeReader& read, uint64_t begin, uint64_t end);
// RFC 9162 2.1.3.1 PATH(index, D[0:size]), leaf-level sibling first.
std::vector<Hash256> MerkleInclusionPath(const NodeReader& read, uint64_t index, uint64_t size);
// RFC 9162 2.1.4.1 PROOF(old_size, D[0:new_size]); empty when old_size is 0 or equal.
std::vector<Hash256> MerkleConsistencyPath(const NodeReader& read, uint64_t old_size, uint64_t new_size);

// The right edge of a growing tree: the roots of the perfect subtrees that make up
// the current size (at most 64). Appending a leaf yields the nodes it completes.
class MerkleFrontier {
public:
    struct Node {
        unsigned level;
        uint64_t index;
        Hash256 hash;
    };

    MerkleFrontier() = default;
    // Rebuilds the frontier of a tree of `size` leaves from stored nodes.
    static MerkleFrontier Load(const NodeReader& read, uint64_t size);

    uint64_t size() const { return m_size; }
    // Appends a leaf hash; calls emit for the leaf node and every node it completes.
    void Append(const Hash256& leaf_hash, const std::function<void(const Node&)>& emit);
    Hash256 Root() const;

private:
    uint64_t m_size{0};
    std::vector<Hash256> m_subtrees; // largest (leftmost) first
};

} // namespace bitacora::ledger
