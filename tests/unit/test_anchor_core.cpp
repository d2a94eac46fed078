// The anchorer's decisions (indexer/btc/anchor_core.h), observation by observation,
// without a ledger or a node: when to plan, wait, finalise; what a wallet's or a
// mempool's answer leads to; which fee a bump asks for; where a payload is in a block.
#include "common/hex.h"
#include "indexer/btc/anchor_core.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace bitacora;
using namespace bitacora::btc;
using ledger::AnchorRecord;
using ledger::AnchorState;

namespace {

anchor::Policy Enabled()
{
    anchor::Policy policy;
    policy.enabled = true;
    policy.interval_s = 600;
    policy.final_confirmations = 6;
    policy.bump_after_blocks = 3;
    policy.bumps_max = 2;
    return policy;
}

AnchorRecord Record(uint64_t id, AnchorState state, uint64_t log_events, uint64_t planned_time)
{
    AnchorRecord record;
    record.id = id;
    record.state = state;
    record.tree_size = log_events + id;
    record.log_events_at_plan = log_events;
    record.planned_time = planned_time;
    record.txids = {Hash256{static_cast<uint8_t>(id)}};
    return record;
}

double Bump(double rate, uint32_t k)
{
    anchor::Policy policy;
    policy.fee_rate_sat_vb = rate;
    return *anchor::BumpFee(policy, k).fee_rate_sat_vb;
}

// A one-input transaction with one output of `script`: its serialization.
Bytes SerializedTx(const Bytes& script)
{
    Bytes tx = {2, 0, 0, 0, 1};
    tx.insert(tx.end(), 36, 0x11);      // the outpoint
    tx.insert(tx.end(), {0, 0xff, 0xff, 0xff, 0xff, 1});
    tx.insert(tx.end(), 8, 0);          // value
    tx.push_back(static_cast<uint8_t>(script.size()));
    tx.insert(tx.end(), script.begin(), script.end());
    tx.insert(tx.end(), 4, 0);          // lock time
    return tx;
}

Bytes OpReturn(const Bytes& data)
{
    Bytes script = {0x6a, static_cast<uint8_t>(data.size())};
    script.insert(script.end(), data.begin(), data.end());
    return script;
}

} // namespace

TEST_CASE("a step plans only when the log grew, the interval passed and, the first time, the followers caught up")
{
    const auto policy = Enabled();
    anchor::StepFacts facts;
    facts.log_size = 10;
    facts.log_events = 10;
    facts.now_s = 1'000;
    facts.started_s = 900;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::WaitFollowers);
    facts.sources_synced = true;
    auto action = anchor::DecideStep(policy, facts);
    REQUIRE(action.kind == anchor::StepAction::Kind::Plan);
    CHECK(action.record.id == 1);
    CHECK(action.record.tree_size == 10);
    CHECK(action.record.planned_time == 1'000);
    facts.sources_synced = false;
    facts.now_s = 900 + 600; // one interval after the start: the followers are not waited for any longer
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Plan);

    facts.latest = facts.last_good = Record(1, AnchorState::Final, 10, 1'000);
    facts.now_s = 1'500;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::NothingToAnchor);
    facts.log_events = 11;
    facts.log_size = 13;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Wait); // interval not passed
    facts.requested = true;
    action = anchor::DecideStep(policy, facts);
    REQUIRE(action.kind == anchor::StepAction::Kind::Plan); // admin_anchorNow does not wait for it
    CHECK(action.record.id == 2);
    facts.requested = false;
    facts.now_s = 1'600;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Plan);
    facts.retry_at_s = 1'700; // after an error
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Wait);

    auto disabled = policy;
    disabled.enabled = false;
    facts.retry_at_s = 0;
    CHECK(anchor::DecideStep(disabled, facts).kind == anchor::StepAction::Kind::Wait);
    facts.requested = true;
    CHECK(anchor::DecideStep(disabled, facts).kind == anchor::StepAction::Kind::Plan);
}

TEST_CASE("an abandoned anchor counts for nothing: the next plan covers the same events again")
{
    anchor::StepFacts facts;
    facts.log_size = facts.log_events = 10;
    facts.now_s = 5'000;
    facts.sources_synced = true;
    facts.latest = Record(2, AnchorState::Abandoned, 10, 4'900);
    facts.last_good = Record(1, AnchorState::Final, 5, 1'000);
    const auto action = anchor::DecideStep(Enabled(), facts);
    REQUIRE(action.kind == anchor::StepAction::Kind::Plan);
    CHECK(action.record.id == 3);
    CHECK(action.record.log_events_at_plan == 10);
}

TEST_CASE("a confirmed anchor becomes final at exactly its confirmations; an active one goes on after the retry time")
{
    const auto policy = Enabled();
    anchor::StepFacts facts;
    auto confirmed = Record(1, AnchorState::Confirmed, 10, 0);
    confirmed.proof = ledger::AnchorProofMaterial{};
    confirmed.proof->block_height = 200;
    facts.latest = confirmed;
    facts.tip_height = 204; // 5 confirmations
    auto action = anchor::DecideStep(policy, facts);
    CHECK(action.kind == anchor::StepAction::Kind::Wait);
    CHECK(action.outcome.find("not final yet") != std::string::npos);
    facts.tip_height = 205;
    action = anchor::DecideStep(policy, facts);
    REQUIRE(action.kind == anchor::StepAction::Kind::MarkFinal);
    CHECK(action.record.state == AnchorState::Final);

    facts.latest = Record(1, AnchorState::Broadcast, 10, 0);
    facts.now_s = 100;
    facts.retry_at_s = 130;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Wait);
    facts.requested = true;
    CHECK(anchor::DecideStep(policy, facts).kind == anchor::StepAction::Kind::Continue);
    facts.requested = false;
    facts.now_s = 130;
    action = anchor::DecideStep(policy, facts);
    CHECK(action.kind == anchor::StepAction::Kind::Continue);
    CHECK(action.record.id == 1);
}

TEST_CASE("bump rates keep to the 0.001 sat/vB bitcoind takes")
{
    CHECK(Bump(1.1, 1) == doctest::Approx(1.65).epsilon(1e-12));
    CHECK(nlohmann::json(Bump(1.1, 1)).dump() == "1.65");
    CHECK(nlohmann::json(Bump(1.1, 2)).dump() == "2.2");
    CHECK(nlohmann::json(Bump(1.1, 3)).dump() == "2.75");
    CHECK(nlohmann::json(Bump(0.1, 1)).dump() == "0.15");
    CHECK(nlohmann::json(Bump(1.001, 1)).dump() == "1.502"); // 1.5015, rounded up: still a rise
    for (uint32_t k = 1; k < 10; ++k) CHECK(Bump(1.1, k + 1) > Bump(1.1, k));
    anchor::Policy estimated;
    estimated.conf_target = 6;
    CHECK(anchor::FundingFee(estimated).conf_target == 6u);
    CHECK(anchor::BumpFee(estimated, 1).conf_target == 3u);
    estimated.conf_target = 1;
    CHECK(anchor::BumpFee(estimated, 1).conf_target == 1u);
}

TEST_CASE("the wallet's and the mempool's answers about a sent anchor")
{
    const auto policy = Enabled();
    auto record = Record(1, AnchorState::Broadcast, 10, 0);
    record.broadcast_height = 100;
    CHECK(anchor::AfterWalletTx(record, {.known = false}) == anchor::WatchAction::Resend);
    CHECK(anchor::AfterWalletTx(record, {.known = true, .confirmations = -1}) == anchor::WatchAction::Abandon);
    CHECK(anchor::AfterWalletTx(record, {.known = true, .confirmations = 2}) == anchor::WatchAction::Wait);
    CHECK(anchor::AfterWalletTx(record, {.known = true, .confirmations = 0}) == anchor::WatchAction::CheckMempool);
    const Hash256 other{0x77};
    CHECK(anchor::AfterWalletTx(record, {.known = true, .replaced_by = other}) == anchor::WatchAction::AdoptReplacement);
    // A replacement already recorded is not adopted twice.
    CHECK(anchor::AfterWalletTx(record, {.known = true, .replaced_by = record.txids[0]}) ==
          anchor::WatchAction::CheckMempool);

    CHECK(anchor::AfterMempool(policy, record, 101, false) == anchor::MempoolAction::Resend);
    CHECK(anchor::AfterMempool(policy, record, 102, true) == anchor::MempoolAction::Wait);
    CHECK(anchor::AfterMempool(policy, record, 103, true) == anchor::MempoolAction::Bump);
    auto bumped = anchor::Bumped(record, {Bytes{1, 2, 3}, other}, 103);
    CHECK(bumped.fee_bumps == 1);
    CHECK(bumped.txids.size() == 2);
    CHECK(bumped.txids.back() == other);
    CHECK(bumped.broadcast_height == 103);
    CHECK(anchor::AfterMempool(policy, bumped, 105, true) == anchor::MempoolAction::Wait);
    bumped = anchor::Bumped(bumped, {Bytes{4}, Hash256{0x78}}, 106);
    CHECK(anchor::AfterMempool(policy, bumped, 120, true) == anchor::MempoolAction::Wait); // bumps_max reached
}

TEST_CASE("sendrawtransaction's errors: mined already is sent, a verify error abandons, the rest retries")
{
    CHECK(anchor::ClassifySend(nullptr) == anchor::SendOutcome::Accepted);
    const BtcError in_chain{BtcError::Kind::Rpc, kRpcVerifyAlreadyInChain, 500, "txn-already-known"};
    CHECK(anchor::ClassifySend(&in_chain) == anchor::SendOutcome::AlreadyInChain);
    const BtcError spent{BtcError::Kind::Rpc, kRpcVerifyError, 500, "bad-txns-inputs-missingorspent"};
    CHECK(anchor::ClassifySend(&spent) == anchor::SendOutcome::Rejected);
    const BtcError policy{BtcError::Kind::Rpc, kRpcVerifyRejected, 500, "insufficient fee"};
    CHECK(anchor::ClassifySend(&policy) == anchor::SendOutcome::Rejected);
    const BtcError down{BtcError::Kind::Transport, 0, 0, "connection refused"};
    CHECK(anchor::ClassifySend(&down) == anchor::SendOutcome::Failed);
    const BtcError warmup{BtcError::Kind::Rpc, kRpcInWarmup, 500, "Loading block index"};
    CHECK(anchor::ClassifySend(&warmup) == anchor::SendOutcome::Failed);
}

TEST_CASE("a signed transaction must be complete and still carry the payload")
{
    const Hash256 root{0xab};
    const auto payload = ledger::AnchorPayload(42, root);
    const auto good = SerializedTx(OpReturn(payload));
    auto checked = anchor::CheckSigned(HexEncode(good), true, payload);
    REQUIRE(checked);
    CHECK(checked->tx == good);
    CHECK(checked->txid == ParseTransaction(good)->txid);
    CHECK_FALSE(anchor::CheckSigned(HexEncode(good), false, payload));
    CHECK_FALSE(anchor::CheckSigned("zz", true, payload));
    CHECK_FALSE(anchor::CheckSigned(HexEncode(Bytes(good.begin(), good.end() - 3)), true, payload));
    const auto other = ledger::AnchorPayload(43, root);
    const auto lost = anchor::CheckSigned(HexEncode(good), true, other);
    REQUIRE_FALSE(lost);
    CHECK(lost.error().find("lost the OP_RETURN payload") != std::string::npos);
}

TEST_CASE("the payload is found in a block with the proof material; a disconnect undoes it")
{
    const auto payload = ledger::AnchorPayload(42, Hash256{0xab});
    Block block;
    for (uint8_t i = 0; i < 3; ++i) {
        const auto bytes = SerializedTx(i == 2 ? OpReturn(payload) : OpReturn(Bytes{i}));
        block.txs.push_back(*ParseTransaction(bytes));
    }
    const Hash256 hash{0xcd};
    auto proof = anchor::FindInBlock(block, 300, hash, payload);
    REQUIRE(proof);
    CHECK(proof->tx_index == 2);
    CHECK(proof->output_index == 0);
    CHECK(proof->block_height == 300);
    CHECK(std::equal(payload.begin(), payload.end(), proof->tx.begin() + proof->payload_offset));
    std::vector<Hash256> txids;
    for (const auto& tx : block.txs) txids.push_back(tx.txid);
    CHECK(proof->branch == MerkleBranch(txids, 2));
    CHECK_FALSE(anchor::FindInBlock(block, 300, hash, ledger::AnchorPayload(41, Hash256{0xab})));

    auto record = Record(1, AnchorState::Broadcast, 10, 0);
    const auto confirmed = anchor::Confirmed(record, *proof);
    CHECK(confirmed.state == AnchorState::Confirmed);
    CHECK(confirmed.txids.back() == block.txs[2].txid); // a version signed elsewhere is recorded
    CHECK(anchor::OnDisconnect(confirmed, true, Hash256{0x01}) == anchor::DisconnectAction::None);
    CHECK(anchor::OnDisconnect(confirmed, true, hash) == anchor::DisconnectAction::BackToBroadcast);
    CHECK(anchor::OnDisconnect(confirmed, false, hash) == anchor::DisconnectAction::Abandon);
    const auto back = anchor::Unconfirmed(confirmed, 300);
    CHECK(back.state == AnchorState::Broadcast);
    CHECK_FALSE(back.proof);
    CHECK(back.broadcast_height == 299);
}
