// The simulator's EVM side (issue #14): a deterministic chain of the platform's events
// and a JSON-RPC provider that answers the real client through its HttpTransport seam,
// with the faults real providers have. One seed decides every block, log, tag, fault and
// answer; nothing reads the time or the system's randomness.
//
// SimChain is the truth the reference model reads (canonical blocks, orphans, finality);
// SimProvider is what the follower sees of it. Both are for one thread.
#pragma once

#include "common/clock.h"
#include "common/hex.h"
#include "common/sha256.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/json_rpc_client.h"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bitacora::sim {

// xoshiro256** seeded through splitmix64: small, fast, and the same on every platform.
class Prng {
public:
    explicit Prng(uint64_t seed)
    {
        for (auto& word : m_state) word = SplitMix(seed);
    }
    uint64_t Next()
    {
        const uint64_t result = Rotl(m_state[1] * 5, 7) * 9;
        const uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = Rotl(m_state[3], 45);
        return result;
    }
    // [0, n); 0 for n == 0. (The modulo bias is below 2^-40 for the n used here.)
    uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }
    // [lo, hi]
    uint64_t Between(uint64_t lo, uint64_t hi) { return hi <= lo ? lo : lo + Below(hi - lo + 1); }
    double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
    bool Chance(double p) { return p > 0 && Unit() < p; }
    template <size_t N>
    std::array<uint8_t, N> Bytes()
    {
        std::array<uint8_t, N> out{};
        for (size_t i = 0; i < N; i += 8) {
            const uint64_t word = Next();
            for (size_t j = 0; j < 8 && i + j < N; ++j) out[i + j] = static_cast<uint8_t>(word >> (8 * j));
        }
        return out;
    }
    Hash256 Hash() { return Bytes<32>(); }
    // An independent stream for another consumer, so that one's draws never shift the other's.
    Prng Fork() { return Prng(Next() ^ 0x5eed'f0f0'1234'abcdull); }

private:
    static uint64_t SplitMix(uint64_t& x)
    {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::array<uint64_t, 4> m_state{};
};

struct ChainConfig {
    uint64_t seed{1};
    uint64_t chain_id{8453}; // Base
    evm::Address escrow{};
    evm::Address vault{};
    evm::Address token{}; // a third contract (USDC) whose logs the follower must leave out; zero: from the seed
    uint64_t genesis_timestamp{1'700'000'000};
    uint64_t block_time_s{2};
    uint32_t logs_per_block_max{5};       // every contract's logs together
    double empty_block_probability{0.25}; // no platform log (the L1-info deposit is always there)
    double token_log_probability{0.15};   // per block: a USDC Transfer the filter must drop
    double raw_log_probability{0.01};     // per escrow action: an event the ledger keeps raw
    uint32_t users{12};                   // distinct user addresses
    uint32_t open_orders_max{256};        // no new order while this many are open
    // Real receipts and a receiptsRoot of them, for -evmverify=receipts (the trie costs
    // about 3/4 of a block's generation); without, receiptsRoot is random and the provider
    // answers eth_getBlockReceipts with method-not-found.
    bool receipts{false};
    // Tags: on some blocks safe moves up to head - safe_lag and finalized to head -
    // finalized_lag (finality arrives in batches, as the L1 posts and finalizes).
    uint64_t safe_lag{4};
    uint64_t finalized_lag{16};
    double safe_step_probability{0.5};
    double finalized_step_probability{0.15};

    // Varied lags, step probabilities and densities, decided by the seed.
    static ChainConfig FromSeed(uint64_t seed, const evm::Address& escrow, const evm::Address& vault);
};

struct SimTx {
    Hash256 hash{};
    uint8_t type{2};                // 0x7e: the L1-info deposit at index 0
    evm::Address from{};
    evm::Address to{};
    uint64_t gas_used{0};
    uint64_t cumulative_gas_used{0};
    uint32_t logs_begin{0};         // its logs: SimBlock::logs[logs_begin, logs_end)
    uint32_t logs_end{0};
};

// A block as a node holds it, with the JSON text a node answers for it.
struct SimBlock {
    uint64_t number{0};
    Hash256 hash{};
    Hash256 parent_hash{};
    uint64_t timestamp{0};
    Hash256 receipts_root{};
    evm::Bloom logs_bloom{};
    uint64_t gas_used{0};
    uint64_t base_fee{0};
    std::vector<SimTx> txs;
    std::vector<evm::Log> logs;       // every contract's, in logIndex order, block_hash set
    std::vector<uint32_t> log_tx;     // each log's transaction index
    std::string json;                 // the eth_getBlockByNumber(…, false) result

    // Log i as eth_getLogs gives it (written when first asked for: most never are).
    std::string_view LogJson(size_t i) const;

private:
    mutable std::string logs_json;    // every log's text, one after another
    mutable std::vector<uint32_t> log_json_end;
};

struct ReorgReport {
    uint64_t fork{0};      // the first height replaced; 0: nothing happened
    uint64_t orphaned{0};  // blocks that left the canonical chain
    uint64_t added{0};     // blocks that replaced them
    bool below_final{false}; // a block the node had called final was replaced
};

class SimChain {
public:
    // Starts with the genesis block (0), final.
    explicit SimChain(ChainConfig config);

    const ChainConfig& config() const { return m_config; }
    void Mine(uint64_t blocks);
    // Replaces the last `depth` blocks by `depth + length_delta` (at least 1) new ones with
    // other hashes and other logs. Without `below_final` the depth stops above the
    // finalized block; with it, finalized blocks may go (the fault the follower must stop on).
    ReorgReport Reorg(uint64_t depth, int64_t length_delta = 0, bool below_final = false);
    // A reorg of 1..depth_max blocks, ending up to 2 shorter or longer, drawn from the seed.
    ReorgReport RandomReorg(uint64_t depth_max, bool below_final = false);

    uint64_t Head() const { return m_canonical.size() - 1; }
    uint64_t SafeNumber() const { return m_safe; }
    uint64_t FinalizedNumber() const { return m_finalized; }
    // The highest height ever called final, and whether a block once final left the chain.
    uint64_t FinalizedHighWater() const { return m_finalized_high; }
    bool FinalityViolated() const { return m_finality_violated; }

    const SimBlock* BlockByNumber(uint64_t number) const; // canonical; null past the head
    const SimBlock* BlockByHash(const Hash256& hash) const; // canonical or orphaned
    const SimBlock& HeadBlock() const { return *BlockByNumber(Head()); }
    Hash256 CanonicalHash(uint64_t number) const;           // number <= Head()
    bool IsCanonical(const Hash256& hash) const;
    // The escrow's and vault's logs of canonical blocks from..to (clamped to the head),
    // in (block, logIndex) order: what the ledger must hold once they are final.
    std::vector<evm::Log> LogsOfCanonicalBlocks(uint64_t from, uint64_t to) const;
    // The same logs counted, and copied from the `first`-th on only (the checks after each
    // step verify the new tail; copying the whole chain's logs each step was quadratic).
    struct LogTail {
        uint64_t count{0};
        std::vector<evm::Log> tail;
    };
    LogTail CanonicalLogsFrom(uint64_t from, uint64_t to, uint64_t first) const;
    std::vector<Hash256> Orphans() const; // in the order they were orphaned
    size_t OrphanCount() const { return m_orphans.size(); }
    uint64_t blocks_generated() const { return m_blocks.size(); }

    // The header as ParseBlockHeader reads it from this block's JSON.
    static evm::BlockHeader Header(const SimBlock& block);
    // The eth_getBlockReceipts result of a block.
    static std::string ReceiptsJson(const SimBlock& block);

    // Addresses the generator uses: users, the arbiter; for tests that want to name them.
    const std::vector<evm::Address>& users() const { return m_users; }

private:
    struct Order {
        uint64_t id{0};
        uint32_t seller{0};
        uint32_t buyer{0};
        uint64_t amount{0};
        uint64_t expiry{0};
        uint8_t status{0}; // 0 created, 1 paid, 2 disputed
    };
    struct State { // what the generator knows of the contracts at the tip
        uint64_t next_order_id{1};
        std::vector<Order> open;
        std::vector<uint64_t> shares;     // vault shares per user
        std::vector<uint8_t> reputation;  // per user
    };
    struct Builder;
    struct HashKey {
        size_t operator()(const Hash256& h) const;
    };

    void MineOne();
    void AdvanceTags();
    void Apply(State& state, const evm::Log& log) const;
    void RebuildState();
    void FillBlock(Builder& builder);
    uint32_t AddAction(Builder& builder, uint32_t logs_left);
    bool EscrowAction(Builder& builder, uint64_t kind, uint32_t logs_left);
    bool VaultAction(Builder& builder, uint64_t kind, uint32_t logs_left);
    uint32_t OtherUser(uint32_t user);
    std::optional<uint32_t> Holder();
    Order* PickOrder(uint8_t status, uint64_t expired_before);
    void Commit(Builder& builder);
    void Seal(Builder& builder);
    // The logsBloom bits of one address or topic, remembered (Keccak is most of the cost).
    struct BloomBits {
        uint8_t count{0};
        std::array<uint8_t, 3> index{};
        std::array<uint8_t, 3> mask{};
    };
    void AddToBloom(evm::Bloom& bloom, std::span<const uint8_t> item);
    uint32_t UserIndex(const evm::Address& address) const;

    ChainConfig m_config;
    Prng m_prng;
    std::vector<evm::Address> m_users;
    evm::Address m_arbiter{};
    std::vector<SimBlock> m_blocks;      // every block ever made, canonical or not
    std::vector<uint32_t> m_canonical;   // index into m_blocks per height
    std::vector<uint32_t> m_orphans;
    std::unordered_map<Hash256, uint32_t, HashKey> m_by_hash;
    std::unordered_map<Hash256, BloomBits, HashKey> m_bloom_bits[2]; // [0] addresses, [1] topics
    State m_state;
    std::unordered_map<uint32_t, State> m_snapshots; // after blocks at heights kSnapshotEvery * k
    uint64_t m_safe{0};
    uint64_t m_finalized{0};
    uint64_t m_finalized_high{0};
    bool m_finality_violated{false};
};

// --- the provider ---

// The eth_getLogs limits of ../shared/fixtures/evm/getlogs-limit-errors.md: each answers
// a query over its limit with that provider's error and phrase.
enum class LogLimit : uint8_t {
    None, Alchemy, Infura, BaseRange, BaseNoBackend, OptimismRange, OptimismSize, Coinbase, QuickNode, BlockPi,
    OneRpcSize, Geth, LlamaRpc, AnkrWide, AnkrDistance, Arbitrum, Avalanche, Cloudflare, Thirdweb, Chainstack,
    Blast, PublicNode, Hyperliquid, Moonriver, Aurora, Harmony, Swell, Somnia, Merkle,
};
inline constexpr size_t kLogLimitCount = 29; // with None
enum class LimitUnit : uint8_t { Blocks, Results, Bytes };
std::string_view LogLimitName(LogLimit limit);
// The fixture's phrase that the provider's error carries (lower case; the error may not be).
std::string_view LogLimitPhrase(LogLimit limit);
LimitUnit LogLimitUnit(LogLimit limit);

struct FaultConfig {
    // Per HTTP request.
    double transport{0};    // refused, reset or timed out (Outcome::Transport)
    double http_500{0};
    double rate_limit{0};   // HTTP 429 with Retry-After
    double truncated{0};    // a 200 whose body is cut at a random byte
    double too_large{0};    // Outcome::TooLarge, as if the answer outgrew answer_bytes_max
    // Per call (each item of a batch).
    double rpc_error{0};    // a JSON-RPC error object (internal error, header not found, rate limit)
    double wrong_id{0};     // the answer carries another id
    double lie_header_hash{0};   // per block answered: fields that do not hash to its hash
    double lie_log_block_hash{0}; // per eth_getLogs answer with logs: one log has another block's hash
    double lie_header_height{0};  // per eth_getBlockByNumber(0x…): a block of another height
    uint64_t retry_after_s_max{3};
    uint64_t timeout_ms{30'000}; // advanced on the clock when a transport fault is a timeout

    // Every probability scaled from the seed; intensity 1 is a hostile but workable provider.
    static FaultConfig FromSeed(uint64_t seed, double intensity);
};

struct ProviderConfig {
    uint64_t seed{1};
    LogLimit log_limit{LogLimit::None};
    uint64_t log_limit_value{0}; // blocks, results or bytes as the limit counts; 0: from the seed
    FaultConfig faults{};
    bool shuffle_batches{true};  // batch answers in another order, as real nodes do
    bool receipts{true};         // eth_getBlockReceipts answered if the chain has receipts; else method not found
    bool orphans_by_hash{true};  // by-hash requests answer orphaned blocks too, as geth does
    uint64_t latency_ms{0};      // advanced on the clock per request

    // A provider profile, a limit and faults decided by the seed.
    static ProviderConfig FromSeed(uint64_t seed, double fault_intensity);
};

struct ProviderStats {
    uint64_t http_requests{0};
    uint64_t batches{0};
    uint64_t calls{0};
    uint64_t get_block_by_number{0};
    uint64_t get_block_by_hash{0};
    uint64_t get_logs{0};
    uint64_t get_block_receipts{0};
    uint64_t chain_id{0};
    uint64_t other_methods{0};   // answered or not
    uint64_t method_not_found{0};
    uint64_t blocks_served{0};
    uint64_t logs_served{0};
    uint64_t bytes_served{0};
    uint64_t shuffled_batches{0};
    uint64_t limit_errors{0};    // eth_getLogs over the provider's limit
    uint64_t over_answer_cap{0}; // an honest answer over answer_bytes_max: TooLarge
    // Faults that fired.
    uint64_t transport{0};
    uint64_t timeouts{0};        // of transport
    uint64_t http_500{0};
    uint64_t rate_limited{0};
    uint64_t truncated{0};
    uint64_t too_large{0};
    uint64_t rpc_errors{0};
    uint64_t wrong_ids{0};
    uint64_t lie_header_hash{0};
    uint64_t lie_log_block_hash{0};
    uint64_t lie_header_height{0};

    uint64_t faults() const;
    std::string ToString() const; // one line, "name=value" pairs
};

class SimProvider final : public evm::HttpTransport {
public:
    // One call of a request, as read from its JSON: only `params` becomes a JSON value.
    struct Call {
        bool is_object{false};
        std::string id{"null"};             // the id's JSON text
        std::optional<uint64_t> id_number;  // when the id is an unsigned number
        std::optional<std::string> method;  // when it is a string
        nlohmann::json params;              // null when absent
    };
    // The chain is read at each request (the simulator mines and reorgs between them);
    // `clock`, if given, is advanced by latency and timeouts.
    SimProvider(const SimChain& chain, ProviderConfig config, ManualClock* clock = nullptr);

    evm::HttpReply Post(const std::string& url, const std::string& body, size_t answer_bytes_max) override;

    // Quiet: no fault fires (limits stay: they are the node's rules, not faults).
    void SetQuiet(bool quiet) { m_quiet = quiet; }
    bool quiet() const { return m_quiet; }
    void SetFaults(const FaultConfig& faults) { m_config.faults = faults; }
    const ProviderConfig& config() const { return m_config; }
    const ProviderStats& stats() const { return m_stats; }
    // The limit in its unit (LogLimitUnit) as this provider enforces it; 0: none.
    uint64_t LogLimitValue() const { return m_limit_value; }

private:
    struct Answer;
    std::string Respond(const std::string& body);
    struct RequestParser; // simdjson's, kept between requests
    std::shared_ptr<RequestParser> m_request_parser;
    std::string AnswerCall(const Call& call);
    Answer RandomRpcError();
    Answer Dispatch(const std::string& method, const nlohmann::json& params);
    Answer GetBlockByNumber(const nlohmann::json& params);
    Answer GetBlockByHash(const nlohmann::json& params);
    Answer GetLogs(const nlohmann::json& params);
    Answer GetBlockReceipts(const nlohmann::json& params);
    Answer LimitError(uint64_t from, uint64_t to);
    std::string BlockJson(const SimBlock& block);
    const SimBlock* ByHash(const nlohmann::json& value) const;
    bool Fault(double probability);
    std::optional<evm::HttpReply> HttpFault();

    const SimChain& m_chain;
    ProviderConfig m_config;
    ManualClock* m_clock;
    Prng m_prng;
    uint64_t m_limit_value{0};
    bool m_quiet{false};
    ProviderStats m_stats;
};

} // namespace bitacora::sim
