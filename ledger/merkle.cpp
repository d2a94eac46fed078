#include "ledger/merkle.h"

#include <bit>
#include <cassert>

namespace bitacora::ledger {
namespace {

// Largest power of two strictly below n (n >= 2).
uint64_t SplitPoint(uint64_t n)
{
    assert(n >= 2);
    return std::bit_floor(n - 1);
}

void PathInto(const NodeReader& read, uint64_t m, uint64_t begin, uint64_t end, std::vector<Hash256>& out)
{
    const uint64_t n = end - begin;
    if (n == 1) return;
    const uint64_t k = SplitPoint(n);
    if (m < k) {
        PathInto(read, m, begin, begin + k, out);
        out.push_back(MerkleRangeRoot(read, begin + k, end));
    } else {
        PathInto(read, m - k, begin + k, end, out);
        out.push_back(MerkleRangeRoot(read, begin, begin + k));
    }
}

void SubproofInto(const NodeReader& read, uint64_t m, uint64_t begin, uint64_t end, bool whole_old_tree,
                  std::vector<Hash256>& out)
{
    const uint64_t n = end - begin;
    if (m == n) {
        if (!whole_old_tree) out.push_back(MerkleRangeRoot(read, begin, end));
        return;
    }
    const uint64_t k = SplitPoint(n);
    if (m <= k) {
        SubproofInto(read, m, begin, begin + k, whole_old_tree, out);
        out.push_back(MerkleRangeRoot(read, begin + k, end));
    } else {
        SubproofInto(read, m - k, begin + k, end, false, out);
        out.push_back(MerkleRangeRoot(read, begin, begin + k));
    }
}

} // namespace

Hash256 MerkleLeafHash(std::span<const uint8_t> leaf_bytes)
{
    Sha256Hasher hasher;
    hasher.Update(uint8_t{0x00});
    hasher.Update(leaf_bytes);
    return hasher.Finalize();
}

Hash256 MerkleNodeHash(const Hash256& left, const Hash256& right)
{
    uint8_t buffer[65];
    buffer[0] = 0x01;
    std::copy(left.begin(), left.end(), buffer + 1);
    std::copy(right.begin(), right.end(), buffer + 33);
    return Sha256(buffer);
}

Hash256 MerkleEmptyRoot()
{
    return Sha256(std::span<const uint8_t>{});
}

Hash256 MerkleRangeRoot(const NodeReader& read, uint64_t begin, uint64_t end)
{
    assert(end > begin);
    const uint64_t n = end - begin;
    if (std::has_single_bit(n)) {
        assert(begin % n == 0);
        return read(static_cast<unsigned>(std::countr_zero(n)), begin / n);
    }
    const uint64_t k = SplitPoint(n);
    return MerkleNodeHash(MerkleRangeRoot(read, begin, begin + k), MerkleRangeRoot(read, begin + k, end));
}

std::vector<Hash256> MerkleInclusionPath(const NodeReader& read, uint64_t index, uint64_t size)
{
    assert(index < size);
    std::vector<Hash256> out;
    PathInto(read, index, 0, size, out);
    return out;
}

std::vector<Hash256> MerkleConsistencyPath(const NodeReader& read, uint64_t old_size, uint64_t new_size)
{
    assert(old_size <= new_size);
    std::vector<Hash256> out;
    if (old_size == 0 || old_size == new_size) return out;
    SubproofInto(read, old_size, 0, new_size, true, out);
    return out;
}

MerkleFrontier MerkleFrontier::Load(const NodeReader& read, uint64_t size)
{
    MerkleFrontier frontier;
    frontier.m_size = size;
    uint64_t begin = 0;
    for (int level = 63; level >= 0; --level) {
        const uint64_t width = uint64_t{1} << level;
        if ((size & width) == 0) continue;
        frontier.m_subtrees.push_back(read(static_cast<unsigned>(level), begin / width));
        begin += width;
    }
    return frontier;
}

void MerkleFrontier::Append(const Hash256& leaf_hash, const std::function<void(const Node&)>& emit)
{
    emit(Node{0, m_size, leaf_hash});
    Hash256 carry = leaf_hash;
    // Each trailing one bit of the old size is a subtree the new leaf completes.
    unsigned level = 0;
    for (uint64_t s = m_size; (s & 1) != 0; s >>= 1) {
        carry = MerkleNodeHash(m_subtrees.back(), carry);
        m_subtrees.pop_back();
        ++level;
        emit(Node{level, (m_size + 1) / (uint64_t{1} << level) - 1, carry});
    }
    m_subtrees.push_back(carry);
    ++m_size;
}

Hash256 MerkleFrontier::Root() const
{
    if (m_subtrees.empty()) return MerkleEmptyRoot();
    Hash256 root = m_subtrees.back();
    for (size_t i = m_subtrees.size() - 1; i-- > 0;) root = MerkleNodeHash(m_subtrees[i], root);
    return root;
}

} // namespace bitacora::ledger
