// The anchorer's decisions, apart from its effects. Each function takes what the driver
// (anchorer.cpp) observed in the ledger, the wallet and the chain, and returns what to do
// next; the driver makes the calls, persists the records and logs. No I/O, no clock and
// no lock here, so unit tests and the simulator can drive every decision directly.
#pragma once

#include "common/result.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "ledger/anchors.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bitacora::btc::anchor {

// What the operator configured (AnchorerOptions without the clock).
struct Policy {
    bool enabled{false};
    uint32_t interval_s{3'600};
    std::optional<double> fee_rate_sat_vb; // else conf_target with bitcoind's estimate
    uint32_t conf_target{6};
    uint32_t bump_after_blocks{3};
    uint32_t bumps_max{10};
    uint32_t final_confirmations{6};
};

// --- a step of the state machine ---

struct StepFacts {
    std::optional<ledger::AnchorRecord> latest;    // the newest anchor
    std::optional<ledger::AnchorRecord> last_good; // the newest one not abandoned
    uint64_t log_size{0};                          // the log's tree size
    uint64_t log_events{0};                        // its events that are not anchor events
    uint64_t tip_height{0};
    uint64_t now_s{0};
    uint64_t retry_at_s{0};     // after an error, no automatic work before this
    uint64_t started_s{0};
    bool requested{false};      // admin_anchorNow is waiting
    bool sources_synced{false}; // every follower caught up
};

struct StepAction {
    enum class Kind {
        Wait,            // nothing now (interval, retry, or a confirmed anchor not final yet)
        WaitFollowers,   // the first anchor waits for the followers to catch up
        MarkFinal,       // `record` reached its confirmations: persist it as final
        Continue,        // carry the active `record` on: sign, send, watch
        NothingToAnchor, // no event since the last anchor
        Plan,            // persist the new `record` (its root: the log's at its tree size)
    };
    Kind kind{Kind::Wait};
    ledger::AnchorRecord record;
    std::string outcome; // for a waiting admin_anchorNow (Wait and NothingToAnchor)
};

StepAction DecideStep(const Policy& policy, const StepFacts& facts);

// --- signing and sending ---

// The fee of a funding (bump == 0) or of the bump-th fee bump: a rate, or a target.
struct FeeChoice {
    std::optional<double> fee_rate_sat_vb;
    std::optional<uint32_t> conf_target;
};
FeeChoice FundingFee(const Policy& policy);
FeeChoice BumpFee(const Policy& policy, uint32_t bump);

struct SignedAnchor {
    Bytes tx;
    Hash256 txid{};
};
// What signrawtransactionwithwallet returned, checked: complete, parseable, and still
// carrying the anchor's payload (a wallet must not have dropped it while funding).
Result<SignedAnchor> CheckSigned(std::string_view hex, bool complete, std::span<const uint8_t> payload);

// How sendrawtransaction ended, for a transaction already signed.
enum class SendOutcome {
    Accepted,       // in the mempool (or already there)
    AlreadyInChain, // mined already: as good as accepted
    Rejected,       // it can never be valid (inputs spent elsewhere): abandon it
    Failed,         // node down, or another error: retry later
};
SendOutcome ClassifySend(const BtcError* error);

// --- watching a sent transaction (once per new best block) ---

// What the wallet says about the latest transaction (gettransaction).
struct WalletTxFacts {
    bool known{false}; // false: -5 not found (another wallet, or a wiped one)
    std::optional<Hash256> replaced_by;
    int64_t confirmations{0}; // < 0: conflicts with a confirmed transaction
};

enum class WatchAction {
    Wait,             // mined (the follower stores it) or nothing to do this block
    Resend,           // make sure the node has it (idempotent)
    AdoptReplacement, // a bump made but not recorded (a crash after bumpfee)
    Abandon,          // it conflicts with a confirmed transaction
    CheckMempool,     // ask the mempool, then AfterMempool
};
WatchAction AfterWalletTx(const ledger::AnchorRecord& record, const WalletTxFacts& facts);

enum class MempoolAction {
    Wait,   // in the mempool and not lingering, or no bump left
    Resend, // it left the mempool (evicted, or a node restart forgot it)
    Bump,   // in the mempool for bump_after_blocks blocks: bumpfee with BumpFee(k + 1)
};
MempoolAction AfterMempool(const Policy& policy, const ledger::AnchorRecord& record, uint64_t tip_height,
                           bool in_mempool);

// The record after a fee bump to `tx` (fetched from the wallet) at this tip.
ledger::AnchorRecord Bumped(ledger::AnchorRecord record, SignedAnchor tx, uint64_t tip_height);

// --- blocks ---

// The proof material of the anchor's payload in `block`, if a transaction carries it.
std::optional<ledger::AnchorProofMaterial> FindInBlock(const Block& block, uint64_t height, const Hash256& hash,
                                                       std::span<const uint8_t> payload);
// The record once its transaction is in a block of the best chain.
ledger::AnchorRecord Confirmed(ledger::AnchorRecord record, ledger::AnchorProofMaterial proof);

enum class DisconnectAction {
    None,            // the block held none of this record's proof
    BackToBroadcast, // the latest anchor waits for its transaction to be mined again
    Abandon,         // an older anchor: a newer one covers the log now
};
DisconnectAction OnDisconnect(const ledger::AnchorRecord& record, bool is_latest, const Hash256& block_hash);
// The latest record after its block at `height` was disconnected.
ledger::AnchorRecord Unconfirmed(ledger::AnchorRecord record, uint64_t height);

} // namespace bitacora::btc::anchor
