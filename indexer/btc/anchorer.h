// The anchoring state machine (see ledger/anchors.h): every interval, and only when the
// log grew, it writes (tree size, root) into an OP_RETURN output funded and signed by
// bitcoind's wallet, follows the transaction into a block (fee bumps when it lingers),
// stores the proof material when the block connects and marks the anchor final after
// N confirmations. Each state is persisted before the step that leaves it, so a crash
// at any point neither loses nor duplicates an anchor. Runs on the Bitcoin follower's
// thread; RequestNow() may be called from any thread. The decisions are anchor_core.h's;
// this class is their driver.
#pragma once

#include "common/clock.h"
#include "common/sync.h"
#include "indexer/btc/anchor_core.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "ledger/ledger.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace bitacora::btc {

struct AnchorerOptions {
    bool enabled{false};
    uint32_t interval_s{3'600};             // also the longest the first anchor waits for the followers
    std::optional<double> fee_rate_sat_vb;  // else conf_target with bitcoind's estimate
    uint32_t conf_target{6};
    uint32_t bump_after_blocks{3};          // K: not in a block after K blocks -> bumpfee
    uint32_t bumps_max{10};
    uint32_t final_confirmations{6};        // N
    uint32_t retry_s{30};                   // after an error (node down, no funds)
    TimeSource* clock{nullptr};             // the intervals' clock; null: the system's (the simulator's own)
};

struct AnchorerStatus {
    uint64_t anchors_planned{0};
    uint64_t anchors_broadcast{0};
    uint64_t anchors_confirmed{0};
    uint64_t anchors_final{0};
    uint64_t anchors_dropped{0};    // a reorg took their block
    uint64_t anchors_abandoned{0};
    uint64_t fee_bumps{0};
    std::map<std::string, uint64_t> errors; // by label (insufficient_funds, node_down, wallet, ...)
    std::string last_error;
    std::optional<ledger::AnchorRecord> active;
    std::optional<ledger::AnchorRecord> latest_final;
};

class Anchorer {
public:
    Anchorer(ledger::Ledger& ledger, BitcoindRpc& rpc, AnchorerOptions options);

    // A block joined the best chain (block is null when the node had pruned it before we
    // read it). Returns true when the btc cursor was written here, with the anchor.
    bool OnBlockConnected(uint64_t height, const Hash256& hash, const Block* block, const ledger::Cursor& cursor)
        LOCKS_EXCLUDED(m_status_mutex);
    void OnBlockDisconnected(uint64_t height, const Hash256& hash) LOCKS_EXCLUDED(m_status_mutex);
    // One step of the state machine at this best height. `sources_synced`: every follower
    // has caught up with its chain; the first automatic anchor waits for it (see
    // anchor::DecideStep), so that it covers the chains' history, not a moment of start-up.
    void Step(uint64_t tip_height, bool sources_synced) LOCKS_EXCLUDED(m_status_mutex);

    // admin_anchorNow: anchor at the next step even if the interval has not passed.
    // Returns a ticket; HandledTicket() reaches it once a step has looked at it.
    uint64_t RequestNow();
    uint64_t HandledTicket() const { return m_handled_ticket.load(); }
    // Blocks until a step has looked at `ticket`, or the timeout passed; true if it has.
    bool WaitHandled(uint64_t ticket, std::chrono::milliseconds timeout) LOCKS_EXCLUDED(m_status_mutex);
    AnchorerStatus status() const LOCKS_EXCLUDED(m_status_mutex);
    // Why the last request did not start an anchor (empty when it did).
    std::string last_request_outcome() const LOCKS_EXCLUDED(m_status_mutex);

private:
    // The driver of anchor_core.h's decisions: it asks the ledger and the node, performs
    // what a decision returns and persists each state before the next.
    std::optional<std::string> Perform(anchor::StepAction& action, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    std::optional<ledger::AnchorRecord> LastGood(const std::optional<ledger::AnchorRecord>& latest) const;
    void MarkFinal(const ledger::AnchorRecord& record, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    std::string Continue(ledger::AnchorRecord latest, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    std::string PlanAndSend(ledger::AnchorRecord record, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    void SignPlanned(ledger::AnchorRecord record) LOCKS_EXCLUDED(m_status_mutex);
    void Broadcast(ledger::AnchorRecord record, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    void WatchBroadcast(ledger::AnchorRecord record, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    void AdoptReplacement(ledger::AnchorRecord record, const Hash256& replacement) LOCKS_EXCLUDED(m_status_mutex);
    void BumpFee(ledger::AnchorRecord record, uint64_t tip_height) LOCKS_EXCLUDED(m_status_mutex);
    std::optional<anchor::SignedAnchor> WalletTransaction(const std::string& txid, const std::string& during)
        LOCKS_EXCLUDED(m_status_mutex);
    void Abandon(ledger::AnchorRecord record, const std::string& why) LOCKS_EXCLUDED(m_status_mutex);
    // Sends the recorded transaction again (idempotent); abandons it if it cannot return.
    void Resend(const ledger::AnchorRecord& record) LOCKS_EXCLUDED(m_status_mutex);
    bool Save(const ledger::AnchorRecord& record, std::optional<uint8_t> event_state,
              const std::vector<ledger::Cursor>& cursors = {}) LOCKS_EXCLUDED(m_status_mutex);
    void NoteError(const BtcError& error, const std::string& during) LOCKS_EXCLUDED(m_status_mutex);
    void RefreshStatus() LOCKS_EXCLUDED(m_status_mutex);
    std::string LastError() const LOCKS_EXCLUDED(m_status_mutex);
    ledger::Event LifecycleEvent(const ledger::AnchorRecord& record, uint8_t state) const;
    uint64_t UnixNowSeconds() const;

    ledger::Ledger& m_ledger;
    BitcoindRpc& m_rpc;
    const AnchorerOptions m_options;
    const anchor::Policy m_policy;
    uint64_t m_retry_at_s{0};
    const uint64_t m_started_s;
    bool m_first_wait_logged{false};
    bool m_first_step{true}; // (for the simulator's mutation: the first step after a start)
    uint64_t m_last_checked_tip{UINT64_MAX};
    std::atomic<uint64_t> m_requested_ticket{0};
    std::atomic<uint64_t> m_handled_ticket{0}; // atomic for HandledTicket(); moved under m_status_mutex
    mutable Mutex m_status_mutex;
    ConditionVariable m_handled_cv; // m_handled_ticket moved
    AnchorerStatus m_status GUARDED_BY(m_status_mutex);
    std::string m_request_outcome GUARDED_BY(m_status_mutex);
};

} // namespace bitacora::btc
