// The simulated bitcoind's insides (sim_btc.h is its face): transactions as bytes, the
// chain, the mempool, the wallet (sim_btc.cpp) and the JSON-RPC methods (sim_btc_rpc.cpp).
// Not thread-safe: SimBitcoind holds the lock around every use.
#pragma once

#include "tests/sim/sim_btc.h"
#include "tests/sim/sim_evm.h" // Prng

#include <nlohmann/json.hpp>

#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bitacora::sim::btcsim {

using ojson = nlohmann::ordered_json; // answers keep bitcoind's key order

inline constexpr uint32_t kRegtestBits = 0x207fffff;
inline constexpr int32_t kBlockVersion = 0x20000000;
inline constexpr uint32_t kHalvingInterval = 150;          // regtest
inline constexpr int64_t kMinRelayFeeSatKvb = 100;         // v31: 0.1 sat/vB
inline constexpr int64_t kIncrementalRelayFeeSatKvb = 100;
inline constexpr int64_t kWalletIncrementalFeeSatKvb = 5000;
inline constexpr int64_t kMaxRawTxFeeRateSatKvb = 10'000'000; // sendrawtransaction's maxfeerate 0.10 BTC/kvB
inline constexpr int64_t kMaxTxFeeSat = kCoin / 10;            // -maxtxfee
inline constexpr int64_t kDustRelayFeeSatKvb = 3000;
inline constexpr int64_t kMaxMoneySat = 21'000'000 * kCoin;
inline constexpr size_t kMempoolTxsMax = 20'000;
inline constexpr size_t kTxIoCountMax = 100'000;
inline constexpr size_t kBatchCallsMax = 10'000;
inline constexpr uint32_t kSequenceRbf = 0xfffffffd;
inline constexpr uint32_t kSequenceFinalMinus1 = 0xfffffffe;
inline constexpr uint32_t kSequenceFinal = 0xffffffff;

struct Outpoint {
    Hash256 txid{};
    uint32_t n{0};
    bool operator==(const Outpoint&) const = default;
    bool operator<(const Outpoint& o) const { return txid != o.txid ? txid < o.txid : n < o.n; }
};
struct HashKey {
    size_t operator()(const Hash256& h) const
    {
        uint64_t x = 0;
        std::memcpy(&x, h.data(), sizeof x);
        return static_cast<size_t>(x);
    }
};
struct OutpointKey {
    size_t operator()(const Outpoint& o) const { return HashKey{}(o.txid) ^ (o.n * 0x9e3779b97f4a7c15ull); }
};

struct TxIn {
    Outpoint prev;
    Bytes script_sig;
    uint32_t sequence{kSequenceFinal};
    std::vector<Bytes> witness;
};
struct TxOut {
    int64_t value{0};
    Bytes script;
};
struct Tx {
    int32_t version{2};
    std::vector<TxIn> vin;
    std::vector<TxOut> vout;
    uint32_t lock_time{0};
    // Set by Seal from the fields above.
    Bytes raw;  // with witness
    Hash256 txid{};
    Hash256 wtxid{};
    size_t stripped_size{0};
    size_t weight{0};
    size_t vsize{0};

    bool HasWitness() const;
    bool IsCoinbase() const;
    int64_t ValueOut() const;
};

Bytes SerializeTx(const Tx& tx, bool witness);
void Seal(Tx& tx);
// As bitcoind's DecodeHexTx: the extended (witness) form first, then the legacy one.
std::optional<Tx> DecodeTx(std::span<const uint8_t> bytes, bool try_witness = true, bool try_legacy = true);
Bytes PushData(std::span<const uint8_t> data);
Bytes PushInt(int64_t n);
std::string Display(const Hash256& hash);
int64_t FeeFor(int64_t rate_sat_kvb, size_t vsize); // CFeeRate::GetFee, rounded up
enum class ScriptKind { P2wpkh, P2tr, P2pkh, P2sh, P2wsh, NullData, NonStandard };
ScriptKind KindOf(std::span<const uint8_t> script);
int64_t DustThreshold(std::span<const uint8_t> script);
std::string SegwitAddress(std::span<const uint8_t> script); // bcrt1…; "" for other scripts
std::string FormatMoney(int64_t sat);  // as bitcoind's messages print amounts: 0.0000046
ojson Amount(int64_t sat);             // an exact JSON number (see DumpAnswer)
std::string DumpAnswer(const ojson& value);

struct RpcError {
    int code{0};
    std::string message;
};

struct TxReject {
    enum class Kind { Invalid, MissingInputs, MaxFee } kind{Kind::Invalid};
    std::string reason;
};

struct Block {
    uint32_t index{0};   // in Node::blocks
    int64_t parent{-1};  // index of the parent; -1: genesis
    uint64_t height{0};
    Hash256 hash{};
    std::array<uint8_t, 80> header{};
    int32_t version{kBlockVersion};
    Hash256 merkle_root{};
    uint32_t time{0};
    uint32_t nonce{0};
    std::vector<Hash256> txids;
    Bytes raw;
    size_t stripped_size{0};
    size_t weight{0};
    bool have_data{true};
};

struct MempoolEntry {
    int64_t fee{0};
    uint32_t time{0};
    uint64_t height{0};
    uint64_t seq{0};
    bool unbroadcast{true};
    bool background{false}; // another user's: a reorg's new branch may mine only these
};

struct WalletKey {
    Hash256 secret{};
    bool change{false};
};

struct WalletTx {
    uint64_t order{0};
    uint32_t time{0};
    std::optional<Hash256> replaced_by;
    std::optional<Hash256> replaces;
};

struct Funded {
    Tx tx;
    int64_t fee{0};
    int changepos{-1};
};

struct Node {
    explicit Node(const BtcConfig& config);

    // --- chain (sim_btc.cpp) ---
    uint64_t Height() const { return canonical.size() - 1; }
    const Block& Tip() const { return blocks[canonical.back()]; }
    const Block* FindBlock(const Hash256& hash) const;
    bool IsCanonical(const Block& block) const;
    uint32_t MedianTimePast(const Block& block) const;
    uint32_t Now() const { return Tip().time + 1; }
    Hash256 MineBlock(bool take_mempool);
    std::vector<Hash256> DisconnectTip(); // its transactions but the coinbase
    BtcReorgReport Reorg(uint32_t depth, bool keep_mempool_txs, uint32_t new_blocks);
    void Restart(bool forget_mempool);
    void Prune(uint64_t height);
    uint64_t funding_height{0}; // the wallet's coins: reorgs stop above

    // --- mempool ---
    const TxOut* Coin(const Outpoint& op) const; // from a canonical or mempool tx, or foreign; spent or not
    std::optional<TxReject> Accept(const Tx& tx, bool bypass_limits, std::optional<int64_t> max_fee_rate_sat_kvb);
    void RemoveRecursive(const Hash256& txid);
    std::vector<Hash256> Parents(const Tx& tx) const;
    std::vector<Hash256> Children(const Hash256& txid) const;
    std::vector<Hash256> Descendants(const Hash256& txid) const;
    std::vector<Hash256> Ancestors(const Hash256& txid) const;
    void EvictInvalid();       // what spends vanished or chain-spent coins, with descendants
    std::vector<Hash256> MempoolBySeq() const;

    // --- wallet ---
    bool IsMine(std::span<const uint8_t> script) const;
    bool IsChange(std::span<const uint8_t> script) const;
    void WalletNotify(const Tx& tx);
    void MarkReplaced(const Hash256& old_txid, const Hash256& new_txid);
    int64_t Depth(const Hash256& txid, int level = 0) const;
    bool Trusted(const Hash256& txid, int level = 0) const;
    int64_t Debit(const Tx& tx) const;
    std::vector<std::pair<Outpoint, TxOut>> AvailableCoins() const;
    int64_t Balance() const;
    Bytes ChangeScript(uint32_t index) const;
    std::vector<std::pair<Outpoint, TxOut>> FundingCandidates(const Tx& tmpl) const;
    Funded Fund(const Tx& tmpl, int64_t rate_sat_kvb, bool replaceable); // throws RpcError(-4)
    Tx Sign(const Tx& tx, ojson& errors) const;
    size_t EstimateVsize(const Tx& tx) const; // signed, at the sizes the wallet assumes
    void LoadWallet();         // and resubmit its unconfirmed transactions

    // --- JSON-RPC (sim_btc_rpc.cpp) ---
    HttpReply Serve(const std::string& url, const std::string& body, size_t answer_bytes_max);

    BtcConfig cfg;
    Prng chain_prng;   // blocks, background transactions, reorg branches
    Prng wallet_prng;  // change positions
    Prng fault_prng;   // faults
    Prng restart_prng; // refusals and warmup after a restart
    BtcFaults faults;
    bool quiet{false};

    std::vector<Block> blocks;       // every block made, canonical or not
    std::vector<uint32_t> canonical; // index into blocks per height
    std::unordered_map<Hash256, uint32_t, HashKey> by_hash;
    std::unordered_map<Hash256, Tx, HashKey> txs; // every transaction seen, by txid
    // The OP_RETURNs of each block, by its hash (a block never changes), for the
    // reference model's ConfirmedPayloads: looked up, not found again at every check.
    mutable std::unordered_map<Hash256, std::vector<BtcPayload>, HashKey> payloads_of;
    std::unordered_map<Outpoint, TxOut, OutpointKey> foreign; // coins of transactions not modelled
    std::unordered_map<Hash256, BtcTxLocation, HashKey> confirmed;       // canonical
    std::unordered_map<Outpoint, Hash256, OutpointKey> chain_spends;     // canonical
    std::unordered_map<Hash256, MempoolEntry, HashKey> mempool;
    std::unordered_map<Outpoint, Hash256, OutpointKey> mempool_spends;
    uint64_t mempool_seq{0};
    uint64_t prune_below{0};

    bool wallet_loaded{true};
    std::map<Bytes, WalletKey> wallet_keys;
    std::unordered_map<Hash256, WalletTx, HashKey> wallet_txs;
    std::unordered_map<Outpoint, std::vector<Hash256>, OutpointKey> wallet_spends;
    uint64_t wallet_order{0};
    uint32_t next_change{0};
    Bytes miner_script;

    uint32_t down_left{0};   // requests still refused after a restart
    uint32_t warmup_left{0}; // then answered -28
    BtcNodeStats stats;

private:
    void MakeGenesis();
    void FundWallet();
    void AddBackgroundTxs();
    Tx BackgroundTx();
    std::vector<Hash256> SelectForBlock(bool take_mempool) const;
    Tx Coinbase(uint64_t height, int64_t fees, const std::vector<Hash256>& wtxids);
    void Connect(uint32_t index);
    void Commit(const Tx& tx, int64_t fee, const std::vector<Hash256>& replaced);
    void RemoveOne(const Hash256& txid);
    std::optional<TxReject> CheckReplacement(const Tx& tx, int64_t fee, const std::vector<Hash256>& conflicts,
                                             const std::vector<Hash256>& all_conflicts) const;
    std::optional<TxReject> CheckStandard(const Tx& tx) const;
    std::optional<TxReject> CheckWitnesses(const Tx& tx) const;
    bool WalletSpent(const Outpoint& op) const;
};

} // namespace bitacora::sim::btcsim
