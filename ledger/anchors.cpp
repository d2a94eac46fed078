#include "ledger/anchors.h"

#include "ledger/encoding.h"

#include <algorithm>

namespace bitacora::ledger {
namespace {
constexpr uint8_t kRecordVersion = 1;
} // namespace

Bytes AnchorPayload(uint64_t tree_size, const Hash256& root)
{
    Bytes out;
    Writer w(out);
    w.Raw(kAnchorMagic).U8(kAnchorPayloadVersion).U64(tree_size).Raw(root);
    return out;
}

std::optional<AnchorCommitment> ParseAnchorPayload(std::span<const uint8_t> payload)
{
    if (payload.size() != kAnchorPayloadBytes || !std::equal(kAnchorMagic.begin(), kAnchorMagic.end(), payload.begin()) ||
        payload[4] != kAnchorPayloadVersion) {
        return std::nullopt;
    }
    Reader r(payload.subspan(5));
    AnchorCommitment c;
    if (!r.U64(c.tree_size) || !r.Fixed(c.root) || !r.AtEnd()) return std::nullopt;
    return c;
}

std::string_view AnchorStateName(AnchorState state)
{
    switch (state) {
    case AnchorState::Planned: return "planned";
    case AnchorState::Signed: return "signed";
    case AnchorState::Broadcast: return "broadcast";
    case AnchorState::Confirmed: return "confirmed";
    case AnchorState::Final: return "final";
    case AnchorState::Abandoned: return "abandoned";
    }
    return "unknown";
}

Bytes EncodeAnchorRecord(const AnchorRecord& r)
{
    Bytes out;
    Writer w(out);
    w.U8(kRecordVersion).U64(r.id).U8(static_cast<uint8_t>(r.state)).U64(r.tree_size).Raw(r.root);
    w.U64(r.log_events_at_plan).U64(r.planned_time).U64(r.updated_time).Bytes32(r.signed_tx);
    w.U16(static_cast<uint16_t>(r.txids.size()));
    for (const auto& txid : r.txids) w.Raw(txid);
    w.U64(r.broadcast_height).U32(r.fee_bumps).Bool(r.proof.has_value());
    if (r.proof) {
        const auto& p = *r.proof;
        w.U64(p.block_height).Raw(p.block_hash).Raw(p.header).Bytes32(p.tx).Raw(p.txid);
        w.U32(p.output_index).U32(p.payload_offset).U32(p.tx_index).U16(static_cast<uint16_t>(p.branch.size()));
        for (const auto& node : p.branch) w.Raw(node);
    }
    w.Str16(r.note.substr(0, AnchorRecord::kNoteBytesMax));
    return out;
}

Result<AnchorRecord> DecodeAnchorRecord(std::span<const uint8_t> bytes)
{
    Reader r(bytes);
    AnchorRecord a;
    uint8_t version = 0, state = 0;
    uint16_t txids = 0;
    bool has_proof = false;
    if (!r.U8(version) || version != kRecordVersion) return Error{"anchor record of an unknown version"};
    if (!r.U64(a.id) || !r.U8(state) || state < 1 || state > 6 || !r.U64(a.tree_size) || !r.Fixed(a.root) ||
        !r.U64(a.log_events_at_plan) || !r.U64(a.planned_time) || !r.U64(a.updated_time) ||
        !r.Bytes32(a.signed_tx, 1 << 20) || !r.U16(txids) || txids > AnchorRecord::kTxidsMax) {
        return Error{"anchor record malformed"};
    }
    a.state = static_cast<AnchorState>(state);
    a.txids.resize(txids);
    for (auto& txid : a.txids) {
        if (!r.Fixed(txid)) return Error{"anchor record malformed"};
    }
    if (!r.U64(a.broadcast_height) || !r.U32(a.fee_bumps) || !r.Bool(has_proof)) return Error{"anchor record malformed"};
    if (has_proof) {
        AnchorProofMaterial p;
        uint16_t branch = 0;
        if (!r.U64(p.block_height) || !r.Fixed(p.block_hash) || !r.Fixed(p.header) || !r.Bytes32(p.tx, 1 << 20) ||
            !r.Fixed(p.txid) || !r.U32(p.output_index) || !r.U32(p.payload_offset) || !r.U32(p.tx_index) ||
            !r.U16(branch) || branch > AnchorRecord::kBranchMax) {
            return Error{"anchor proof material malformed"};
        }
        p.branch.resize(branch);
        for (auto& node : p.branch) {
            if (!r.Fixed(node)) return Error{"anchor proof material malformed"};
        }
        a.proof = std::move(p);
    }
    if (!r.Str16(a.note, AnchorRecord::kNoteBytesMax) || !r.AtEnd()) return Error{"anchor record malformed"};
    return a;
}

} // namespace bitacora::ledger
