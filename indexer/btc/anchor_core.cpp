#include "indexer/btc/anchor_core.h"

#include "common/mutation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>

namespace bitacora::btc::anchor {
namespace {

using ledger::AnchorRecord;
using ledger::AnchorState;

StepAction Act(StepAction::Kind kind, AnchorRecord record = {}, std::string outcome = {})
{
    return StepAction{kind, std::move(record), std::move(outcome)};
}

// The active anchor: a confirmed one waits for its confirmations; any other goes on
// being signed, sent or watched (after an error, only once the retry time came).
StepAction DecideActive(const Policy& policy, const StepFacts& facts, AnchorRecord latest)
{
    if (latest.state == AnchorState::Confirmed) {
        const uint64_t early = sim::Mutated(sim::Mutation::AnchorFinalEarly) ? 1 : 0;
        if (latest.proof && facts.tip_height + 1 + early >= latest.proof->block_height + policy.final_confirmations) {
            latest.state = AnchorState::Final;
            return Act(StepAction::Kind::MarkFinal, std::move(latest));
        }
        return Act(StepAction::Kind::Wait, {},
                   fmt::format("anchor {} is confirmed and not final yet; it covers tree size {}", latest.id,
                               latest.tree_size));
    }
    if (facts.now_s < facts.retry_at_s && !facts.requested) return Act(StepAction::Kind::Wait);
    return Act(StepAction::Kind::Continue, std::move(latest));
}

} // namespace

StepAction DecideStep(const Policy& policy, const StepFacts& facts)
{
    if (facts.latest && facts.latest->active()) return DecideActive(policy, facts, *facts.latest);
    const bool automatic = !facts.requested;
    if ((!policy.enabled || facts.now_s < facts.retry_at_s) && automatic) return Act(StepAction::Kind::Wait);
    const auto& last_good = facts.last_good;
    if (facts.log_events == 0 || (last_good && facts.log_events <= last_good->log_events_at_plan)) {
        return Act(StepAction::Kind::NothingToAnchor, {},
                   last_good ? fmt::format("nothing to anchor: no event since anchor {} (tree size {})", last_good->id,
                                           last_good->tree_size)
                             : std::string("nothing to anchor: the log is empty"));
    }
    if (automatic && last_good && facts.now_s < last_good->planned_time + policy.interval_s) {
        return Act(StepAction::Kind::Wait);
    }
    // The first automatic anchor waits until every follower caught up, so that it commits
    // to the chains' history rather than to a moment of start-up; but at most one
    // interval, so that a follower that cannot catch up leaves nothing unanchored.
    if (automatic && !last_good && !facts.sources_synced && facts.now_s < facts.started_s + policy.interval_s) {
        return Act(StepAction::Kind::WaitFollowers);
    }
    AnchorRecord record;
    record.id = facts.latest ? facts.latest->id + 1 : 1;
    record.state = AnchorState::Planned;
    record.tree_size = facts.log_size;
    record.log_events_at_plan = facts.log_events;
    record.planned_time = facts.now_s;
    // Invariant: a plan covers more of the log than the last anchor that counts.
    assert(record.tree_size >= record.log_events_at_plan && record.log_events_at_plan > 0);
    assert(!last_good || record.log_events_at_plan > last_good->log_events_at_plan);
    return Act(StepAction::Kind::Plan, std::move(record));
}

FeeChoice FundingFee(const Policy& policy)
{
    if (policy.fee_rate_sat_vb) return FeeChoice{.fee_rate_sat_vb = *policy.fee_rate_sat_vb};
    return FeeChoice{.conf_target = policy.conf_target};
}

FeeChoice BumpFee(const Policy& policy, uint32_t bump)
{
    if (!policy.fee_rate_sat_vb) return FeeChoice{.conf_target = std::max(1u, policy.conf_target / 2)};
    // Half the configured rate again per bump (bitcoind requires an increase), rounded up
    // to the 0.001 sat/vB bitcoind takes: a fee_rate with more decimals is refused with
    // -3 "Invalid amount". The small tolerance keeps an exact 1.65 (1.6500000000000001)
    // from rounding up to 1.651.
    const double rate = *policy.fee_rate_sat_vb * (1.0 + 0.5 * bump);
    return FeeChoice{.fee_rate_sat_vb = std::ceil(rate * 1000.0 - 1e-6) / 1000.0};
}

Result<SignedAnchor> CheckSigned(std::string_view hex, bool complete, std::span<const uint8_t> payload)
{
    if (!complete) return Error{"the wallet could not sign every input (locked or watch-only?)", ErrorKind::Upstream};
    const auto bytes = HexDecode(hex);
    if (!bytes) return Error{"the signed transaction is not hex", ErrorKind::Upstream};
    auto tx = ParseTransaction(*bytes);
    if (!tx) return Error{fmt::format("the signed transaction does not parse: {}", tx.error()), ErrorKind::Upstream};
    const bool has_payload = std::any_of(tx->outputs.begin(), tx->outputs.end(), [&](const TxOut& out) {
        const auto data = OpReturnData(out.script);
        return data && std::equal(data->begin(), data->end(), payload.begin(), payload.end());
    });
    if (!has_payload) return Error{"the funded transaction lost the OP_RETURN payload", ErrorKind::Upstream};
    return SignedAnchor{*bytes, tx->txid};
}

SendOutcome ClassifySend(const BtcError* error)
{
    if (error == nullptr) return SendOutcome::Accepted;
    if (error->kind != BtcError::Kind::Rpc) return SendOutcome::Failed;
    if (error->code == kRpcVerifyAlreadyInChain) return SendOutcome::AlreadyInChain;
    if (error->code == kRpcVerifyError || error->code == kRpcVerifyRejected) return SendOutcome::Rejected;
    return SendOutcome::Failed;
}

WatchAction AfterWalletTx(const AnchorRecord& record, const WalletTxFacts& facts)
{
    if (!facts.known) return WatchAction::Resend;
    if (facts.replaced_by && record.txids.size() < AnchorRecord::kTxidsMax &&
        std::find(record.txids.begin(), record.txids.end(), *facts.replaced_by) == record.txids.end()) {
        return WatchAction::AdoptReplacement;
    }
    if (facts.confirmations < 0) return WatchAction::Abandon;
    if (facts.confirmations > 0) return WatchAction::Wait; // the follower stores it when it processes that block
    return WatchAction::CheckMempool;
}

MempoolAction AfterMempool(const Policy& policy, const AnchorRecord& record, uint64_t tip_height, bool in_mempool)
{
    if (!in_mempool) return MempoolAction::Resend;
    const bool lingering = tip_height >= record.broadcast_height + policy.bump_after_blocks;
    const bool bump_left = record.fee_bumps < policy.bumps_max && record.txids.size() < AnchorRecord::kTxidsMax;
    return lingering && bump_left ? MempoolAction::Bump : MempoolAction::Wait;
}

AnchorRecord Bumped(AnchorRecord record, SignedAnchor tx, uint64_t tip_height)
{
    assert(record.txids.size() < AnchorRecord::kTxidsMax);
    record.signed_tx = std::move(tx.tx);
    record.txids.push_back(tx.txid);
    ++record.fee_bumps;
    record.broadcast_height = tip_height;
    return record;
}

std::optional<ledger::AnchorProofMaterial> FindInBlock(const Block& block, uint64_t height, const Hash256& hash,
                                                       std::span<const uint8_t> payload)
{
    for (size_t i = 0; i < block.txs.size(); ++i) {
        const auto& tx = block.txs[i];
        for (size_t o = 0; o < tx.outputs.size(); ++o) {
            const auto data = OpReturnData(tx.outputs[o].script);
            if (!data || !std::equal(data->begin(), data->end(), payload.begin(), payload.end())) continue;
            const auto at = std::search(tx.stripped.begin(), tx.stripped.end(), payload.begin(), payload.end());
            assert(at != tx.stripped.end()); // the output's script is part of the serialization
            std::vector<Hash256> txids;
            txids.reserve(block.txs.size());
            for (const auto& t : block.txs) txids.push_back(t.txid);
            ledger::AnchorProofMaterial proof;
            proof.block_height = height;
            proof.block_hash = hash;
            proof.header = block.header_bytes;
            proof.tx = tx.stripped;
            proof.txid = tx.txid;
            proof.output_index = static_cast<uint32_t>(o);
            proof.payload_offset = static_cast<uint32_t>(at - tx.stripped.begin());
            proof.tx_index = static_cast<uint32_t>(i);
            proof.branch = MerkleBranch(txids, i);
            return proof;
        }
    }
    return std::nullopt;
}

AnchorRecord Confirmed(AnchorRecord record, ledger::AnchorProofMaterial proof)
{
    // A version signed elsewhere (a bump made by hand) is recorded beside ours.
    if (std::find(record.txids.begin(), record.txids.end(), proof.txid) == record.txids.end() &&
        record.txids.size() < AnchorRecord::kTxidsMax) {
        record.txids.push_back(proof.txid);
    }
    record.proof = std::move(proof);
    record.state = AnchorState::Confirmed;
    return record;
}

DisconnectAction OnDisconnect(const AnchorRecord& record, bool is_latest, const Hash256& block_hash)
{
    if (!record.proof || record.proof->block_hash != block_hash) return DisconnectAction::None;
    if (sim::Mutated(sim::Mutation::AnchorKeepsProof)) return DisconnectAction::None;
    return is_latest ? DisconnectAction::BackToBroadcast : DisconnectAction::Abandon;
}

AnchorRecord Unconfirmed(AnchorRecord record, uint64_t height)
{
    // Back to waiting: the transaction is back in the mempool, or will be re-sent.
    record.proof.reset();
    record.state = AnchorState::Broadcast;
    record.broadcast_height = height > 0 ? height - 1 : 0;
    return record;
}

} // namespace bitacora::btc::anchor
