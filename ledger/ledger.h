// The ledger: an append-only event log with an RFC 6962 Merkle tree and projections
// in one RocksDB database, plus an in-memory pending overlay for unfinalized blocks.
// It knows nothing of HTTP, ZMQ or JSON-RPC.
//
// Atomicity: Append() writes the events, the Merkle nodes they complete, the
// projection changes and the source cursors in one WriteBatch, so after a crash the
// log, the tree, the projections and the cursors always agree.
// Sync policy: a batch holding an off-chain or anchor event is written with sync=true
// (an fsync before returning), because the backend is told it is recorded and an
// anchor must never commit to events a power cut could take back; the WAL is
// sequential, so that fsync also makes every earlier batch durable. A batch of
// on-chain events only is written without fsync: a killed process loses nothing
// (the WAL is in the page cache), and a power cut can only cut the log back to an
// earlier consistent prefix, whose cursor makes the follower fetch the rest again.
// LedgerOptions::sync_every_append syncs every batch.
//
// Storage faults: every fsynced batch, the largest signed checkpoint and the latest
// anchor are also recorded in a high-water mark outside RocksDB (high_water_mark.h);
// Open() refuses a log that fell short of it, a WAL damaged in the middle, and a
// missing database where an earlier ledger's files remain. A read error is an error
// for that call (LedgerReadError where no Result is returned), never an abort, and
// marks the ledger degraded (health()).
#pragma once

#include "common/result.h"
#include "common/sha256.h"
#include "common/sync.h"
#include "ledger/anchors.h"
#include "ledger/checkpoint.h"
#include "ledger/event.h"
#include "ledger/high_water_mark.h"
#include "ledger/projections.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rocksdb {
class Env;
}

namespace bitacora::ledger {

struct LedgerOptions {
    uint64_t cache_mib{64};
    bool create_if_missing{true};
    // fsync every append, not only those with off-chain or anchor events.
    bool sync_every_append{false};
    // Where the checkpoint key lives; empty: checkpoints are not available.
    std::filesystem::path checkpoint_key_path;
    // Bounds of the pending overlay: blocks per source, events per block.
    size_t pending_blocks_max{10'000};
    size_t pending_events_per_block_max{100'000};
    // For inspection (bitacora-inspect): nothing is written, appends are refused, and a
    // log short of its high-water mark opens degraded instead of being refused.
    bool read_only{false};
    // Threads that open a family's table files at start (RocksDB's default is 16, per
    // family: the simulator, which reopens a small ledger hundreds of times, uses 1).
    int table_open_threads_max{4};
    rocksdb::Env* env{nullptr}; // null: the default Env. The simulator's fault-injecting file system (tests/sim/fault_fs.h)
};

// A read of the database failed (an I/O error, a corrupt block) or found it
// inconsistent: thrown by the calls that return no Result; those that do return it as
// their error. Either way the ledger is marked degraded.
class LedgerReadError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct LedgerHealth {
    enum class State {
        Ok,
        Degraded, // a read failed or the database is inconsistent: some answers are errors
        ReadOnly, // a write failed (a full disk, an I/O error): appends are refused until a restart
    };
    State state{State::Ok};
    std::string reason; // the first failure, for operators
};
std::string_view LedgerHealthName(LedgerHealth::State state); // "ok", "degraded", "read-only"

// What CheckConsistency() found.
struct ConsistencyReport {
    static constexpr size_t kProblemsMax = 20; // listed; more are counted
    uint64_t tree_size{0};
    Hash256 root{};                // the root the ledger serves
    Hash256 recomputed_root{};     // folded from every leaf, re-read
    uint64_t nodes_checked{0};     // stored Merkle nodes compared with the recomputed ones
    Hash256 state_hash{};          // of the stored projections
    Hash256 derived_state_hash{};  // of the projections re-derived from the log
    std::vector<std::string> problems;
    uint64_t problems_total{0};
    bool ok() const { return problems_total == 0; }
};

// What Backup() wrote: read back from the copy itself, not from the running ledger.
struct BackupResult {
    uint64_t tree_size{0};
    Hash256 root{};
    uint32_t schema_version{0};
    uint64_t anchors{0};                      // anchor records in the copy
    std::optional<AnchorRecord> latest_anchor; // the copy's newest anchor record
    HighWater mark;                           // the high-water mark written into the copy
    bool key_included{false};                 // checkpoint.key copied beside it
    std::optional<XOnlyPubKey> checkpoint_public_key;
};

// The last block of a source (e.g. "evm", "btc") whose events are final in the log.
struct Cursor {
    std::string source;
    uint64_t block_number{0};
    Hash256 block_hash{};
    bool operator==(const Cursor&) const = default;
};

struct AppendResult {
    uint64_t first_index{0}; // index of the first appended event
    uint64_t tree_size{0};
    Hash256 root{};
};

struct InclusionProof {
    uint64_t index{0};
    uint64_t tree_size{0};
    Bytes leaf;
    std::vector<Hash256> path;
    Hash256 root{};
};

struct PendingBlock {
    uint64_t number{0};
    Hash256 hash{};
    std::vector<Event> events;
};

// What changed, for listeners (the ZMQ publisher): events appended to the final log,
// events of a new pending block, or pending events a reorg took back. Every rolled-back
// event was first announced pending.
struct LedgerNotice {
    enum class Type { Appended, Pending, RolledBack };
    Type type{Type::Appended};
    uint64_t first_index{0};  // Appended: the index of events[0]
    std::string source;       // Pending, RolledBack: whose pending blocks
    std::vector<Event> events;
};
using LedgerListener = std::function<void(const LedgerNotice&)>;

class Ledger {
public:
    static constexpr uint32_t kSchemaVersion = 1;
    // Bumped when the projections gain or change keys; an older database rebuilds its
    // projections from the log when opened.
    static constexpr uint32_t kProjectionVersion = 3;
    static constexpr size_t kAppendEventsMax = 100'000;

    static Result<std::unique_ptr<Ledger>> Open(const std::filesystem::path& dir, const LedgerOptions& options);
    ~Ledger();
    Ledger(const Ledger&) = delete;
    Ledger& operator=(const Ledger&) = delete;

    uint32_t schema_version() const { return m_schema_version; }
    LedgerHealth health() const;
    // The high-water mark as last written (none when opened read-only without one).
    std::optional<HighWater> high_water() const LOCKS_EXCLUDED(LockRef());
    // Re-reads every leaf, recomputes the root and every stored Merkle node, checks the
    // high-water mark, re-derives the projections in memory and compares their state
    // hash with the stored one. Reads a snapshot: appends go on meanwhile. A problem
    // found degrades the ledger.
    Result<ConsistencyReport> CheckConsistency() const LOCKS_EXCLUDED(LockRef());
    // A consistent copy of the running ledger (appends go on meanwhile) in `dir`, which
    // must be absolute and absent or empty: dir/ledger is a RocksDB checkpoint (tables
    // hard-linked on the same file system, copied otherwise) with a high-water mark for
    // what it holds, and dir/checkpoint.key (mode 0600) when include_key. The size and
    // root are read back from the copy, so they are exactly what it holds.
    Result<BackupResult> Backup(const std::filesystem::path& dir, bool include_key) const LOCKS_EXCLUDED(LockRef());

    // --- the final log ---
    // Appends events in order and moves the given cursors, atomically.
    Result<AppendResult> Append(const std::vector<Event>& events, const std::vector<Cursor>& cursors = {})
        LOCKS_EXCLUDED(LockRef());
    // Appends a signed off-chain event once per idempotency key; a retry returns the
    // index it got the first time. The signature must verify for `submitter`.
    Result<uint64_t> AppendOffchain(const OffchainEvent& event) LOCKS_EXCLUDED(LockRef());

    uint64_t size() const LOCKS_EXCLUDED(LockRef());
    Hash256 root() const LOCKS_EXCLUDED(LockRef());
    // Unix milliseconds of the last append in this process, or of the open: the root's
    // age on /metrics (the log stores no time of its own for every kind of event).
    int64_t root_time_ms() const;
    Result<Hash256> RootAt(uint64_t tree_size) const LOCKS_EXCLUDED(LockRef());
    std::optional<Cursor> GetCursor(const std::string& source) const;
    Result<Bytes> GetLeaf(uint64_t index) const LOCKS_EXCLUDED(LockRef());
    Result<InclusionProof> ProveInclusion(uint64_t index, uint64_t tree_size) const LOCKS_EXCLUDED(LockRef());
    Result<std::vector<Hash256>> ProveConsistency(uint64_t old_size, uint64_t new_size) const LOCKS_EXCLUDED(LockRef());

    // Signs (size, root, now) with the operator key.
    Result<Checkpoint> SignCheckpoint(uint64_t timestamp) const LOCKS_EXCLUDED(LockRef());
    // Signs an earlier (size, root) of the log, e.g. an anchored one.
    Result<Checkpoint> SignCheckpointAt(uint64_t tree_size, uint64_t timestamp) const LOCKS_EXCLUDED(LockRef());
    std::optional<XOnlyPubKey> checkpoint_public_key() const;

    // --- anchors (ledger/anchors.h) ---
    // Writes the anchor's record, appends its lifecycle events and moves the cursors in
    // one fsynced batch: the record never disagrees with the log.
    Result<AppendResult> PutAnchor(const AnchorRecord& record, const std::vector<Event>& events,
                                   const std::vector<Cursor>& cursors = {}) LOCKS_EXCLUDED(LockRef());
    std::optional<AnchorRecord> GetAnchor(uint64_t id) const;
    // Anchors with id > after_id, ascending, at most limit.
    std::vector<AnchorRecord> ListAnchors(uint64_t after_id, size_t limit) const;
    std::optional<AnchorRecord> LatestAnchor() const;
    // The proven (confirmed or final) anchor of the smallest tree size that holds event
    // `index`, if any.
    std::optional<AnchorRecord> AnchorCovering(uint64_t index) const;

    // --- projections (final, or final plus the pending overlay) ---
    std::optional<OrderRecord> GetOrder(const UInt256& order_id, bool include_pending) LOCKS_EXCLUDED(LockRef());
    std::optional<VaultPosition> GetPosition(const Address& owner, bool include_pending) LOCKS_EXCLUDED(LockRef());
    std::optional<uint8_t> GetReputation(const Address& seller, bool include_pending) LOCKS_EXCLUDED(LockRef());
    Totals GetTotals(bool include_pending) LOCKS_EXCLUDED(LockRef());
    // Orders (final view) by seller or buyer, in order-id order, after `after` (exclusive),
    // at most `limit`: the ids. Stable under appends: new orders have higher ids.
    std::vector<UInt256> OrdersByParty(bool by_seller, const Address& party, const std::optional<UInt256>& after,
                                       size_t limit) const;
    // Indices of an account's events that are not its orders' events (vault, reputation,
    // roles), after `after`, at most `limit`, in log order.
    std::vector<uint64_t> AccountEvents(const Address& account, std::optional<uint64_t> after, size_t limit) const;
    // All orders (final view) after `after`, at most `limit`.
    std::vector<OrderRecord> OrdersAfter(const std::optional<UInt256>& after, size_t limit) const;
    // SHA-256 over every projection entry in key order: equal states, equal hashes.
    Result<Hash256> StateHash() const;
    // Recomputes every projection from the log (bitacorad -rebuild).
    Status RebuildProjections() LOCKS_EXCLUDED(LockRef());

    // --- the pending overlay (volatile: refetched from the chain after a restart) ---
    // Adds the next unfinalized block of a source; it must extend the last one.
    Status AddPendingBlock(const std::string& source, PendingBlock block) LOCKS_EXCLUDED(LockRef());
    // Drops pending blocks above block_number (a reorg back to that ancestor).
    void RollbackPending(const std::string& source, uint64_t block_number) LOCKS_EXCLUDED(LockRef());
    // Appends the pending blocks of `source` up to block_number to the final log, moves
    // the source's cursor to that block and drops them from the overlay, all under one
    // lock, so that no reader sees their events twice or not at all.
    Result<AppendResult> FinalizePending(const std::string& source, uint64_t block_number) LOCKS_EXCLUDED(LockRef());
    // Drops pending blocks at or below block_number (they were appended as final).
    void DropFinalizedPending(const std::string& source, uint64_t block_number) LOCKS_EXCLUDED(LockRef());
    std::vector<PendingBlock> GetPending(const std::string& source) const LOCKS_EXCLUDED(LockRef());

    // Called under the ledger's lock after every append and rollback, in log order; it
    // must only hand the notice on (a bounded queue), never call back into the ledger.
    void SetListener(LedgerListener listener) LOCKS_EXCLUDED(LockRef());

private:
    struct Impl;
    explicit Ledger(std::unique_ptr<Impl> impl);
    // Open()'s second half: schema, tree, high-water mark, key, projection upkeep.
    Status Load() LOCKS_EXCLUDED(LockRef());
    Status RebuildProjectionsLocked() EXCLUSIVE_LOCKS_REQUIRED(LockRef());
    // Makes the log durable up to (size, root) and records a checkpoint of it in the mark.
    Status RecordCheckpointLocked(uint64_t tree_size, const Hash256& root, uint64_t timestamp) const
        EXCLUSIVE_LOCKS_REQUIRED(LockRef());
    Result<AppendResult> AppendLocked(const std::vector<Event>& events, const std::vector<Cursor>& cursors,
                                      const AnchorRecord* anchor = nullptr) EXCLUSIVE_LOCKS_REQUIRED(LockRef());

    // The lock of everything in Impl (exclusive for writes, shared for reads: API workers
    // read in parallel). It lives in Impl, beside what it guards, so that -Wthread-safety
    // checks each field; this names it for the annotations above.
    SharedMutex& LockRef() const;

    std::unique_ptr<Impl> m_impl;
    uint32_t m_schema_version{0}; // set by Load, before the ledger is shared
};

} // namespace bitacora::ledger
