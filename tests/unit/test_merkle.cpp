// RFC 6962 / RFC 9162 Merkle log: published vectors, every proof for sizes 1..8
// against an independent recomputation from the leaves, and randomized larger trees.
#include "common/hex.h"
#include "ledger/merkle.h"
#include "ledger/merkle_verify.h"

#include <doctest/doctest.h>

#include <map>
#include <random>

using namespace bitacora;
using namespace bitacora::ledger;

namespace {

// The reference: RFC 9162 2.1.1 MTH, PATH and PROOF computed straight from leaf data.
Hash256 RefRoot(const std::vector<Bytes>& d, size_t begin, size_t end)
{
    if (end == begin) return MerkleEmptyRoot();
    if (end - begin == 1) return MerkleLeafHash(d[begin]);
    size_t k = 1;
    while (k * 2 < end - begin) k *= 2;
    return MerkleNodeHash(RefRoot(d, begin, begin + k), RefRoot(d, begin + k, end));
}

std::vector<Hash256> RefPath(const std::vector<Bytes>& d, size_t m, size_t begin, size_t end)
{
    if (end - begin <= 1) return {};
    size_t k = 1;
    while (k * 2 < end - begin) k *= 2;
    std::vector<Hash256> out;
    if (m < k) {
        out = RefPath(d, m, begin, begin + k);
        out.push_back(RefRoot(d, begin + k, end));
    } else {
        out = RefPath(d, m - k, begin + k, end);
        out.push_back(RefRoot(d, begin, begin + k));
    }
    return out;
}

std::vector<Hash256> RefSubproof(const std::vector<Bytes>& d, size_t m, size_t begin, size_t end, bool b)
{
    const size_t n = end - begin;
    if (m == n) return b ? std::vector<Hash256>{} : std::vector<Hash256>{RefRoot(d, begin, end)};
    size_t k = 1;
    while (k * 2 < n) k *= 2;
    std::vector<Hash256> out;
    if (m <= k) {
        out = RefSubproof(d, m, begin, begin + k, b);
        out.push_back(RefRoot(d, begin + k, end));
    } else {
        out = RefSubproof(d, m - k, begin + k, end, false);
        out.push_back(RefRoot(d, begin, begin + k));
    }
    return out;
}

// A tree built the way the ledger builds it: appends through a frontier into a node map.
struct StoredTree {
    std::map<std::pair<unsigned, uint64_t>, Hash256> nodes;
    MerkleFrontier frontier;

    void Append(const Bytes& leaf)
    {
        frontier.Append(MerkleLeafHash(leaf), [&](const MerkleFrontier::Node& node) {
            CHECK(nodes.emplace(std::make_pair(node.level, node.index), node.hash).second);
        });
    }
    NodeReader Reader() const
    {
        return [this](unsigned level, uint64_t index) { return nodes.at({level, index}); };
    }
};

std::vector<Bytes> TestVectorLeaves()
{
    std::vector<Bytes> leaves;
    for (const char* hex : {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                            "606162636465666768696a6b6c6d6e6f"}) {
        leaves.push_back(*HexDecode(hex));
    }
    return leaves;
}

} // namespace

TEST_CASE("published roots of the RFC 6962 test vector leaves")
{
    const auto leaves = TestVectorLeaves();
    CHECK(HexEncode(MerkleEmptyRoot()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    StoredTree tree;
    const char* expected_roots[] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    };
    for (size_t i = 0; i < leaves.size(); ++i) {
        tree.Append(leaves[i]);
        CHECK(HexEncode(tree.frontier.Root()) == expected_roots[i]);
        CHECK(tree.frontier.Root() == RefRoot(leaves, 0, i + 1));
    }
}

TEST_CASE("every inclusion and consistency proof for sizes 1..8")
{
    const auto leaves = TestVectorLeaves();
    StoredTree tree;
    for (const auto& leaf : leaves) tree.Append(leaf);
    const NodeReader reader = tree.Reader();
    for (uint64_t size = 1; size <= 8; ++size) {
        const Hash256 root = MerkleRangeRoot(reader, 0, size);
        CHECK(root == RefRoot(leaves, 0, size));
        CHECK(MerkleFrontier::Load(reader, size).Root() == root);
        for (uint64_t index = 0; index < size; ++index) {
            const auto path = MerkleInclusionPath(reader, index, size);
            CHECK(path == RefPath(leaves, index, 0, size));
            CHECK(VerifyInclusion(MerkleLeafHash(leaves[index]), index, size, path, root));
            // A wrong index, size, leaf or root must fail.
            CHECK_FALSE(VerifyInclusion(MerkleLeafHash(leaves[index]), index, size, path, MerkleEmptyRoot()));
            CHECK_FALSE(VerifyInclusion(MerkleLeafHash(Bytes{0x42}), index, size, path, root));
            if (size > 1) CHECK_FALSE(VerifyInclusion(MerkleLeafHash(leaves[index]), (index + 1) % size, size, path, root));
            // A size of another depth must fail. (Sizes of the same shape on the leaf's side,
            // like 3 and 4 for leaf 0, verify alike: the root is what pins the size.)
            CHECK_FALSE(VerifyInclusion(MerkleLeafHash(leaves[index]), index, size + 8, path, root));
        }
        for (uint64_t old_size = 1; old_size <= size; ++old_size) {
            const auto proof = MerkleConsistencyPath(reader, old_size, size);
            const auto expected = old_size == size ? std::vector<Hash256>{} : RefSubproof(leaves, old_size, 0, size, true);
            CHECK(proof == expected);
            const Hash256 old_root = RefRoot(leaves, 0, old_size);
            CHECK_MESSAGE(VerifyConsistency(old_size, size, old_root, root, proof), old_size << " -> " << size);
            if (old_size < size) {
                CHECK_FALSE(VerifyConsistency(old_size, size, root, root, proof));
                CHECK_FALSE(VerifyConsistency(old_size, size, old_root, old_root, proof));
                auto tampered = proof;
                tampered.back()[0] ^= 1;
                CHECK_FALSE(VerifyConsistency(old_size, size, old_root, root, tampered));
                CHECK_FALSE(VerifyConsistency(old_size, size, old_root, root, std::vector<Hash256>{}));
            }
        }
    }
}

TEST_CASE("randomized trees up to 1,000 leaves")
{
    std::mt19937_64 rng(20261128);
    std::vector<Bytes> leaves;
    StoredTree tree;
    for (int i = 0; i < 1000; ++i) {
        Bytes leaf(rng() % 40);
        for (auto& b : leaf) b = static_cast<uint8_t>(rng());
        leaves.push_back(leaf);
        tree.Append(leaf);
    }
    const NodeReader reader = tree.Reader();
    for (int trial = 0; trial < 300; ++trial) {
        const uint64_t size = 1 + rng() % leaves.size();
        const uint64_t index = rng() % size;
        const uint64_t old_size = 1 + rng() % size;
        const Hash256 root = RefRoot(leaves, 0, size);
        const auto path = MerkleInclusionPath(reader, index, size);
        CHECK(path == RefPath(leaves, index, 0, size));
        CHECK(VerifyInclusion(MerkleLeafHash(leaves[index]), index, size, path, root));
        const auto proof = MerkleConsistencyPath(reader, old_size, size);
        CHECK(VerifyConsistency(old_size, size, RefRoot(leaves, 0, old_size), root, proof));
        if (!path.empty()) {
            auto bad = path;
            bad[rng() % bad.size()][rng() % 32] ^= 0x80;
            CHECK_FALSE(VerifyInclusion(MerkleLeafHash(leaves[index]), index, size, bad, root));
        }
    }
    CHECK(tree.frontier.Root() == RefRoot(leaves, 0, leaves.size()));
}
