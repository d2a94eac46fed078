#include "daemon/proof_tools.h"

#include "common/hex.h"
#include "indexer/btc/block.h"
#include "ledger/anchors.h"
#include "ledger/event.h"
#include "ledger/merkle.h"
#include "ledger/merkle_verify.h"

#include <fmt/format.h>

#include <algorithm>

namespace bitacora {
namespace {

using nlohmann::json;

template <size_t N>
bool FixedHex(const json& value, std::array<uint8_t, N>& out)
{
    return value.is_string() && HexDecodeExact(value.get<std::string>(), out);
}

std::optional<Bytes> HexField(const json& object, const char* name)
{
    if (!object.is_object() || !object.contains(name) || !object[name].is_string()) return std::nullopt;
    return HexDecode(object[name].get<std::string>());
}

bool UnsignedField(const json& object, const char* name, uint64_t& out)
{
    if (!object.is_object() || !object.contains(name) || !object[name].is_number_unsigned()) return false;
    out = object[name].get<uint64_t>();
    return true;
}

// The side of each sibling on the RFC 9162 inclusion path (true: the sibling is on the left).
std::optional<std::vector<bool>> PathSides(uint64_t index, uint64_t size, size_t path_length)
{
    if (index >= size) return std::nullopt;
    std::vector<bool> left;
    uint64_t fn = index, sn = size - 1;
    for (size_t i = 0; i < path_length; ++i) {
        if (sn == 0) return std::nullopt;
        if ((fn & 1) == 1 || fn == sn) {
            left.push_back(true);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            left.push_back(false);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return std::nullopt;
    return left;
}

// Proof of work: the header hash read as a little-endian number is at most the target of nBits.
bool MeetsTarget(const btc::BlockHeader& header)
{
    const uint32_t exponent = header.bits >> 24;
    const uint32_t mantissa = header.bits & 0x007fffff;
    if ((header.bits & 0x00800000) != 0 || mantissa == 0 || exponent > 34) return false;
    std::array<uint8_t, 35> target{}; // little-endian
    for (int i = 0; i < 3; ++i) {
        const int at = static_cast<int>(exponent) - 3 + i;
        if (at >= 0 && at < 35) target[static_cast<size_t>(at)] = static_cast<uint8_t>(mantissa >> (8 * i));
    }
    for (int i = 34; i >= 0; --i) {
        const uint8_t h = i < 32 ? header.hash[static_cast<size_t>(i)] : 0;
        if (h != target[static_cast<size_t>(i)]) return h < target[static_cast<size_t>(i)];
    }
    return true;
}

void VarUint(std::string& out, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v != 0) b |= 0x80;
        out.push_back(static_cast<char>(b));
    } while (v != 0);
}

void VarBytes(std::string& out, std::span<const uint8_t> bytes)
{
    VarUint(out, bytes.size());
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

constexpr uint8_t kOpSha256 = 0x08;
constexpr uint8_t kOpAppend = 0xf0;
constexpr uint8_t kOpPrepend = 0xf1;

} // namespace

namespace {

// The leaf, its event, and its inclusion path up to proof.root.
Status CheckInclusion(const json& bundle, BundleCheck& out)
{
    const json& proof = bundle["proof"];
    const auto leaf = HexField(proof, "leaf");
    if (!leaf) return Error{"proof.leaf is not hex"};
    const auto event = ledger::DecodeEvent(*leaf);
    if (!event) return Error{"proof.leaf does not decode: " + event.error()};
    out.event_kind = std::string(ledger::EventKindName(event->kind()));
    if (bundle.contains("event") && (!bundle["event"].is_object() || !bundle["event"].contains("kind") ||
                                     bundle["event"]["kind"] != out.event_kind)) {
        return Error{"the event shown is not the event in the leaf"};
    }
    if (!UnsignedField(proof, "index", out.index) || !UnsignedField(proof, "treeSize", out.tree_size) ||
        !proof.contains("path") || !proof["path"].is_array()) {
        return Error{"proof index, treeSize or path malformed"};
    }
    if (bundle.value("index", json()) != proof["index"]) return Error{"bundle index differs from proof index"};
    std::vector<Hash256> path;
    for (const auto& node : proof["path"]) {
        Hash256 hash{};
        if (!FixedHex(node, hash)) return Error{"proof.path holds something that is not a 32-byte hash"};
        path.push_back(hash);
    }
    if (!proof.contains("root") || !FixedHex(proof["root"], out.root)) return Error{"proof.root malformed"};
    if (auto status = ledger::VerifyInclusion(ledger::MerkleLeafHash(*leaf), out.index, out.tree_size, path, out.root);
        !status) {
        return Error{"inclusion proof: " + status.error()};
    }
    return {};
}

// The signed checkpoint over the proof's tree, by `expected_key` when one is pinned.
Status CheckCheckpoint(const json& cp, const std::optional<ledger::XOnlyPubKey>& expected_key, BundleCheck& out)
{
    ledger::Checkpoint& checkpoint = out.checkpoint;
    if (!cp.is_object() || !UnsignedField(cp, "treeSize", checkpoint.tree_size) ||
        !UnsignedField(cp, "timestamp", checkpoint.timestamp) || !cp.contains("root") || !FixedHex(cp["root"], checkpoint.root) ||
        !cp.contains("publicKey") || !FixedHex(cp["publicKey"], checkpoint.public_key) || !cp.contains("signature") ||
        !FixedHex(cp["signature"], checkpoint.signature)) {
        return Error{"checkpoint malformed"};
    }
    if (checkpoint.tree_size != out.tree_size || checkpoint.root != out.root) {
        return Error{"the checkpoint is not over the proof's tree"};
    }
    if (auto status = ledger::VerifyCheckpoint(checkpoint, expected_key.value_or(checkpoint.public_key)); !status) {
        return Error{"checkpoint signature: " + status.error()};
    }
    return {};
}

// The anchor's payload, in an OP_RETURN output of its transaction at payloadOffset, and
// the transaction's txid.
Result<btc::Transaction> CheckAnchorTx(const json& a, const BundleCheck& out)
{
    uint64_t anchor_size = 0, output_index = 0, payload_offset = 0;
    Hash256 anchor_root{};
    if (!UnsignedField(a, "treeSize", anchor_size) || !a.contains("root") || !FixedHex(a["root"], anchor_root)) {
        return Error{"anchor.treeSize or anchor.root malformed"};
    }
    if (anchor_size != out.tree_size || anchor_root != out.root) return Error{"the anchor is not over the proof's tree"};
    const auto payload = HexField(a, "payload");
    if (!payload || *payload != ledger::AnchorPayload(anchor_size, anchor_root)) {
        return Error{"anchor.payload is not BTCR || 01 || treeSize || root"};
    }
    const auto tx_bytes = HexField(a, "tx");
    if (!tx_bytes) return Error{"anchor.tx is not hex"};
    auto tx = btc::ParseTransaction(*tx_bytes);
    if (!tx) return Error{"anchor.tx is not a transaction: " + tx.error()};
    if (tx->has_witness) return Error{"anchor.tx must be the non-witness serialization"};
    if (!UnsignedField(a, "outputIndex", output_index) || output_index >= tx->outputs.size()) {
        return Error{"anchor.outputIndex names no output of the transaction"};
    }
    const auto data = btc::OpReturnData(tx->outputs[output_index].script);
    if (!data || !std::equal(data->begin(), data->end(), payload->begin(), payload->end())) {
        return Error{"the anchor output is not an OP_RETURN holding the payload"};
    }
    if (!UnsignedField(a, "payloadOffset", payload_offset) || payload_offset > tx_bytes->size() ||
        payload->size() > tx_bytes->size() - payload_offset ||
        !std::equal(payload->begin(), payload->end(), tx_bytes->begin() + static_cast<std::ptrdiff_t>(payload_offset))) {
        return Error{"anchor.payloadOffset does not point at the payload in the transaction"};
    }
    const auto txid = a.contains("txid") && a["txid"].is_string() ? btc::HashFromDisplay(a["txid"].get<std::string>())
                                                                    : std::nullopt;
    if (!txid || *txid != tx->txid) return Error{"anchor.txid is not the double SHA-256 of anchor.tx"};
    return std::move(tx.value());
}

// The transaction's branch up to the header's Merkle root, and the header's proof of work.
Status CheckAnchorBlock(const json& a, const btc::Transaction& tx, BundleCheck& out)
{
    std::vector<Hash256> branch;
    if (!a.contains("branch") || !a["branch"].is_array() || a["branch"].size() > 32) return Error{"anchor.branch malformed"};
    for (const auto& node : a["branch"]) {
        Hash256 hash{};
        if (!FixedHex(node, hash)) return Error{"anchor.branch holds something that is not a 32-byte hash"};
        branch.push_back(hash);
    }
    uint64_t tx_index = 0;
    if (!UnsignedField(a, "txIndex", tx_index) || (branch.size() < 64 && (tx_index >> branch.size()) != 0)) {
        return Error{"anchor.txIndex does not fit the branch"};
    }
    const auto header_bytes = HexField(a, "header");
    if (!header_bytes || header_bytes->size() != btc::kHeaderBytes) return Error{"anchor.header is not 80 bytes of hex"};
    const auto header = btc::ParseHeader(*header_bytes);
    if (!header) return Error{"anchor.header does not parse: " + header.error()};
    // One position per proof: a node paired with itself (the last of an odd level) is a
    // left child; calling it a right one would give the same root.
    Hash256 node = tx.txid;
    uint64_t at = tx_index;
    for (const auto& sibling : branch) {
        if ((at & 1) && sibling == node) return Error{"anchor.txIndex is not canonical (a node paired with itself is on the left)"};
        node = btc::RootFromBranch(node, at & 1, std::span<const Hash256>(&sibling, 1));
        at >>= 1;
    }
    if (node != header->merkle_root) return Error{"anchor.branch does not lead from the txid to the header's Merkle root"};
    const auto block_hash = a.contains("blockHash") && a["blockHash"].is_string()
                                ? btc::HashFromDisplay(a["blockHash"].get<std::string>())
                                : std::nullopt;
    if (!block_hash || *block_hash != header->hash) return Error{"anchor.blockHash is not the hash of anchor.header"};
    if (!MeetsTarget(*header)) return Error{"anchor.header does not meet its proof-of-work target"};
    if (!UnsignedField(a, "blockHeight", out.block_height)) return Error{"anchor.blockHeight malformed"};
    out.block_hash = btc::HashToDisplay(header->hash);
    return {};
}

} // namespace

Result<BundleCheck> VerifyBundle(const json& bundle, const std::optional<ledger::XOnlyPubKey>& expected_key)
{
    BundleCheck out;
    if (!bundle.is_object() || !bundle.contains("version") || !bundle["version"].is_number_unsigned() ||
        (bundle["version"] != 1 && bundle["version"] != 2) || !bundle.contains("proof") || !bundle.contains("checkpoint")) {
        return Error{"not a version 1 or 2 proof bundle"};
    }
    if (auto status = CheckInclusion(bundle, out); !status) return status.failure();
    if (auto status = CheckCheckpoint(bundle["checkpoint"], expected_key, out); !status) return status.failure();
    if (bundle["version"] == 1 || !bundle.contains("anchor") || bundle["anchor"].is_null()) return out;
    // The anchor: payload -> transaction -> txid -> block Merkle root -> header.
    const json& a = bundle["anchor"];
    if (!a.is_object()) return Error{"anchor malformed"};
    auto tx = CheckAnchorTx(a, out);
    if (!tx) return tx.failure();
    if (auto status = CheckAnchorBlock(a, *tx, out); !status) return status.failure();
    out.anchored = true;
    out.txid = btc::HashToDisplay(tx->txid);
    return out;
}

namespace {

// leaf -> tree root: SHA-256 of the stamped file (0x00 || leaf), then RFC 9162's interior
// hashes 0x01 || left || right, one per sibling on the path.
Status AppendTreeOps(std::string& out, const json& proof, const BundleCheck& checked)
{
    const Bytes leaf = *HexDecode(proof["leaf"].get<std::string>());
    std::vector<Hash256> path;
    for (const auto& node : proof["path"]) {
        Hash256 hash{};
        HexDecodeExact(node.get<std::string>(), hash);
        path.push_back(hash);
    }
    const auto sides = PathSides(checked.index, checked.tree_size, path.size());
    if (!sides) return Error{"inclusion path does not fit the tree"};
    out.push_back(static_cast<char>(kOpSha256));
    const Hash256 leaf_hash = ledger::MerkleLeafHash(leaf);
    out.append(reinterpret_cast<const char*>(leaf_hash.data()), leaf_hash.size());
    static constexpr uint8_t kNodePrefix[] = {0x01};
    for (size_t i = 0; i < path.size(); ++i) {
        if ((*sides)[i]) {
            Bytes arg(kNodePrefix, kNodePrefix + 1);
            arg.insert(arg.end(), path[i].begin(), path[i].end());
            out.push_back(static_cast<char>(kOpPrepend));
            VarBytes(out, arg);
        } else {
            out.push_back(static_cast<char>(kOpPrepend));
            VarBytes(out, kNodePrefix);
            out.push_back(static_cast<char>(kOpAppend));
            VarBytes(out, path[i]);
        }
        out.push_back(static_cast<char>(kOpSha256));
    }
    return {};
}

// tree root -> txid (the transaction around it, hashed twice) -> the block's Merkle root.
Status AppendTxOps(std::string& out, const json& a)
{
    // The root sits at payloadOffset + 13 in the transaction (after magic, version, size).
    const Bytes tx = *HexDecode(a["tx"].get<std::string>());
    const size_t root_at = a["payloadOffset"].get<size_t>() + 13;
    // OpenTimestamps caps an operation's argument at 4096 bytes.
    if (root_at > 4096 || tx.size() - root_at - 32 > 4096) {
        return Error{"the anchor transaction is too large for an OpenTimestamps operation (4096 bytes at most)"};
    }
    out.push_back(static_cast<char>(kOpPrepend));
    VarBytes(out, std::span<const uint8_t>(tx).first(root_at));
    out.push_back(static_cast<char>(kOpAppend));
    VarBytes(out, std::span<const uint8_t>(tx).subspan(root_at + 32));
    out.push_back(static_cast<char>(kOpSha256));
    out.push_back(static_cast<char>(kOpSha256));
    uint64_t tx_index = a["txIndex"].get<uint64_t>();
    for (const auto& node : a["branch"]) {
        Hash256 sibling{};
        HexDecodeExact(node.get<std::string>(), sibling);
        out.push_back(static_cast<char>((tx_index & 1) ? kOpPrepend : kOpAppend));
        VarBytes(out, sibling);
        out.push_back(static_cast<char>(kOpSha256));
        out.push_back(static_cast<char>(kOpSha256));
        tx_index >>= 1;
    }
    return {};
}

} // namespace

Result<std::string> ExportOts(const json& bundle)
{
    auto checked = VerifyBundle(bundle, std::nullopt);
    if (!checked) return Error{"the bundle does not verify: " + checked.error()};
    if (!checked->anchored) return Error{"the event is not anchored in Bitcoin yet: nothing to attest"};
    std::string out;
    static constexpr uint8_t kMagic[] = {0x00, 'O', 'p', 'e', 'n', 'T', 'i', 'm', 'e', 's', 't', 'a', 'm', 'p', 's', 0x00,
                                         0x00, 'P', 'r', 'o', 'o', 'f', 0x00, 0xbf, 0x89, 0xe2, 0xe8, 0x84, 0xe8, 0x92, 0x94};
    out.append(reinterpret_cast<const char*>(kMagic), sizeof(kMagic));
    VarUint(out, 1); // major version
    if (auto status = AppendTreeOps(out, bundle["proof"], *checked); !status) return status.failure();
    if (auto status = AppendTxOps(out, bundle["anchor"]); !status) return status.failure();
    // Bitcoin block header attestation: 0x00, its 8-byte tag, then varbytes(varuint height).
    out.push_back(0x00);
    static constexpr uint8_t kBitcoinTag[] = {0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01};
    out.append(reinterpret_cast<const char*>(kBitcoinTag), sizeof(kBitcoinTag));
    std::string height;
    VarUint(height, checked->block_height);
    VarBytes(out, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(height.data()), height.size()));
    return out;
}

} // namespace bitacora
