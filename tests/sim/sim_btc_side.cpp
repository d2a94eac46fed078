#include "tests/sim/sim_btc_side.h"

#include "common/hex.h"
#include "indexer/btc/block.h"
#include "ledger/anchors.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace bitacora::sim {
namespace {

constexpr uint32_t kFinalConfirmations = 3;
constexpr uint32_t kSettleBlocksMax = 60;  // blocks the quiet end may take for every anchor to settle
constexpr uint32_t kSettleStepsPerBlock = 8;
constexpr size_t kAnchorsListedMax = 10'000;
constexpr uint64_t kReorgDepthMax = kFinalConfirmations - 1; // a final anchor stays final

} // namespace

BtcSide::BtcSide(uint64_t seed, double fault_intensity, ManualClock& clock)
    : m_clock(clock), m_prng(seed ^ 0xb7c0'0000'0000'0001ull),
      m_node(std::make_shared<SimBitcoind>(BtcConfig::FromSeed(seed, fault_intensity))), m_fee_rate(m_prng.Chance(0.5))
{
}

BtcSide::~BtcSide() { Stop(); }

void BtcSide::Start(ledger::Ledger& ledger)
{
    m_ledger = &ledger;
    m_roots_checked.clear();
    m_proofs_checked.clear();
    btc::BitcoindRpcOptions rpc;
    rpc.cookie_file = "/nonexistent/.cookie"; // a transport needs no credentials
    rpc.wallet = "anchor";
    rpc.transport = m_node;
    m_rpc = std::make_unique<btc::BitcoindRpc>(rpc);
    btc::AnchorerOptions anchoring;
    anchoring.enabled = true;
    anchoring.interval_s = 60;
    if (m_fee_rate) anchoring.fee_rate_sat_vb = 1.1; // bumps to 1.65, 2.2, ...: rounded as bitcoind takes them
    anchoring.bump_after_blocks = 2;
    anchoring.final_confirmations = kFinalConfirmations;
    anchoring.retry_s = 30;
    anchoring.clock = &m_clock;
    m_anchorer = std::make_unique<btc::Anchorer>(ledger, *m_rpc, anchoring);
    btc::BtcFollowerOptions following;
    following.use_zmq = false;
    following.blocks_per_step_max = 20;
    m_follower = std::make_unique<btc::BtcFollower>(ledger, *m_rpc, m_anchorer.get(), following);
}

void BtcSide::Stop()
{
    m_follower.reset();
    m_anchorer.reset();
    m_rpc.reset();
    m_ledger = nullptr;
}

void BtcSide::ChainStep()
{
    const uint64_t roll = m_prng.Below(1000);
    if (roll < 150) {
        m_node->Mine(1);
        ++m_stats.blocks;
    } else if (roll < 165) {
        const auto report = m_node->Reorg(static_cast<uint32_t>(m_prng.Between(1, kReorgDepthMax)), m_prng.Chance(0.7));
        if (report.fork_height != 0) ++m_stats.reorgs;
    } else if (roll < 170) {
        m_node->Restart(/*forget_mempool=*/m_prng.Chance(0.5));
        ++m_stats.restarts;
    } else if (roll < 178) {
        // Pruning, now and then up to blocks the follower has not read yet (it was behind).
        const uint64_t keep = m_prng.Chance(0.2) ? m_prng.Below(3) : m_prng.Between(6, 30);
        if (m_node->Height() > keep + 1) m_node->Prune(m_node->Height() - keep);
        ++m_stats.prunes;
    }
}

void BtcSide::Drive(uint32_t steps_max)
{
    for (uint32_t i = 0; i < steps_max; ++i) {
        const auto step = m_follower->StepOnce();
        ++m_stats.steps;
        if (!step.more) return;
    }
}

bool BtcSide::FollowerAtBest() const
{
    const auto cursor = m_ledger->GetCursor("btc");
    return cursor && cursor->block_number == m_node->Height() &&
           cursor->block_hash == m_node->CanonicalHash(cursor->block_number);
}

// The proof material alone, as an auditor checks it, then against the canonical chain.
std::string BtcSide::CheckProof(const ledger::AnchorRecord& r) const
{
    const auto& p = *r.proof;
    if (!m_proofs_checked.contains({r.id, p.block_hash, p.txid})) {
        if (auto broken = CheckProofMaterial(r); !broken.empty()) return broken;
        m_proofs_checked.insert({r.id, p.block_hash, p.txid});
    }
    const auto at = m_node->Confirmed(p.txid);
    if (!at || at->height != p.block_height || at->block_hash != p.block_hash || at->position != p.tx_index) {
        return fmt::format("the canonical chain does not hold its transaction in block {}", p.block_height);
    }
    if (r.state == ledger::AnchorState::Final && m_node->Height() + 1 < p.block_height + kFinalConfirmations) {
        return "final with fewer confirmations than required";
    }
    return "";
}

std::string BtcSide::CheckProofMaterial(const ledger::AnchorRecord& r) const
{
    const auto& p = *r.proof;
    const auto header = btc::ParseHeader(p.header);
    const auto tx = btc::ParseTransaction(p.tx);
    const auto payload = ledger::AnchorPayload(r.tree_size, r.root);
    if (!header || header->hash != p.block_hash) return "its header does not hash to its block hash";
    if (!tx || tx->txid != p.txid) return "its transaction does not hash to its txid";
    if (btc::RootFromBranch(p.txid, p.tx_index, p.branch) != header->merkle_root) return "its branch misses the root";
    if (p.payload_offset + payload.size() > p.tx.size() ||
        !std::equal(payload.begin(), payload.end(), p.tx.begin() + p.payload_offset)) {
        return "its transaction does not carry its payload";
    }
    if (std::find(r.txids.begin(), r.txids.end(), p.txid) == r.txids.end()) return "its proven txid is none of its own";
    return "";
}

std::string BtcSide::CheckAnchor(const ledger::AnchorRecord& r, bool synced) const
{
    if (r.tree_size > m_ledger->size()) return fmt::format("covers {} events, the log has {}", r.tree_size, m_ledger->size());
    const auto checked = m_roots_checked.find(r.tree_size);
    if (checked == m_roots_checked.end()) {
        const auto root = m_ledger->RootAt(r.tree_size);
        if (!root || *root != r.root) return fmt::format("its root is not the log's at size {}", r.tree_size);
        m_roots_checked.emplace(r.tree_size, *root);
    } else if (checked->second != r.root) {
        return fmt::format("its root is not the log's at size {}", r.tree_size);
    }
    if (synced && r.proven()) return CheckProof(r);
    return "";
}

// A2, from the chain alone: how many confirmed transactions carry each anchor's payload,
// against how many anchors there are of that payload (an abandoned one and its successor
// may share one: then each may have its transaction).
std::string BtcSide::CheckOneTransactionEach(const std::vector<ledger::AnchorRecord>& records) const
{
    std::map<Bytes, size_t> anchors_of, confirmed_of;
    for (const auto& r : records) ++anchors_of[ledger::AnchorPayload(r.tree_size, r.root)];
    for (const auto& payload : m_node->ConfirmedPayloads()) {
        if (anchors_of.contains(payload.data)) ++confirmed_of[payload.data];
    }
    for (const auto& r : records) {
        const Bytes payload = ledger::AnchorPayload(r.tree_size, r.root);
        if (confirmed_of[payload] > anchors_of[payload]) {
            return fmt::format("anchor {}: {} confirmed transactions carry its payload", r.id, confirmed_of[payload]);
        }
    }
    return "";
}

std::string BtcSide::Check() const
{
    const bool synced = FollowerAtBest();
    uint64_t expected_id = 1;
    uint64_t last_size = 0;
    const auto records = m_ledger->ListAnchors(0, kAnchorsListedMax);
    if (auto broken = CheckOneTransactionEach(records); !broken.empty()) return broken;
    for (const auto& record : records) {
        if (record.id != expected_id++) return fmt::format("anchor {} after anchor {}", record.id, expected_id - 2);
        if (auto broken = CheckAnchor(record, synced); !broken.empty()) {
            return fmt::format("anchor {} ({}): {}", record.id, ledger::AnchorStateName(record.state), broken);
        }
        if (record.state == ledger::AnchorState::Abandoned) continue;
        if (record.tree_size < last_size) return fmt::format("anchor {} covers less than the one before", record.id);
        last_size = record.tree_size;
    }
    return "";
}

std::string BtcSide::Settle()
{
    m_node->SetQuiet(true);
    for (uint32_t block = 0; block < kSettleBlocksMax; ++block) {
        for (uint32_t i = 0; i < kSettleStepsPerBlock; ++i) {
            Drive(kSettleBlocksMax);
            m_clock.Advance(std::chrono::seconds(31)); // past any retry wait
        }
        const auto latest = m_ledger->LatestAnchor();
        if (FollowerAtBest() && (!latest || !latest->active())) break;
        m_node->Mine(1);
        ++m_stats.blocks;
    }
    if (!FollowerAtBest()) return fmt::format("the follower's tip is not the node's best block {}", m_node->Height());
    for (const auto& record : m_ledger->ListAnchors(0, kAnchorsListedMax)) {
        if (record.active()) {
            return fmt::format("anchor {} is still {} after {} quiet blocks: {}", record.id,
                               ledger::AnchorStateName(record.state), kSettleBlocksMax, record.note);
        }
        if (record.state == ledger::AnchorState::Abandoned && record.note.empty()) {
            return fmt::format("anchor {} was abandoned with no reason", record.id);
        }
    }
    return Check();
}

BtcSideStats BtcSide::stats() const
{
    BtcSideStats out = m_stats;
    if (m_ledger) {
        for (const auto& record : m_ledger->ListAnchors(0, kAnchorsListedMax)) {
            ++out.anchors;
            out.anchors_final += record.state == ledger::AnchorState::Final;
            out.anchors_abandoned += record.state == ledger::AnchorState::Abandoned;
            out.fee_bumps += record.fee_bumps;
        }
    }
    out.node_faults = m_node->stats().faults();
    return out;
}

} // namespace bitacora::sim
