// Follows bitcoind's best chain block by block from a start height or the last block
// processed (the ledger's "btc" cursor): parses each block (segwit, txids, Merkle root
// checked against the header), hands it to the anchorer, and walks back over reorgs
// (ZMQ `D` messages, or a parent that does not match). ZMQ only wakes it up; every
// decision is made over RPC, and it also polls, so lost messages cost latency only.
#pragma once

#include "common/sync.h"
#include "indexer/btc/anchorer.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "indexer/btc/chain_window.h"
#include "indexer/btc/zmq_subscriber.h"
#include "ledger/ledger.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bitacora::btc {

inline constexpr const char* kBtcSource = "btc";

struct BtcFollowerOptions {
    int64_t start_height{-1};          // first block to process; -1: the first block after the tip at first start
    uint32_t poll_interval_ms{2'000};  // without ZMQ
    uint32_t zmq_poll_interval_ms{30'000}; // with ZMQ: a safety net only
    uint32_t blocks_per_step_max{200}; // then the anchorer and stop requests get a turn
    uint32_t window_blocks_max{2'016}; // recent blocks remembered for reorgs (two weeks)
    uint32_t error_backoff_ms_max{30'000};
    bool use_zmq{true};                // subscribe to what getzmqnotifications offers
    std::vector<ZmqSubscription> zmq;  // explicit subscriptions (override discovery)
    // Whether the other followers (EVM) have caught up; the anchorer's first anchor waits
    // for them and for this one. Empty: there are none.
    std::function<bool()> others_synced;
};

struct BtcFollowerStatus {
    std::string state{"starting"};     // starting, syncing, synced, node_down, failed (the ledger could not be read)
    std::optional<uint64_t> tip_height;
    Hash256 tip_hash{};
    std::optional<uint64_t> node_height;
    Hash256 node_best_hash{};
    uint64_t node_best_changed_unix_s{0}; // when the node's best block last changed (0: never seen)
    uint64_t blocks_processed{0};
    uint64_t blocks_pruned_unread{0};
    uint64_t reorgs{0};
    uint64_t blocks_disconnected{0};
    uint64_t resyncs{0};
    uint64_t rpc_errors{0};
    std::string last_error;
    std::string zmq_topic;             // empty: polling only
    ZmqSubscriberStats zmq;
    // ZMQ message received -> that block processed, for blocks announced by ZMQ.
    std::vector<double> hint_latency_ms; // the latest samples, at most kLatencySamplesMax
    uint64_t hint_latency_count{0};      // every sample since start, for a summary's _count
    double hint_latency_seconds_sum{0};  // and its _sum
    static constexpr size_t kLatencySamplesMax = 4'096;
};

class BtcFollower {
public:
    BtcFollower(ledger::Ledger& ledger, BitcoindRpc& rpc, Anchorer* anchorer, BtcFollowerOptions options);
    ~BtcFollower();
    BtcFollower(const BtcFollower&) = delete;
    BtcFollower& operator=(const BtcFollower&) = delete;

    void Start();
    void Stop() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    void Wake() LOCKS_EXCLUDED(m_wake_mutex); // e.g. admin_anchorNow
    BtcFollowerStatus status() const LOCKS_EXCLUDED(m_status_mutex);

    // One pass: reorgs walked back, up to blocks_per_step_max blocks connected. Public
    // for tests and benchmarks that drive the follower without its thread.
    bool SyncOnce() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    // What the thread does each turn: SyncOnce, then the anchorer's step at the new tip.
    // `more`: blocks are left to connect (step again at once); else wait `wait_ms` or a
    // Wake(). The simulator (tests/sim) drives these steps on its own clock.
    struct Step {
        bool ok{false};
        bool more{false};
        uint32_t wait_ms{0};
    };
    Step StepOnce() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    std::optional<uint64_t> tip_height() const LOCKS_EXCLUDED(m_status_mutex);

private:
    struct FetchedBlock {
        Hash256 prev{};
        std::optional<Block> block; // nullopt: pruned before we read it (its header only)
    };
    void Run() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    void Loop() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    // Until Wake(), Stop() or `wait`, whichever comes first.
    void WaitForWake(std::chrono::milliseconds wait) LOCKS_EXCLUDED(m_wake_mutex);
    bool Initialize() LOCKS_EXCLUDED(m_status_mutex);
    bool Disconnect(const ChainTip& tip) LOCKS_EXCLUDED(m_status_mutex);
    bool WalkBack(uint64_t best_height) LOCKS_EXCLUDED(m_status_mutex);
    std::optional<FetchedBlock> FetchBlock(uint64_t height, const Hash256& hash) LOCKS_EXCLUDED(m_status_mutex);
    bool ConnectNext() LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    void NoteError(const std::string& what) LOCKS_EXCLUDED(m_status_mutex);
    // The node's best block as just seen; stamps the time when it changed.
    void NoteNodeBest(const Hash256& best) LOCKS_EXCLUDED(m_status_mutex);
    void OnHint(const ZmqHint& hint) LOCKS_EXCLUDED(m_wake_mutex, m_status_mutex);
    // When ZMQ announced this block (then forgotten), or nullopt.
    std::optional<std::chrono::steady_clock::time_point> TakeAnnounced(const Hash256& hash) LOCKS_EXCLUDED(m_wake_mutex);
    // Status after block `height` joined our chain; `announced`: when ZMQ announced it.
    void NoteConnected(uint64_t height, const Hash256& hash,
                       std::optional<std::chrono::steady_clock::time_point> announced) LOCKS_EXCLUDED(m_status_mutex);

    ledger::Ledger& m_ledger;
    BitcoindRpc& m_rpc;
    Anchorer* m_anchorer;
    const BtcFollowerOptions m_options;
    // The follower's thread only (or the caller of SyncOnce, without the thread).
    ChainWindow m_window{m_options.window_blocks_max}; // the processed chain's last blocks
    bool m_initialized{false};
    uint32_t m_backoff_ms{0};

    std::thread m_thread;
    std::atomic<bool> m_stop{false};
    mutable Mutex m_wake_mutex;
    ConditionVariable m_wake; // m_woken set or m_stop (then Wake()), under m_wake_mutex
    bool m_woken GUARDED_BY(m_wake_mutex){false};
    // Blocks announced by ZMQ, waiting to be processed: hash -> when the message came.
    std::map<Hash256, std::chrono::steady_clock::time_point> m_announced GUARDED_BY(m_wake_mutex);
    static constexpr size_t kAnnouncedMax = 1'024;

    mutable Mutex m_status_mutex;
    BtcFollowerStatus m_status GUARDED_BY(m_status_mutex);
    // Set once by Initialize (the follower's thread) and read by status() (API threads).
    std::unique_ptr<ZmqSubscriber> m_zmq GUARDED_BY(m_status_mutex);
};

} // namespace bitacora::btc
