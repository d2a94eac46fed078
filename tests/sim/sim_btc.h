// The simulator's Bitcoin side (issue #14): a deterministic regtest bitcoind with its
// wallet, answering the real bitcoind client (indexer/btc/bitcoind_rpc.h) through its
// HttpTransport seam as a real node does (shapes, codes and messages from the captures in
// ../shared/fixtures/bitcoind/ and tests/integration/btc_double.py). One seed decides
// every block, background transaction, wallet coin, change position and fault; nothing
// reads the time or the system's randomness.
//
// Blocks are real consensus serializations (80-byte headers whose double SHA-256 is the
// block hash and meets regtest's target, BIP-34 coinbases with a witness commitment, a
// Merkle root over the txids); transactions are real segwit serializations whose txids
// and wtxids are computed from them. Signatures are not: a signature is a DER-shaped
// string of bytes, and the node checks only the shape of a witness.
//
// What a real node has and this one has not: ZMQ (getzmqnotifications answers []),
// addresses (createrawtransaction takes only "data" outputs; no getnewaddress), descriptors
// (no parent_descs), fee estimation (conf_target uses -fallbackfee), getblock verbosity 2
// and 3 (answered as 1), subtractFeeFromOutputs, full help texts (a wrong parameter count
// gets the signature line only), cluster linearization (getmempoolentry's chunk is the
// transaction, or it with its ancestors when they pay less), coinbase maturity checks.
//
// Thread-safe: the harness may mine while the daemon's threads call (a mutex around all).
#pragma once

#include "common/hex.h"
#include "common/http_transport.h"
#include "common/sha256.h"
#include "common/sync.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bitacora::sim {

namespace btcsim {
struct Node; // the state, in sim_btc_node.h
}

inline constexpr int64_t kCoin = 100'000'000;

struct BtcFaults {
    // Per HTTP request.
    double transport{0};  // refused or reset: Outcome::Transport
    double warmup{0};     // -28 "Loading block index…" (HTTP 200, as JSON-RPC 2.0 errors are)
    double http_500{0};   // HTTP 500 with an empty body
    double truncated{0};  // cut short: curl's partial-transfer error, or a 200 body cut at a random byte
    // Per fundrawtransaction or bumpfee: the wallet answers as if it could not pay
    // (-4 "Insufficient funds", as fundrawtransaction does; sendtoaddress would say -6).
    double insufficient_funds{0};

    // Every probability scaled from the seed; intensity 1 is a hostile but workable node.
    static BtcFaults FromSeed(uint64_t seed, double intensity);
};

struct BtcConfig {
    uint64_t seed{1};
    std::string wallet{"anchor"};         // the wallet loaded at start (its URL path /wallet/<name>)
    // Mined at construction. The wallet's coins confirm in block 102 (block 1's coinbase,
    // matured) or in the last of these if fewer; reorgs never reach below that block.
    uint32_t initial_blocks{120};
    uint32_t wallet_coins{8};             // the coins the wallet funds from, of seeded amounts
    int64_t wallet_coin_sat_min{200'000};
    int64_t wallet_coin_sat_max{2 * kCoin};
    uint32_t background_txs_max{4};       // other users' transactions entering the mempool per block mined
    double background_op_return_probability{0.3}; // per background tx: an OP_RETURN (some start "BTCR")
    uint32_t block_vbytes_max{1'000'000}; // Mine's limit on the transactions' vsize per block
    uint32_t block_time_s{600};
    uint32_t start_time{1'795'837'864};   // block 1's time (genesis keeps regtest's)
    uint64_t fallback_fee_sat_kvb{20'000}; // -fallbackfee=0.0002, as the captures' node
    // After Restart: requests refused while the node starts (0..max), then -28 answers.
    uint32_t restart_down_requests_max{2};
    uint32_t restart_warmup_requests_max{3};
    bool pruned{true};                    // -prune (manual, as the captures' node)
    BtcFaults faults{};

    // Background load, block space and faults decided by the seed.
    static BtcConfig FromSeed(uint64_t seed, double fault_intensity);
};

// Where a transaction is in the canonical chain.
struct BtcTxLocation {
    uint64_t height{0};
    Hash256 block_hash{};  // internal byte order, as block.h's hashes
    uint32_t position{0};  // index in the block (0: the coinbase)
};

// One OP_RETURN output of a confirmed transaction (coinbases' witness commitments left out).
struct BtcPayload {
    uint64_t height{0};
    Hash256 block_hash{};
    Hash256 txid{};
    uint32_t position{0};
    uint32_t vout{0};
    Bytes data;  // what the single push carries
    bool operator==(const BtcPayload&) const = default;
};

struct BtcReorgReport {
    uint64_t fork_height{0};    // the first height replaced; 0: nothing happened
    uint32_t disconnected{0};
    uint32_t connected{0};
    uint32_t txs_returned{0};   // reorged-out transactions back in the mempool
    uint32_t txs_dropped{0};    // ... or forgotten (with their mempool descendants)
    bool clamped{false};        // the depth stopped above the pruned blocks or genesis
};

struct BtcNodeStats {
    uint64_t http_requests{0};
    uint64_t calls{0};
    uint64_t rpc_errors{0};       // answered with a JSON-RPC error (faults included)
    uint64_t blocks_mined{0};     // every block made, canonical or not
    uint64_t blocks_served{0};    // getblock answers with the block
    uint64_t bytes_served{0};
    uint64_t txs_accepted{0};     // into the mempool (replacements included)
    uint64_t replacements{0};     // BIP-125 replacements (bumpfee or sendrawtransaction)
    uint64_t wallet_loads{0};
    uint64_t restarts{0};
    // Faults that fired.
    uint64_t down{0};             // refused while restarting
    uint64_t transport{0};
    uint64_t warmup{0};           // of the fault, and while restarting
    uint64_t http_500{0};
    uint64_t truncated{0};
    uint64_t insufficient_funds{0};

    uint64_t faults() const;
    std::string ToString() const; // one line, "name=value" pairs
};

class SimBitcoind final : public HttpTransport {
public:
    explicit SimBitcoind(BtcConfig config);
    ~SimBitcoind() override;
    SimBitcoind(const SimBitcoind&) = delete;
    SimBitcoind& operator=(const SimBitcoind&) = delete;

    // One JSON-RPC request or batch; `url` ends in the path (/ or /wallet/<name>).
    HttpReply Post(const std::string& url, const std::string& body, size_t answer_bytes_max) override
        LOCKS_EXCLUDED(m_mutex);

    // --- the harness's operations ---
    // Mines blocks on the tip: each takes the mempool by fee rate (parents first) up to
    // block_vbytes_max, after 0..background_txs_max other users' transactions arrive.
    std::vector<Hash256> Mine(uint32_t blocks) LOCKS_EXCLUDED(m_mutex);
    // Replaces the last `depth` blocks by `new_blocks` others (0: depth + 1, the more work a
    // real reorg needs). Their transactions go back to the mempool (keep_mempool_txs), or
    // are forgotten by it (the wallet still knows its own) with every descendant; the new
    // branch re-mines the mempool in some blocks and not in others (as the seed decides).
    BtcReorgReport Reorg(uint32_t depth, bool keep_mempool_txs, uint32_t new_blocks = 0) LOCKS_EXCLUDED(m_mutex);
    // bitcoind restarting: a few requests refused, then a few -28; the wallet unloaded
    // until loadwallet (-18 before); the mempool forgotten, or kept (mempool.dat).
    // loadwallet resubmits the wallet's unconfirmed transactions, as bitcoind does.
    void Restart(bool forget_mempool) LOCKS_EXCLUDED(m_mutex);
    // Blocks below `height` lose their data (getblock: -1 "Block not available (pruned
    // data)"); their headers stay. The genesis block is never pruned.
    void Prune(uint64_t height) LOCKS_EXCLUDED(m_mutex);
    void SetFaults(const BtcFaults& faults) LOCKS_EXCLUDED(m_mutex);
    // Quiet: no fault fires (restarts still refuse and warm up).
    void SetQuiet(bool quiet) LOCKS_EXCLUDED(m_mutex);

    // --- the reference model's queries ---
    uint64_t Height() const LOCKS_EXCLUDED(m_mutex);
    Hash256 CanonicalHash(uint64_t height) const LOCKS_EXCLUDED(m_mutex); // height <= Height()
    std::optional<BtcTxLocation> Confirmed(const Hash256& txid) const LOCKS_EXCLUDED(m_mutex);
    // Every OP_RETURN of the canonical chain outside coinbases, in chain order.
    std::vector<BtcPayload> ConfirmedPayloads() const LOCKS_EXCLUDED(m_mutex);
    bool InMempool(const Hash256& txid) const LOCKS_EXCLUDED(m_mutex);
    size_t MempoolSize() const LOCKS_EXCLUDED(m_mutex);
    bool WalletLoaded() const LOCKS_EXCLUDED(m_mutex);
    uint64_t PruneHeight() const LOCKS_EXCLUDED(m_mutex); // the lowest height with data
    // The serialization getblock 0 serves (also for pruned or stale blocks); none if unknown.
    std::optional<Bytes> BlockBytes(const Hash256& hash) const LOCKS_EXCLUDED(m_mutex);
    // The wallet's spendable balance (confirmed and its own unconfirmed change).
    int64_t WalletBalanceSat() const LOCKS_EXCLUDED(m_mutex);
    BtcNodeStats stats() const LOCKS_EXCLUDED(m_mutex);
    const BtcConfig& config() const { return m_config; }

private:
    const BtcConfig m_config;
    mutable Mutex m_mutex;
    std::unique_ptr<btcsim::Node> m_node PT_GUARDED_BY(m_mutex);
};

} // namespace bitacora::sim
