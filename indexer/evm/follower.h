// The EVM follower: the escrow and vault logs of an EVM chain into the ledger.
//
// Final blocks (by the `finalized` tag, `safe`, or a depth) go into the append-only log
// together with the "evm" cursor; unfinalized blocks go into the ledger's pending overlay
// and are rolled back on a reorg. Nothing a node says is trusted blindly: the chain id is
// checked at start, the first final block's hash is remembered in the data dir, every
// log's blockHash must match the header at its height, and headers must link by parent
// hash. A reorg below the last final block stops the follower and leaves the data as it is.
//
// Catch-up overlaps the network and the database: a fetcher thread asks for logs over
// adaptive block ranges, fetches the headers it needs, checks and decodes them, and hands
// ranges to the follower thread through a bounded queue; the follower thread appends.
#pragma once

#include "common/clock.h"
#include "common/sha256.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/json_rpc_client.h"
#include "indexer/evm/pending_chain.h"
#include "ledger/ledger.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace bitacora::evm {

inline constexpr std::string_view kCursorSource = "evm";

// What is checked of a node's answers beyond hashes and parents (-evmverify). Each mode
// includes the checks of the ones before it, except that quorum does not fetch receipts.
enum class VerifyMode {
    None,     // nothing more
    Bloom,    // every header's fields hash to its hash; every log is in its block's logsBloom
    Receipts, // and every block that holds (or whose bloom admits) watched logs: its receipts
              // against receiptsRoot, and its logs against the receipts
    Quorum,   // bloom, and each final range as `quorum` endpoints give it
};
std::string_view VerifyModeName(VerifyMode mode);
std::optional<VerifyMode> ParseVerifyMode(std::string_view name);

struct FollowerOptions {
    uint64_t chain_id{0};
    Address escrow{};
    Address vault{};
    uint64_t start_block{0};              // the contracts' deployment block
    FinalityRule finality{FinalityRule::Finalized};
    uint64_t finality_depth{0};           // FinalityRule::Depth
    uint32_t poll_interval_ms{2'000};
    uint64_t range_blocks_initial{10};    // first eth_getLogs range of a catch-up
    uint64_t range_blocks_max{10'000};
    uint64_t logs_per_request_target{5'000}; // the range adapts towards this many logs
    size_t logs_per_request_max{200'000};     // a larger answer is refused and the range halved
    size_t header_batch_max{100};             // eth_getBlockByNumber / eth_getLogs calls per HTTP batch
    uint64_t pending_blocks_max{2'000};       // unfinalized blocks followed ahead of the final one
    size_t prefetch_ranges_max{4};            // catch-up ranges fetched ahead of the database
    size_t fetchers{2};                       // catch-up ranges fetched at the same time
    VerifyMode verify{VerifyMode::Bloom};
    size_t quorum{2};                         // VerifyMode::Quorum: endpoints that must agree
    bool reconcile{true};
    uint32_t reconcile_interval_ms{60'000};
    std::filesystem::path identity_path;      // remembers chain id, start block and its hash
    RpcClientOptions rpc;
    TimeSource* clock{nullptr};                    // null: SystemClock(); the simulator's ManualClock
};

struct ReconcileStatus {
    bool checked{false};
    uint64_t block_number{0};
    std::string escrow_balance_chain;  // USDC held by the escrow, from eth_call
    std::string escrow_locked_ledger;  // USDC in open orders, from the projections
    std::string vault_shares_chain;    // totalSupply()
    std::string vault_shares_ledger;
    std::string vault_assets_chain;    // totalAssets(): includes yield, so informational
    bool escrow_matches{true};
    bool shares_match{true};
    uint64_t drifts{0}; // checks that found a difference
    uint64_t errors{0}; // checks that could not be made
    uint64_t checked_time{0}; // unix seconds of the last check made (0: none yet)
};

struct FollowerStatus {
    enum class State { Starting, CatchingUp, Following, Failed, Stopped };
    State state{State::Starting};
    std::string error;            // why the follower failed or what last went wrong
    uint64_t head_block{0};       // the node's latest
    uint64_t head_changed_unix_s{0}; // when head_block last changed (0: never seen), by the follower's clock
    uint64_t node_final_block{0}; // the node's finalized block by our rule
    std::optional<uint64_t> final_block; // ours: the "evm" cursor
    std::optional<uint64_t> pending_tip;
    Hash256 pending_digest{};     // SHA-256 over the pending events' leaves, in order
    uint64_t events_final{0};     // appended by this process
    uint64_t events_pending{0};   // now in the overlay
    uint64_t raw_logs{0};
    uint64_t reorgs{0};
    uint64_t reorg_depth_max{0};
    uint64_t inconsistent_answers{0}; // answers refused: hash mismatch, wrong block, bad JSON
    uint64_t verify_refusals{0};      // answers that failed -evmverify (a header, a bloom, receipts, a quorum)
    uint64_t receipts_checked{0};     // blocks whose receipts were checked against receiptsRoot
    uint64_t quorum_checks{0};        // final ranges that a quorum of endpoints agreed on
    uint64_t range_shrinks{0};
    uint64_t range_blocks{0};
    RpcClientStats rpc;
    ReconcileStatus reconcile;
    // Where catch-up time went, summed over catch-ups (seconds). The fetcher thread:
    struct CatchUpTiming {
        double logs_http_s{0};    // eth_getLogs: the HTTP exchange
        double logs_parse_s{0};   // eth_getLogs: JSON text to logs (simdjson)
        double headers_s{0};      // header batches, all included
        double decode_s{0};       // checks and ABI decoding into ledger events
        double queue_full_s{0};   // waiting for the database to take a range
        double receipts_http_s{0};  // -evmverify=receipts: eth_getBlockReceipts exchanges
        double receipts_check_s{0}; // -evmverify=receipts: their JSON, encoding, trie roots, comparisons
        double quorum_s{0};         // -evmverify=quorum: asking every endpoint
        // The follower thread:
        double append_s{0};       // ledger appends
        double queue_empty_s{0};  // waiting for the network
        double wall_s{0};
        uint64_t ranges{0};
        uint64_t events{0};
    } catch_up;
    // Block returned by the node -> its events in the pending overlay.
    double visible_latency_ms_p50{0};
    double visible_latency_ms_p99{0};
    double visible_latency_ms_max{0};
    uint64_t visible_latency_samples{0};
    uint64_t visible_latency_count{0};        // every sample since start, for a summary's _count
    double visible_latency_seconds_sum{0};    // and its _sum
};

std::string_view FollowerStateName(FollowerStatus::State state);

class EvmFollower {
public:
    // on_fatal is called once, from the follower thread, when following cannot go on
    // without an operator (a wrong chain, a reorg below the final block).
    EvmFollower(FollowerOptions options, ledger::Ledger& ledger, std::function<void(const std::string&)> on_fatal);
    ~EvmFollower();
    EvmFollower(const EvmFollower&) = delete;
    EvmFollower& operator=(const EvmFollower&) = delete;

    void Start();
    void Stop();
    FollowerStatus status() const;

    // Without the thread (the simulator, single-threaded; set fetchers to 0 so that a
    // catch-up fetches inline): the start-up checks until they pass, then one step of
    // following. Returns what the driver should do next and how long to wait first.
    enum class Next { Now, Poll, Retry, Failed };
    struct StepResult {
        Next next{Next::Now};
        uint64_t wait_ms{0};
    };
    StepResult StepOnce();

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::evm
