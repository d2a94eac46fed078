// The simulator's Bitcoin side (issue #14): the real Bitcoin follower and the real
// anchorer, driven step by step (BtcFollower::StepOnce) on the simulator's clock against
// the simulated bitcoind (sim_btc.h), on the same ledger as the EVM follower. Its own
// seeded stream decides the Bitcoin chain's changes, so the EVM side of a seed is the
// same with or without it.
//
// The anchoring invariants, checked after every step:
//  A1. Every anchor covers a prefix of the log: its tree size is at most the log's and
//      the log's root at that size is the anchor's root.
//  A2. No anchor has two transactions confirmed in the canonical chain (counted from the
//      chain: the confirmed transactions that carry its payload).
//  A3. Once the follower's tip is the node's best block: every confirmed or final anchor's
//      proof material is self-consistent (header hash, txid, Merkle branch, payload) and is
//      where the canonical chain has that transaction; a final one has its confirmations.
//  A4. Anchor ids count up from 1; the tree sizes of anchors that were not abandoned never
//      go down.
//  A5. At the end, on a quiet node with blocks coming: every anchor becomes final or is
//      abandoned with a reason, and the follower's tip is the node's best block.
#pragma once

#include "common/clock.h"
#include "indexer/btc/anchorer.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/follower.h"
#include "ledger/ledger.h"
#include "tests/sim/sim_btc.h"
#include "tests/sim/sim_evm.h"

#include <memory>
#include <tuple>
#include <set>
#include <map>
#include <string>

namespace bitacora::sim {

struct BtcSideStats {
    uint64_t blocks{0};
    uint64_t reorgs{0};
    uint64_t restarts{0};
    uint64_t prunes{0};
    uint64_t steps{0};
    uint64_t anchors{0};          // records in the ledger at the end
    uint64_t anchors_final{0};
    uint64_t anchors_abandoned{0};
    uint64_t fee_bumps{0};
    uint64_t node_faults{0};
};

class BtcSide {
public:
    BtcSide(uint64_t seed, double fault_intensity, ManualClock& clock);
    ~BtcSide();

    // The process starts on this ledger (after a crash: the ledger as reopened).
    void Start(ledger::Ledger& ledger);
    // The process dies: the follower and the anchorer are gone; bitcoind lives on.
    void Stop();
    // A Bitcoin change, as this side's stream decides: blocks, reorgs, node restarts.
    void ChainStep();
    // The follower's thread for one simulator step: steps while blocks are left, bounded.
    void Drive(uint32_t steps_max);
    // A1-A4; an empty string when they hold, else what broke.
    std::string Check() const;
    // A5: the node goes quiet and mines until every anchor settles; then A1-A4.
    std::string Settle();
    BtcSideStats stats() const;

private:
    std::string CheckAnchor(const ledger::AnchorRecord& record, bool synced) const;
    std::string CheckProof(const ledger::AnchorRecord& record) const;
    std::string CheckProofMaterial(const ledger::AnchorRecord& record) const; // the bytes alone, as an auditor
    std::string CheckOneTransactionEach(const std::vector<ledger::AnchorRecord>& records) const;
    bool FollowerAtBest() const;

    ManualClock& m_clock;
    Prng m_prng;
    std::shared_ptr<SimBitcoind> m_node;
    const bool m_fee_rate; // a configured fee rate (bumps at rates of ours), else conf_target
    ledger::Ledger* m_ledger{nullptr};
    std::unique_ptr<btc::BitcoindRpc> m_rpc;
    std::unique_ptr<btc::Anchorer> m_anchorer;
    std::unique_ptr<btc::BtcFollower> m_follower;
    BtcSideStats m_stats;
    // What a check found already, for this ledger (a restart forgets it): the log is
    // append-only while it is open, so a root at a size holds; and a proof's bytes prove
    // the same thing each time (where the chain holds its transaction is asked each time).
    mutable std::map<uint64_t, Hash256> m_roots_checked;
    mutable std::set<std::tuple<uint64_t, Hash256, Hash256>> m_proofs_checked; // anchor id, block hash, txid
};

} // namespace bitacora::sim
