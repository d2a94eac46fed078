#include "ledger/ledger.h"

#include "common/hex.h"
#include "common/logging.h"
#include "ledger/encoding.h"
#include "ledger/keys.h"
#include "ledger/merkle.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <charconv>
#include <chrono>
#include <future>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <unordered_set>

namespace bitacora::ledger {
namespace {

Error RebuildFailed(const rocksdb::Status& status)
{
    return Error{fmt::format("rebuild failed: {}", status.ToString()), ErrorKind::Io};
}

constexpr std::string_view kRebuildMarker = "rebuild_in_progress";
// Merkle nodes at this level and above are also kept in memory (one hash per 8
// leaves, 4 bytes per event: 40 MB at 10 million events), so an inclusion proof
// reads at most levels 1..3, the sibling leaf and the leaf itself from RocksDB.
constexpr unsigned kCachedLevelMin = 4;
constexpr size_t kRebuildChunkEvents = 20'000;

int64_t UnixNowMs()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

rocksdb::Slice AsSlice(std::span<const uint8_t> bytes)
{
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::span<const uint8_t> AsSpan(const std::string& s)
{
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// RocksDB's own LOG file lives on the database's disk; when that disk is full, the
// Debian build aborts on the failed log write (an assertion in WritableFileWriter).
// Its messages go to our log instead, as Bitcoin Core does with LevelDB's.
class RocksDbLogger final : public rocksdb::Logger {
public:
    RocksDbLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {}
    using rocksdb::Logger::Logv;
    void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
    void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override
    {
        char buffer[1024];
        std::vsnprintf(buffer, sizeof(buffer), format, ap);
        // A checkpoint (admin_backup) pauses file deletions and RocksDB says so as a warning.
        const bool warning = level >= rocksdb::InfoLogLevel::WARN_LEVEL && !std::strstr(buffer, "File Deletions");
        if (!warning && !log::GetLogger().WillLogCategory(log::Category::Db)) return;
        if (warning) {
            LogWarning("RocksDB: {}", buffer);
        } else {
            LogDebug(log::Category::Db, "RocksDB: {}", buffer);
        }
    }
};

// The keys a rebuild has written so far. The projections family starts empty, so a
// key the filter has never seen cannot be in the database: that read is skipped.
class WrittenKeys {
public:
    explicit WrittenKeys(uint64_t keys_expected) : m_bits(std::max<uint64_t>(1 << 16, keys_expected * 8) / 64 + 1) {}
    void Add(const std::string& key)
    {
        const auto [h1, h2] = Hashes(key);
        for (uint64_t i = 0; i < kProbes; ++i) {
            const uint64_t bit = (h1 + i * h2) % (m_bits.size() * 64);
            m_bits[bit / 64] |= uint64_t{1} << (bit % 64);
        }
    }
    bool MayContain(const std::string& key) const
    {
        const auto [h1, h2] = Hashes(key);
        for (uint64_t i = 0; i < kProbes; ++i) {
            const uint64_t bit = (h1 + i * h2) % (m_bits.size() * 64);
            if ((m_bits[bit / 64] & (uint64_t{1} << (bit % 64))) == 0) return false;
        }
        return true;
    }

private:
    static constexpr uint64_t kProbes = 4;
    static std::pair<uint64_t, uint64_t> Hashes(const std::string& key)
    {
        const uint64_t h = std::hash<std::string>{}(key);
        return {h, (h >> 33 | h << 31) | 1};
    }
    std::vector<uint64_t> m_bits;
};

std::string EncodeCursor(const Cursor& cursor)
{
    return keys::U64(cursor.block_number) + std::string(cursor.block_hash.begin(), cursor.block_hash.end());
}

// Runs a body that may throw LedgerReadError and returns the failure as its error. It
// calls the body at once, so the lock its caller holds covers what the body requires.
template <typename F>
NO_THREAD_SAFETY_ANALYSIS auto ReadErrorsAsResult(F&& body) -> decltype(body())
{
    try {
        return body();
    } catch (const LedgerReadError& e) {
        return Error{e.what(), ErrorKind::Io};
    }
}

// One projection entry into the state hash: u32 length-framed key and value.
void HashProjectionEntry(Sha256Hasher& hasher, std::string_view key, std::string_view value)
{
    Bytes framing;
    Writer(framing).U32(static_cast<uint32_t>(key.size()));
    hasher.Update(framing);
    hasher.Update({reinterpret_cast<const uint8_t*>(key.data()), key.size()});
    framing.clear();
    Writer(framing).U32(static_cast<uint32_t>(value.size()));
    hasher.Update(framing);
    hasher.Update({reinterpret_cast<const uint8_t*>(value.data()), value.size()});
}

void AddProblem(ConsistencyReport& report, std::string problem)
{
    if (report.problems.size() < ConsistencyReport::kProblemsMax) report.problems.push_back(std::move(problem));
    ++report.problems_total;
}

// The ledger's health, read by API threads while others read or append.
class HealthState {
public:
    // The first failure is the reason shown; a write error outranks read errors.
    bool Degrade(const std::string& reason) LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        if (m_health.state != LedgerHealth::State::Ok) return false;
        m_health = {LedgerHealth::State::Degraded, reason};
        return true;
    }
    void SetReadOnly(const std::string& reason) LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        if (m_health.state != LedgerHealth::State::ReadOnly) m_health = {LedgerHealth::State::ReadOnly, reason};
    }
    LedgerHealth Get() const LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        return m_health;
    }

private:
    mutable Mutex m_mutex;
    LedgerHealth m_health GUARDED_BY(m_mutex);
};

} // namespace

std::string_view LedgerHealthName(LedgerHealth::State state)
{
    switch (state) {
    case LedgerHealth::State::Ok: return "ok";
    case LedgerHealth::State::Degraded: return "degraded";
    case LedgerHealth::State::ReadOnly: return "read-only";
    }
    return "?";
}

struct Ledger::Impl {
    // Exclusive for writes, shared for reads: API workers read in parallel.
    mutable SharedMutex mutex;
    // Set while opening, before the ledger is shared, and constant after.
    std::filesystem::path path;
    LedgerOptions options;
    std::unique_ptr<rocksdb::DB> db;
    rocksdb::ColumnFamilyHandle* meta{nullptr};
    rocksdb::ColumnFamilyHandle* events{nullptr};
    rocksdb::ColumnFamilyHandle* merkle{nullptr};
    rocksdb::ColumnFamilyHandle* anchors{nullptr};
    std::unique_ptr<CheckpointSigner> signer;
    mutable HealthState health; // its own lock
    std::atomic<int64_t> root_time_ms{UnixNowMs()}; // the open, then every append

    std::vector<rocksdb::ColumnFamilyHandle*> handles GUARDED_BY(mutex);
    rocksdb::ColumnFamilyHandle* proj GUARDED_BY(mutex){nullptr}; // a rebuild swaps it
    MerkleFrontier frontier GUARDED_BY(mutex);
    std::map<std::string, std::vector<PendingBlock>> pending GUARDED_BY(mutex);
    std::vector<std::vector<Hash256>> upper_nodes GUARDED_BY(mutex); // [level - kCachedLevelMin][index]
    // Set by the first failed write (a full disk, an I/O error). RocksDB must not be
    // written again after that (its own assertions abort on it); reads still work,
    // and a restart once the disk is fixed recovers from the WAL.
    std::string write_error GUARDED_BY(mutex);
    bool background_paused GUARDED_BY(mutex){false}; // StopBackgroundWrites ran
    // The pending overlay (final projections plus pending events) is built when a read
    // first needs it after a change, under its own lock (readers hold `mutex` shared):
    // finalising blocks one at a time would otherwise re-apply all later ones each time.
    Mutex overlay_mutex;
    std::unique_ptr<LayeredState> overlay GUARDED_BY(overlay_mutex);
    bool overlay_stale GUARDED_BY(overlay_mutex){false};
    // What was acknowledged, signed and anchored (null when opened read-only without one).
    std::unique_ptr<HighWaterFile> mark GUARDED_BY(mutex);
    std::optional<HighWater> read_only_mark GUARDED_BY(mutex); // the mark as read, for a read-only ledger
    uint64_t projection_generation GUARDED_BY(mutex){0}; // bumped by every rebuild (it swaps the family)
    LedgerListener listener GUARDED_BY(mutex);
    // The newest anchor record's id (0: none), kept so that LatestAnchor is one point
    // read: an iterator over the anchors family merged every table at each call (the
    // anchorer and bitacora_status ask at each step). Set at open, raised by appends.
    std::atomic<uint64_t> latest_anchor_id{0};

    uint64_t FindLatestAnchorId() const;

    ~Impl()
    {
        if (db) {
            for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
            db->Close();
        }
    }

    // Marks the ledger degraded and throws: the caller's request fails, the process lives.
    [[noreturn]] void ReadFailed(const std::string& what) const
    {
        if (health.Degrade(what)) {
            LogError("{}; the ledger is degraded: check it (bitacora-inspect check, admin_checkLedger) and restore "
                     "it from a backup if it is damaged",
                     what);
        } else {
            LogDebug(log::Category::Db, "{}", what);
        }
        throw LedgerReadError(what);
    }

    std::optional<std::string> Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key,
                                   const rocksdb::ReadOptions& read_options = {}) const
    {
        std::string value;
        const auto status = db->Get(read_options, cf, key, &value);
        if (status.IsNotFound()) return std::nullopt;
        if (!status.ok()) ReadFailed(fmt::format("database read failed: {}", status.ToString()));
        return value;
    }

    // An iterator stops at a read error as at the end: tell them apart.
    void CheckIterator(const rocksdb::Iterator& it, std::string_view what) const
    {
        if (!it.status().ok()) ReadFailed(fmt::format("reading {} failed: {}", what, it.status().ToString()));
    }

    Hash256 RootAt(uint64_t tree_size) const SHARED_LOCKS_REQUIRED(mutex)
    {
        return tree_size == frontier.size() ? frontier.Root() : MerkleFrontier::Load(Nodes(), tree_size).Root();
    }

    NodeReader Nodes() const SHARED_LOCKS_REQUIRED(mutex)
    {
        // Called back while the caller still holds the lock (MerkleFrontier::Load, proofs).
        return [this](unsigned level, uint64_t index) SHARED_LOCKS_REQUIRED(mutex) {
            if (level >= kCachedLevelMin) {
                const auto& nodes = upper_nodes.at(level - kCachedLevelMin);
                if (index < nodes.size()) return nodes[index];
            }
            if (level == 0) {
                // Leaf hashes are not stored: the leaf is, and hashing it is cheaper than
                // a fifth key per event on every append.
                const auto leaf = Get(events, keys::Event(index));
                if (!leaf) ReadFailed(fmt::format("event {} is missing: the database is corrupt", index));
                return MerkleLeafHash(AsSpan(*leaf));
            }
            const auto value = Get(merkle, keys::MerkleNode(level, index));
            if (!value || value->size() != 32) {
                ReadFailed(fmt::format("Merkle node ({}, {}) is missing: the database is corrupt", level, index));
            }
            Hash256 hash;
            std::copy(value->begin(), value->end(), hash.begin());
            return hash;
        };
    }

    LayeredState::BaseReader ProjectionReader() const SHARED_LOCKS_REQUIRED(mutex)
    {
        // Called back by a LayeredState while the caller still holds the lock.
        return [this](const std::string& key) SHARED_LOCKS_REQUIRED(mutex) { return Get(proj, key); };
    }

    // The pending blocks changed: the next pending read rebuilds the overlay.
    void InvalidateOverlay() EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        LOCK(overlay_mutex);
        overlay.reset();
        overlay_stale = !pending.empty();
    }

    // The overlay, built first if stale; null when nothing is pending or it could not be
    // read (then reads show the final state only, and the health says why).
    LayeredState* Overlay() SHARED_LOCKS_REQUIRED(mutex) EXCLUSIVE_LOCKS_REQUIRED(overlay_mutex)
    {
        if (!overlay_stale) return overlay.get();
        overlay_stale = false;
        auto built = std::make_unique<LayeredState>(ProjectionReader());
        try {
            // Pending events get no index (they may never be final): orders name them by id.
            for (const auto& [source, blocks] : pending) {
                for (const auto& block : blocks) ApplyPendingEvents(block.events, *built);
            }
        } catch (const LedgerReadError& e) {
            LogWarning("The pending overlay could not be built ({}); pending events are not shown", e.what());
            return nullptr;
        }
        overlay = std::move(built);
        return overlay.get();
    }

    // The projection family dropped and made again, empty: faster than a range delete,
    // whose tombstone every later read would meet.
    Status ResetProjections() EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        rocksdb::ColumnFamilyDescriptor descriptor;
        if (const auto s = proj->GetDescriptor(&descriptor); !s.ok()) return RebuildFailed(s);
        if (const auto s = db->DropColumnFamily(proj); !s.ok()) return RebuildFailed(s);
        rocksdb::ColumnFamilyHandle* fresh = nullptr;
        if (const auto s = db->CreateColumnFamily(descriptor.options, descriptor.name, &fresh); !s.ok()) {
            return RebuildFailed(s);
        }
        auto it = std::find(handles.begin(), handles.end(), proj);
        db->DestroyColumnFamilyHandle(proj);
        *it = fresh;
        proj = fresh;
        return {};
    }

    // Events begin..end of the log, decoded; read once, so kept out of the block cache.
    Result<std::vector<Event>> LoadEvents(uint64_t begin, uint64_t end) const
    {
        std::vector<Event> chunk;
        chunk.reserve(end - begin);
        rocksdb::ReadOptions read_options;
        read_options.fill_cache = false;
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, events));
        uint64_t index = begin;
        for (it->Seek(keys::Event(begin)); it->Valid() && index < end; it->Next(), ++index) {
            if (keys::ParseU64(it->key().ToStringView()) != index) return Error{fmt::format("event {} is missing", index)};
            auto event = DecodeEvent({reinterpret_cast<const uint8_t*>(it->value().data()), it->value().size()});
            if (!event) return Error{fmt::format("event {} does not decode: {}", index, event.error())};
            chunk.push_back(std::move(event.value()));
        }
        if (!it->status().ok()) return Error{fmt::format("reading events failed: {}", it->status().ToString()), ErrorKind::Io};
        if (index != end) return Error{fmt::format("event {} is missing", index)};
        return chunk;
    }

    struct PreparedAppend {
        MerkleFrontier frontier;
        rocksdb::WriteBatch batch;
        std::vector<MerkleFrontier::Node> upper; // cached once the batch is durable
    };

    // The batch of an append: leaves, the nodes they complete, projections, cursors and
    // the anchor record. Reads the projections (a read error throws).
    Status PrepareAppend(const std::vector<Event>& new_events, const std::vector<Cursor>& cursors,
                         const AnchorRecord* anchor, PreparedAppend& out) const SHARED_LOCKS_REQUIRED(mutex)
    {
        LayeredState state(ProjectionReader());
        const uint64_t first_index = out.frontier.size();
        for (const auto& event : new_events) {
            const uint64_t index = out.frontier.size();
            const Bytes leaf = EncodeEvent(event);
            out.batch.Put(events, keys::Event(index), AsSlice(leaf));
            out.frontier.Append(MerkleLeafHash(leaf), [&](const MerkleFrontier::Node& node) {
                if (node.level == 0) return;
                out.batch.Put(merkle, keys::MerkleNode(node.level, node.index), AsSlice(node.hash));
                if (node.level >= kCachedLevelMin) out.upper.push_back(node);
            });
        }
        ApplyEvents(new_events, first_index, state);
        for (const auto& [key, value] : state.writes()) out.batch.Put(proj, key, value);
        out.batch.Put(meta, std::string(keys::kTreeSize), keys::U64(out.frontier.size()));
        for (const auto& cursor : cursors) {
            out.batch.Put(meta, std::string(keys::kCursorPrefix) + cursor.source, EncodeCursor(cursor));
        }
        if (anchor == nullptr) return {};
        if (const auto old = Get(anchors, keys::AnchorRecordKey(anchor->id))) {
            if (const auto previous = DecodeAnchorRecord(AsSpan(*old)); previous && previous->proven()) {
                out.batch.Delete(anchors, keys::ProvenAnchorKey(previous->tree_size, previous->id));
            }
        }
        out.batch.Put(anchors, keys::AnchorRecordKey(anchor->id), AsSlice(EncodeAnchorRecord(*anchor)));
        if (anchor->proven()) out.batch.Put(anchors, keys::ProvenAnchorKey(anchor->tree_size, anchor->id), "");
        return {};
    }

    // After a write error the ledger appends nothing until restarted, so RocksDB's flushes
    // and compactions stop too: on a full disk they fail and retry (a compaction every
    // second), and closing the database waited on them for good while the disk stayed
    // full (test_fault_fs hung so once in CI).
    void StopBackgroundWrites() EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        if (background_paused || db == nullptr) return;
        background_paused = db->PauseBackgroundWork().ok();
    }

    // Writes the mark after an fsynced batch: the log up to the frontier, and the anchor.
    // A failure makes the ledger read-only: it could not vouch for what it appends next.
    Status MarkSynced(const AnchorRecord* anchor) EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        HighWater next = mark->current();
        next.synced = {frontier.size(), frontier.Root()};
        if (anchor != nullptr && anchor->id >= next.anchor_id) {
            next.anchor_id = anchor->id;
            next.anchor = {anchor->tree_size, anchor->root};
        }
        return WriteMark(next);
    }

    Status WriteMark(const HighWater& next) EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        if (auto written = mark->Write(next); !written) {
            write_error = written.error();
            health.SetReadOnly(written.error());
            StopBackgroundWrites();
            LogError("{}; the ledger is read-only until restarted", written.error());
            return written;
        }
        return {};
    }

    // SHA-256 over every stored projection entry in key order, read at `snapshot` (null:
    // now). The caller holds the ledger's lock: a rebuild swaps the family.
    Result<Hash256> StoredStateHash(const rocksdb::Snapshot* snapshot) const SHARED_LOCKS_REQUIRED(mutex)
    {
        const rocksdb::Snapshot* own = snapshot ? nullptr : db->GetSnapshot();
        rocksdb::ReadOptions read_options;
        read_options.snapshot = snapshot ? snapshot : own;
        read_options.fill_cache = false;
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, proj));
        Sha256Hasher hasher;
        for (it->SeekToFirst(); it->Valid(); it->Next()) HashProjectionEntry(hasher, it->key().ToStringView(), it->value().ToStringView());
        const auto status = it->status();
        it.reset();
        if (own) db->ReleaseSnapshot(own);
        if (!status.ok()) {
            const std::string what = fmt::format("reading projections failed: {}", status.ToString());
            health.Degrade(what);
            return Error{what};
        }
        return hasher.Finalize();
    }

    // CheckConsistency()'s pass over the log at `snapshot`: every leaf re-read and
    // decoded, every stored Merkle node compared with the recomputed one, the root and
    // the high-water mark checked, and the projections derived into `derived`.
    Status CheckLog(const rocksdb::Snapshot* snapshot, const std::optional<HighWater>& high, LayeredState& derived,
                    ConsistencyReport& report) const
    {
        rocksdb::ReadOptions read_options;
        read_options.snapshot = snapshot;
        read_options.fill_cache = false; // one pass; keep the cache for live reads
        std::vector<std::pair<std::string, MarkedTree>> marked;
        if (high) {
            marked = {{"the last fsynced append", high->synced}, {"the largest signed checkpoint", high->checkpoint},
                      {fmt::format("anchor {}", high->anchor_id), high->anchor}};
        }
        MerkleFrontier recomputed;
        std::vector<Event> chunk;
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, events));
        it->SeekToFirst();
        for (uint64_t index = 0; index < report.tree_size; ++index, it->Next()) {
            CheckIterator(*it, "events");
            if (!it->Valid() || keys::ParseU64(it->key().ToStringView()) != index) {
                AddProblem(report, fmt::format("event {} is missing: the log stops there", index));
                break;
            }
            const auto leaf = it->value();
            const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(leaf.data()), leaf.size());
            if (auto event = DecodeEvent(bytes)) {
                chunk.push_back(std::move(event.value()));
            } else {
                AddProblem(report, fmt::format("event {} does not decode: {}", index, event.error()));
            }
            recomputed.Append(MerkleLeafHash(bytes), [&](const MerkleFrontier::Node& node) {
                if (node.level > 0) CheckNode(node, read_options, report);
            });
            for (const auto& [what, tree] : marked) {
                if (tree.size == index + 1 && recomputed.Root() != tree.root) {
                    AddProblem(report, fmt::format("{} had root {} at size {}; the log's is {}", what,
                                                   HexEncode(tree.root), tree.size, HexEncode(recomputed.Root())));
                }
            }
            if (chunk.size() == kRebuildChunkEvents || index + 1 == report.tree_size) {
                ApplyEvents(chunk, index + 1 - chunk.size(), derived);
                chunk.clear();
            }
        }
        if (recomputed.size() == report.tree_size && it->Valid()) {
            AddProblem(report, fmt::format("events beyond the tree size {} are stored", report.tree_size));
        }
        CheckIterator(*it, "events");
        report.recomputed_root = recomputed.Root();
        if (recomputed.size() == report.tree_size && report.recomputed_root != report.root) {
            AddProblem(report, fmt::format("the root recomputed from the leaves is {}, the ledger serves {}",
                                           HexEncode(report.recomputed_root), HexEncode(report.root)));
        }
        for (const auto& [what, tree] : marked) {
            if (tree.size > report.tree_size) {
                AddProblem(report, fmt::format("{} covered {} events, the log has {}: {} acknowledged events are lost",
                                               what, tree.size, report.tree_size, tree.size - report.tree_size));
            }
        }
        return {};
    }

    void CheckNode(const MerkleFrontier::Node& node, const rocksdb::ReadOptions& read_options,
                   ConsistencyReport& report) const
    {
        ++report.nodes_checked;
        const auto stored = Get(merkle, keys::MerkleNode(node.level, node.index), read_options);
        if (!stored || stored->size() != 32 || !std::equal(node.hash.begin(), node.hash.end(), stored->begin(),
                                                           [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); })) {
            AddProblem(report, fmt::format("Merkle node ({}, {}) is {}", node.level, node.index,
                                           stored ? "wrong" : "missing"));
        }
    }

    // The in-memory copy of the upper Merkle levels (kCachedLevelMin and above).
    Status LoadUpperNodes() EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        upper_nodes.assign(64 - kCachedLevelMin, {});
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), merkle));
        for (it->Seek(std::string(1, static_cast<char>(kCachedLevelMin))); it->Valid(); it->Next()) {
            const auto key = it->key();
            if (key.size() != 9 || it->value().size() != 32) return Error{"corrupt Merkle node key or value"};
            const unsigned level = static_cast<uint8_t>(key[0]);
            auto& nodes = upper_nodes.at(level - kCachedLevelMin);
            if (keys::ParseU64(std::string_view(key.data() + 1, 8)) != nodes.size()) return Error{"gap in stored Merkle nodes"};
            Hash256 hash;
            std::copy(it->value().data(), it->value().data() + 32, hash.begin());
            nodes.push_back(hash);
        }
        if (!it->status().ok()) return Error{fmt::format("reading Merkle nodes failed: {}", it->status().ToString())};
        return {};
    }

    // What the log lost against the mark, one sentence per marked tree; empty: nothing.
    std::vector<std::string> LostAgainst(const HighWater& high) const SHARED_LOCKS_REQUIRED(mutex)
    {
        const std::vector<std::pair<std::string, MarkedTree>> marked = {
            {"the last fsynced append", high.synced},
            {"the largest signed checkpoint", high.checkpoint},
            {fmt::format("anchor {}", high.anchor_id), high.anchor}};
        std::vector<std::string> lost;
        const uint64_t size = frontier.size();
        for (const auto& [what, tree] : marked) {
            if (tree.size == 0) continue;
            if (tree.size > size) {
                lost.push_back(fmt::format("{} covered {} events (root {}) but the log has {} (root {}): {} "
                                           "acknowledged events are lost",
                                           what, tree.size, HexEncode(tree.root), size, HexEncode(frontier.Root()),
                                           tree.size - size));
            } else if (const Hash256 root = RootAt(tree.size); root != tree.root) {
                lost.push_back(fmt::format("{} had root {} at size {} but the log's root there is {}: the log was "
                                           "rewritten",
                                           what, HexEncode(tree.root), tree.size, HexEncode(root)));
            }
        }
        return lost;
    }

    // Checks the log against its high-water mark and opens the mark for writing, or
    // starts one (a new ledger, or one from before marks existed).
    Status OpenMark(bool created) EXCLUSIVE_LOCKS_REQUIRED(mutex)
    {
        const auto file = path / kHighWaterFileName;
        auto read = HighWaterFile::Read(file);
        if (!read) {
            if (!options.read_only) return read.failure();
            health.Degrade(read.error());
            return {};
        }
        if (!*read && options.read_only) return {};
        if (*read) {
            std::string lost;
            for (const auto& sentence : LostAgainst(**read)) lost += (lost.empty() ? "" : "; ") + sentence;
            if (!lost.empty()) {
                const std::string message = fmt::format(
                    "the ledger in {} is shorter than, or not consistent with, what it acknowledged, signed or "
                    "anchored: {}. Restore the whole ledger directory (its {} file included) from a backup; "
                    "`bitacora-inspect {} check` shows what is damaged",
                    path.string(), lost, kHighWaterFileName, path.string());
                if (!options.read_only) return Error{message};
                health.Degrade(message);
            }
            read_only_mark = **read;
            if (options.read_only) return {};
            auto opened = HighWaterFile::Open(file, **read);
            if (!opened) return opened.failure();
            mark = std::move(opened.value());
            return {};
        }
        // The recovered log is what the mark starts from: make it durable first.
        if (const auto synced = db->SyncWAL(); !synced.ok()) {
            return Error{fmt::format("cannot sync the database {}: {}", path.string(), synced.ToString())};
        }
        if (!created) {
            LogWarning("{} has no high-water mark (made by an older release, or removed); starting one at {} events",
                       path.string(), frontier.size());
        }
        auto started = HighWaterFile::Create(file, HighWater{.synced = {frontier.size(), frontier.Root()}});
        if (!started) return started.failure();
        mark = std::move(started.value());
        return {};
    }
};

Ledger::Ledger(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
SharedMutex& Ledger::LockRef() const LOCK_RETURNED(m_impl->mutex) { return m_impl->mutex; }
Ledger::~Ledger() = default;

namespace {

rocksdb::Options DatabaseOptions(const LedgerOptions& options)
{
    rocksdb::Options db_options;
    db_options.create_if_missing = options.create_if_missing;
    db_options.create_missing_column_families = true;
    db_options.paranoid_checks = true;
    if (options.env != nullptr) db_options.env = options.env;
    // A torn last record (a process killed mid-write) is dropped as before, but a
    // damaged record with intact records after it fails the open: the default
    // (point-in-time recovery) silently dropped everything after it. Not
    // kAbsoluteConsistency: a SIGKILL can tear the tail of an unsynced write (the
    // kernel stops a write at a page on a fatal signal), and that must still open.
    db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
    db_options.max_open_files = 512;
    db_options.max_file_opening_threads = options.table_open_threads_max;
    // Size estimates for compaction only; reading every table's properties at each open
    // is most of a small ledger's open.
    db_options.skip_stats_update_on_db_open = true;
    // After a write error the ledger refuses appends until a restart (ReadOnly): RocksDB's
    // own recovery, retried each second from its thread, would only write behind it (a
    // new WAL) and hold a close up to a second.
    db_options.max_bgerror_resume_count = 0;
    db_options.info_log = std::make_shared<RocksDbLogger>();
    // One budget for every family's memtables, so that resident memory stays bounded.
    db_options.db_write_buffer_size = 128 * 1024 * 1024;
    rocksdb::BlockBasedTableOptions table_options;
    table_options.block_cache = rocksdb::NewLRUCache(options.cache_mib * 1024 * 1024);
    // Index and filter blocks stay with the table readers instead of competing with
    // data blocks in the cache (with them in a small cache, proofs thrashed it).
    table_options.cache_index_and_filter_blocks = false;
    // Point lookups dominate (orders, nodes, leaves): bloom filters spare most SST reads.
    table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
    return db_options;
}

std::vector<rocksdb::ColumnFamilyDescriptor> FamilyDescriptors(const rocksdb::Options& db_options,
                                                               const std::vector<std::string>& families)
{
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : families) {
        rocksdb::ColumnFamilyOptions family(db_options);
        if (name == keys::kEventsFamily || name == keys::kMerkleFamily) {
            // Appends are sequential within a key's first byte (the level, for nodes):
            // an insert hint per prefix makes each memtable insert O(1).
            family.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(1));
        }
        // Hashes do not compress; skip the work.
        if (name == keys::kMerkleFamily) family.compression = rocksdb::kNoCompression;
        if (name == keys::kProjectionsFamily) {
            // Most projection reads are misses (a new order); a memtable bloom filter answers them.
            // 2% of the write buffer is ~16 bits per entry of a full memtable (0.1% false
            // hits); it is zeroed at every new memtable (each open and flush), so no more.
            family.memtable_whole_key_filtering = true;
            family.memtable_prefix_bloom_size_ratio = 0.02;
        }
        descriptors.emplace_back(name, family);
    }
    return descriptors;
}

// Files that only an earlier ledger leaves behind. Without CURRENT, RocksDB would
// create a fresh database next to them (and delete their tables): an empty log that
// the same checkpoint key would then sign at sizes it already signed.
std::vector<std::string> EarlierLedgerMarkers(const std::filesystem::path& dir, const LedgerOptions& options)
{
    std::vector<std::string> found;
    std::error_code ec;
    if (!options.checkpoint_key_path.empty() && std::filesystem::exists(options.checkpoint_key_path, ec)) {
        found.push_back(options.checkpoint_key_path.string());
    }
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const bool marker = name == kHighWaterFileName || name == "IDENTITY" || name.starts_with("MANIFEST-") ||
                            name.starts_with("OPTIONS-") || name.ends_with(".sst") || name.ends_with(".log");
        if (marker) found.push_back(name);
    }
    std::sort(found.begin(), found.end());
    return found;
}

// Written (and its directory fsynced) before RocksDB creates a database in the ledger
// directory; removed (likewise) only once the new ledger opened and loaded. Open()
// returns no ledger while it exists, so a directory holding it never acknowledged an
// event. RocksDB writes IDENTITY and MANIFEST-000001 before CURRENT: a full disk or a
// power cut in between leaves them without a database, and only this file tells them
// from an earlier ledger's (whose CURRENT was deleted).
constexpr const char* kCreationFileName = "LEDGER_CREATION_IN_PROGRESS";

Status SyncPath(const std::filesystem::path& path, int flags); // with the backups, below

Status WriteCreationMarker(const std::filesystem::path& dir)
{
    const auto path = dir / kCreationFileName;
    constexpr std::string_view kText = "a new ledger is being created here; removed once it opened\n";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Error{fmt::format("cannot create {}: {}", path.string(), std::strerror(errno))};
    const bool written =
        ::write(fd, kText.data(), kText.size()) == static_cast<ssize_t>(kText.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!written) return Error{fmt::format("cannot write {}: {}", path.string(), std::strerror(err))};
    return SyncPath(dir, O_RDONLY | O_DIRECTORY);
}

// After a successful open: from now on the directory's files are a ledger's.
Status RemoveCreationMarker(const std::filesystem::path& dir)
{
    const auto path = dir / kCreationFileName;
    std::error_code ec;
    if (!std::filesystem::remove(path, ec)) {
        if (!ec) return {};
        return Error{fmt::format("cannot remove {}: {}", path.string(), ec.message())};
    }
    return SyncPath(dir, O_RDONLY | O_DIRECTORY);
}

// What RocksDB 7.8 writes while creating a database before CURRENT exists (NewDB():
// IDENTITY, MANIFEST-000001, then 000001.dbtmp renamed to CURRENT). Tables, WALs,
// OPTIONS, later MANIFESTs, the high-water mark and the checkpoint key all come after.
bool CreationLeftover(const std::string& name)
{
    return name == "IDENTITY" || name == "MANIFEST-000001" || name.ends_with(".dbtmp");
}

// The retry is then a creation afresh (a power cut may have cut IDENTITY to 0 bytes).
Status ClearInterruptedCreation(const std::filesystem::path& dir)
{
    std::vector<std::filesystem::path> leftovers;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (CreationLeftover(it->path().filename().string())) leftovers.push_back(it->path());
    }
    if (ec) return Error{fmt::format("cannot list {}: {}", dir.string(), ec.message())};
    for (const auto& file : leftovers) {
        if (std::filesystem::remove(file, ec); ec) {
            return Error{fmt::format("cannot remove {}: {}", file.string(), ec.message())};
        }
    }
    if (!leftovers.empty()) {
        LogWarning("Creating the ledger in {} was interrupted before its database existed (a full disk or a crash): "
                   "removed the {} files it left, creating it again",
                   dir.string(), leftovers.size());
    }
    return {};
}

Status RefuseToRecreate(const std::filesystem::path& dir, const LedgerOptions& options)
{
    auto markers = EarlierLedgerMarkers(dir, options);
    // With the creation file, what a creation leaves before CURRENT (no event, no key)
    // is no earlier ledger's. The file is not trusted further: anything a creation writes
    // only once CURRENT exists (a table, a WAL, OPTIONS, a later MANIFEST, the high-water
    // mark, the checkpoint key) still refuses, so that a file copied back by hand next to
    // a ledger that lost its CURRENT costs no history. The high-water mark is created by
    // Load(), after CURRENT: a creation cut before CURRENT leaves none, one cut after it
    // left a database (not fresh), which the next open completes.
    std::error_code ec;
    const bool interrupted = std::filesystem::exists(dir / kCreationFileName, ec);
    if (interrupted) std::erase_if(markers, CreationLeftover);
    if (markers.empty()) return interrupted ? ClearInterruptedCreation(dir) : Status{};
    std::string list;
    for (size_t i = 0; i < markers.size() && i < 8; ++i) list += (i ? ", " : "") + markers[i];
    if (markers.size() > 8) list += fmt::format(" and {} more", markers.size() - 8);
    return Error{fmt::format("refusing to create a new ledger in {}: its database is missing (no CURRENT) but an "
                             "earlier ledger left {}{}; a new log would be signed with the same key at sizes it "
                             "already signed. Restore the ledger directory from a backup (or, only if these files "
                             "never belonged to a ledger, move them away)",
                             dir.string(), list,
                             interrupted ? fmt::format(" ({} is there too, but a creation writes none of these)",
                                                       kCreationFileName)
                                         : "")};
}

// Reads or initialises the schema version; returns it.
Result<uint32_t> InitSchema(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* meta,
                                   const std::optional<std::string>& stored, const std::filesystem::path& dir,
                                   bool read_only)
{
    if (!stored) {
        if (read_only) return Error{fmt::format("{} holds no ledger (no schema version)", dir.string())};
        rocksdb::WriteOptions write_options;
        write_options.sync = true;
        const auto written = db.Put(write_options, meta, std::string(keys::kSchemaVersion), std::to_string(Ledger::kSchemaVersion));
        if (!written.ok()) return Error{fmt::format("cannot initialise database {}: {}", dir.string(), written.ToString())};
        LogInfo("Created database {} (schema version {})", dir.string(), Ledger::kSchemaVersion);
        return Ledger::kSchemaVersion;
    }
    uint32_t version = 0;
    const auto [ptr, ec] = std::from_chars(stored->data(), stored->data() + stored->size(), version);
    if (ec != std::errc() || ptr != stored->data() + stored->size()) {
        return Error{fmt::format("database {} has a corrupt schema version '{}'", dir.string(), *stored)};
    }
    if (version > Ledger::kSchemaVersion) {
        return Error{fmt::format("database {} has schema version {}, newer than this bitacorad supports ({}); "
                                 "run a newer release",
                                 dir.string(), version, Ledger::kSchemaVersion)};
    }
    return version;
}

} // namespace

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::filesystem::path& dir, const LedgerOptions& options)
{
    const rocksdb::Options db_options = DatabaseOptions(options);
    const std::vector<std::string> families = {rocksdb::kDefaultColumnFamilyName, keys::kMetaFamily,
                                               keys::kEventsFamily, keys::kMerkleFamily, keys::kProjectionsFamily,
                                               keys::kAnchorsFamily};
    std::vector<std::string> existing;
    const bool fresh = !std::filesystem::exists(dir / "CURRENT");
    if (fresh && options.create_if_missing && !options.read_only) {
        if (auto refused = RefuseToRecreate(dir, options); !refused) return refused.failure();
    }
    if (fresh && options.create_if_missing && !options.read_only) {
        // Created here so that RocksDB does not warn about a missing directory.
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) return Error{fmt::format("cannot create database directory {}: {}", dir.string(), ec.message())};
        if (auto marked = WriteCreationMarker(dir); !marked) return marked.failure();
    }
    if (!fresh && rocksdb::DB::ListColumnFamilies(db_options, dir.string(), &existing).ok()) {
        for (const auto& name : existing) {
            if (std::find(families.begin(), families.end(), name) == families.end()) {
                return Error{fmt::format("database {} has an unknown column family '{}'", dir.string(), name)};
            }
        }
    }
    const auto descriptors = FamilyDescriptors(db_options, families);

    auto impl = std::make_unique<Impl>();
    impl->path = dir;
    impl->options = options;
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    const auto status = options.read_only
                            ? rocksdb::DB::OpenForReadOnly(db_options, dir.string(), descriptors, &handles, &raw)
                            : rocksdb::DB::Open(db_options, dir.string(), descriptors, &handles, &raw);
    if (!status.ok()) {
        return Error{fmt::format("cannot open database {}: {}{}", dir.string(), status.ToString(),
                                 status.IsCorruption() ? "; the database is damaged: restore the ledger directory "
                                                         "from a backup"
                                                       : "")};
    }
    impl->db.reset(raw);
    {
        LOCK(impl->mutex); // not shared yet: for the annotations of handles and proj
        impl->handles = std::move(handles);
        impl->meta = impl->handles[1];
        impl->events = impl->handles[2];
        impl->merkle = impl->handles[3];
        impl->proj = impl->handles[4];
        impl->anchors = impl->handles[5];
    }
    LogDebug(log::Category::Db, "RocksDB {} opened: {} column families, block cache {} MiB", dir.string(),
             families.size(), options.cache_mib);
    auto ledger = std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
    try {
        if (auto loaded = ledger->Load(); !loaded) return loaded.failure();
    } catch (const LedgerReadError& e) {
        return Error{fmt::format("cannot open the ledger {}: {}; restore the ledger directory from a backup",
                                 dir.string(), e.what())};
    }
    // Also after a creation interrupted once CURRENT existed: the retry opened it.
    if (!options.read_only) {
        if (auto removed = RemoveCreationMarker(dir); !removed) return removed.failure();
    }
    return ledger;
}

Status Ledger::Load()
{
    LOCK(m_impl->mutex); // not shared yet: for the annotations
    const std::filesystem::path& dir = m_impl->path;
    const auto stored = m_impl->Get(m_impl->meta, std::string(keys::kSchemaVersion));
    auto version = InitSchema(*m_impl->db, m_impl->meta, stored, dir, m_impl->options.read_only);
    if (!version) return version.failure();
    m_schema_version = *version;
    if (auto loaded = m_impl->LoadUpperNodes(); !loaded) return loaded;
    const auto tree_size = m_impl->Get(m_impl->meta, std::string(keys::kTreeSize));
    m_impl->frontier = MerkleFrontier::Load(m_impl->Nodes(), tree_size ? keys::ParseU64(*tree_size) : 0);
    if (stored) {
        LogInfo("Opened database {} (schema version {}, {} events, root {})", dir.string(), m_schema_version,
                m_impl->frontier.size(), HexEncode0x(m_impl->frontier.Root()));
    }
    if (auto marked = m_impl->OpenMark(!stored); !marked) return marked;
    auto latest = ReadErrorsAsResult([&]() -> Result<uint64_t> { return m_impl->FindLatestAnchorId(); });
    if (!latest) return latest.failure();
    m_impl->latest_anchor_id = *latest;
    if (m_impl->options.read_only) return {};

    if (!m_impl->options.checkpoint_key_path.empty()) {
        auto signer = CheckpointSigner::LoadOrCreate(m_impl->options.checkpoint_key_path);
        if (!signer) return signer.failure();
        m_impl->signer = std::move(signer.value());
    }
    if (m_impl->Get(m_impl->meta, std::string(kRebuildMarker))) {
        LogWarning("A projection rebuild was interrupted; rebuilding again");
        if (auto rebuilt = RebuildProjectionsLocked(); !rebuilt) return rebuilt;
    }
    // Projections of an older layout (fewer indexes) are recomputed from the log.
    const auto projection_version = m_impl->Get(m_impl->meta, std::string(keys::kProjectionVersion));
    const uint32_t stored_projection = projection_version ? static_cast<uint32_t>(std::stoul(*projection_version)) : 0;
    if (stored_projection < kProjectionVersion) {
        if (m_impl->frontier.size() > 0) {
            LogInfo("Projections are version {}, this release writes version {}: rebuilding them from the log",
                    stored_projection, kProjectionVersion);
            if (auto rebuilt = RebuildProjectionsLocked(); !rebuilt) return rebuilt;
        }
        rocksdb::WriteOptions write_options;
        write_options.sync = true;
        const auto written =
            m_impl->db->Put(write_options, m_impl->meta, std::string(keys::kProjectionVersion), std::to_string(kProjectionVersion));
        if (!written.ok()) return Error{fmt::format("cannot record the projection version: {}", written.ToString())};
    }
    return {};
}

Result<AppendResult> Ledger::Append(const std::vector<Event>& events, const std::vector<Cursor>& cursors)
{
    LOCK(m_impl->mutex);
    return AppendLocked(events, cursors);
}

Result<AppendResult> Ledger::AppendLocked(const std::vector<Event>& events, const std::vector<Cursor>& cursors,
                                          const AnchorRecord* anchor)
{
    if (m_impl->options.read_only) return Error{"the ledger is open read-only", ErrorKind::ReadOnly};
    if (!m_impl->write_error.empty()) {
        return Error{fmt::format("ledger is read-only after a write error ({}); fix the disk and restart", m_impl->write_error),
                     ErrorKind::ReadOnly};
    }
    if (events.size() > kAppendEventsMax) {
        return Error{fmt::format("append of {} events exceeds the limit of {}", events.size(), kAppendEventsMax),
                     ErrorKind::TooLarge};
    }
    for (const auto& event : events) {
        if (IsOnChain(event.kind()) != event.origin.has_value()) {
            return Error{fmt::format("{} event {} an EVM origin", EventKindName(event.kind()),
                                     event.origin ? "must not have" : "needs"),
                         ErrorKind::Invalid};
        }
    }

    Impl::PreparedAppend prepared;
    prepared.frontier = m_impl->frontier; // committed only once the batch is durable
    const uint64_t first_index = prepared.frontier.size();
    if (auto built = ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Status { return m_impl->PrepareAppend(events, cursors, anchor, prepared); });
        !built) {
        return Error{fmt::format("ledger append failed: {}", built.error()), built.error_kind()};
    }
    rocksdb::WriteOptions write_options;
    write_options.sync = m_impl->options.sync_every_append || anchor != nullptr ||
                         std::any_of(events.begin(), events.end(), [](const Event& e) { return !IsOnChain(e.kind()); });
    const auto status = m_impl->db->Write(write_options, &prepared.batch);
    if (!status.ok()) {
        // Nothing was applied: the in-memory frontier still matches the database.
        m_impl->write_error = status.ToString();
        m_impl->health.SetReadOnly(fmt::format("an append failed: {}", status.ToString()));
        m_impl->StopBackgroundWrites();
        LogError("Ledger append of {} events failed: {}; the ledger is read-only until restarted", events.size(),
                 status.ToString());
        return Error{fmt::format("ledger append failed: {}", status.ToString()), ErrorKind::Io};
    }
    m_impl->frontier = std::move(prepared.frontier);
    m_impl->root_time_ms = UnixNowMs();
    if (anchor != nullptr && anchor->id > m_impl->latest_anchor_id.load()) m_impl->latest_anchor_id = anchor->id;
    for (const auto& node : prepared.upper) {
        auto& nodes = m_impl->upper_nodes[node.level - kCachedLevelMin];
        assert(nodes.size() == node.index);
        nodes.push_back(node.hash);
    }
    // The batch is durable; the mark follows it (a crash between leaves an older mark).
    const Status marked = write_options.sync ? m_impl->MarkSynced(anchor) : Status{};
    LogDebug(log::Category::Ledger, "Appended {} events at {}; size {}", events.size(), first_index, m_impl->frontier.size());
    if (m_impl->listener && !events.empty()) {
        m_impl->listener(LedgerNotice{.type = LedgerNotice::Type::Appended, .first_index = first_index, .events = events});
    }
    if (!m_impl->pending.empty() && !events.empty()) m_impl->InvalidateOverlay();
    if (!marked) {
        return Error{fmt::format("events {} to {} were written, but {}; the ledger is read-only until restarted",
                                 first_index, m_impl->frontier.size(), marked.error())};
    }
    return AppendResult{first_index, m_impl->frontier.size(), m_impl->frontier.Root()};
}

Result<uint64_t> Ledger::AppendOffchain(const OffchainEvent& event)
{
    constexpr auto kInvalid = ErrorKind::Invalid;
    if (event.kind.empty() || event.kind.size() > 64) return Error{"off-chain event kind must be 1 to 64 bytes", kInvalid};
    if (event.idempotency_key.empty() || event.idempotency_key.size() > 128) {
        return Error{"idempotency key must be 1 to 128 bytes", kInvalid};
    }
    if (event.payload.size() > 64 * 1024) return Error{"off-chain payload exceeds 64 KiB", kInvalid};
    if (!VerifySchnorr(event.submitter, OffchainSigningHash(event), event.signature)) {
        return Error{"off-chain event signature does not verify for its submitter key", kInvalid};
    }
    LOCK(m_impl->mutex);
    // A failed read must not pass for an unused key: that would append the event twice.
    auto existing = ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Result<std::optional<uint64_t>> {
        LayeredState final_state(m_impl->ProjectionReader());
        const auto index = ReadIdempotencyKey(final_state, event.idempotency_key);
        if (!index) return std::optional<uint64_t>{};
        const auto leaf = m_impl->Get(m_impl->events, keys::Event(*index));
        if (!leaf) return Error{"idempotency index points at a missing event"};
        const auto decoded = DecodeEvent(AsSpan(*leaf));
        const auto* previous = decoded ? std::get_if<OffchainEvent>(&decoded->body) : nullptr;
        if (previous == nullptr || previous->kind != event.kind || previous->payload != event.payload) {
            return Error{fmt::format("idempotency key '{}' was already used for a different event", event.idempotency_key),
                         ErrorKind::Conflict};
        }
        return index;
    });
    if (!existing) return existing.failure();
    if (*existing) return **existing;
    auto appended = AppendLocked({Event{std::nullopt, event}}, {});
    if (!appended) return appended.failure();
    return appended->first_index;
}

uint64_t Ledger::size() const
{
    READ_LOCK(m_impl->mutex);
    return m_impl->frontier.size();
}

Hash256 Ledger::root() const
{
    READ_LOCK(m_impl->mutex);
    return m_impl->frontier.Root();
}

LedgerHealth Ledger::health() const { return m_impl->health.Get(); }

int64_t Ledger::root_time_ms() const { return m_impl->root_time_ms.load(); }

std::optional<HighWater> Ledger::high_water() const
{
    READ_LOCK(m_impl->mutex);
    return m_impl->mark ? std::optional(m_impl->mark->current()) : m_impl->read_only_mark;
}

Result<Hash256> Ledger::RootAt(uint64_t tree_size) const
{
    READ_LOCK(m_impl->mutex);
    if (tree_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", tree_size, m_impl->frontier.size())};
    }
    return ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Result<Hash256> { return m_impl->RootAt(tree_size); });
}

std::optional<Cursor> Ledger::GetCursor(const std::string& source) const
{
    const auto value = m_impl->Get(m_impl->meta, std::string(keys::kCursorPrefix) + source);
    if (!value || value->size() != 40) return std::nullopt;
    Cursor cursor{source, keys::ParseU64(*value), {}};
    std::copy(value->begin() + 8, value->end(), cursor.block_hash.begin());
    return cursor;
}

Result<Bytes> Ledger::GetLeaf(uint64_t index) const
{
    if (index >= size()) return Error{fmt::format("no event at index {}", index)};
    return ReadErrorsAsResult([&]() -> Result<Bytes> {
        const auto value = m_impl->Get(m_impl->events, keys::Event(index));
        if (!value) m_impl->ReadFailed(fmt::format("event {} is missing from the database", index));
        return Bytes(value->begin(), value->end());
    });
}

Result<InclusionProof> Ledger::ProveInclusion(uint64_t index, uint64_t tree_size) const
{
    READ_LOCK(m_impl->mutex);
    if (tree_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", tree_size, m_impl->frontier.size())};
    }
    if (index >= tree_size) return Error{fmt::format("index {} is not below tree size {}", index, tree_size)};
    return ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Result<InclusionProof> {
        InclusionProof proof;
        proof.index = index;
        proof.tree_size = tree_size;
        const auto leaf = m_impl->Get(m_impl->events, keys::Event(index));
        if (!leaf) m_impl->ReadFailed(fmt::format("event {} is missing from the database", index));
        proof.leaf.assign(leaf->begin(), leaf->end());
        proof.path = MerkleInclusionPath(m_impl->Nodes(), index, tree_size);
        proof.root = m_impl->RootAt(tree_size);
        return proof;
    });
}

Result<std::vector<Hash256>> Ledger::ProveConsistency(uint64_t old_size, uint64_t new_size) const
{
    READ_LOCK(m_impl->mutex);
    if (old_size > new_size) return Error{fmt::format("old size {} exceeds new size {}", old_size, new_size)};
    if (new_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", new_size, m_impl->frontier.size())};
    }
    return ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Result<std::vector<Hash256>> {
        return MerkleConsistencyPath(m_impl->Nodes(), old_size, new_size);
    });
}

Status Ledger::RecordCheckpointLocked(uint64_t tree_size, const Hash256& root, uint64_t timestamp) const
{
    if (!m_impl->mark) return Error{"the ledger is open read-only"};
    HighWater next = m_impl->mark->current();
    if (tree_size <= next.checkpoint.size && tree_size <= next.synced.size) return {}; // already vouched for
    if (tree_size > next.synced.size) {
        // Never sign what a power cut could take back: everything appended so far goes
        // to disk first (unsynced on-chain batches included), then the mark.
        if (!m_impl->write_error.empty()) return Error{fmt::format("ledger is read-only after a write error ({})", m_impl->write_error), ErrorKind::ReadOnly};
        if (const auto synced = m_impl->db->SyncWAL(); !synced.ok()) {
            return Error{fmt::format("cannot sync the log before signing: {}", synced.ToString())};
        }
        next.synced = {m_impl->frontier.size(), m_impl->frontier.Root()};
    }
    if (tree_size > next.checkpoint.size) {
        next.checkpoint = {tree_size, root};
        next.checkpoint_time = timestamp;
    }
    return m_impl->WriteMark(next);
}

Result<Checkpoint> Ledger::SignCheckpoint(uint64_t timestamp) const
{
    return SignCheckpointAt(size(), timestamp);
}

Result<Checkpoint> Ledger::SignCheckpointAt(uint64_t tree_size, uint64_t timestamp) const
{
    LOCK(m_impl->mutex);
    if (!m_impl->signer) return Error{"no checkpoint key configured"};
    if (tree_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", tree_size, m_impl->frontier.size())};
    }
    auto root = ReadErrorsAsResult([&]() SHARED_LOCKS_REQUIRED(m_impl->mutex) -> Result<Hash256> { return m_impl->RootAt(tree_size); });
    if (!root) return root.failure();
    if (auto recorded = RecordCheckpointLocked(tree_size, *root, timestamp); !recorded) {
        return Error{fmt::format("cannot sign a checkpoint: {}", recorded.error())};
    }
    return m_impl->signer->Sign(tree_size, *root, timestamp);
}

Result<AppendResult> Ledger::PutAnchor(const AnchorRecord& record, const std::vector<Event>& events,
                                       const std::vector<Cursor>& cursors)
{
    if (record.id == 0) return Error{"anchor ids start at 1"};
    if (record.txids.size() > AnchorRecord::kTxidsMax) return Error{"too many transaction versions for one anchor"};
    if (record.proof && record.proof->branch.size() > AnchorRecord::kBranchMax) return Error{"Merkle branch too long"};
    for (const auto& event : events) {
        if (event.kind() != EventKind::Anchor) return Error{"PutAnchor appends anchor events only"};
    }
    LOCK(m_impl->mutex);
    return AppendLocked(events, cursors, &record);
}

std::optional<AnchorRecord> Ledger::GetAnchor(uint64_t id) const
{
    const auto value = m_impl->Get(m_impl->anchors, keys::AnchorRecordKey(id));
    if (!value) return std::nullopt;
    auto record = DecodeAnchorRecord(AsSpan(*value));
    if (!record) m_impl->ReadFailed(fmt::format("anchor record {} does not decode ({}): the database is corrupt", id, record.error()));
    return std::move(*record);
}

std::vector<AnchorRecord> Ledger::ListAnchors(uint64_t after_id, size_t limit) const
{
    std::vector<AnchorRecord> out;
    if (after_id == UINT64_MAX) return out; // after_id + 1 would wrap to the first anchor
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->anchors));
    for (it->Seek(keys::AnchorRecordKey(after_id + 1)); it->Valid() && out.size() < limit; it->Next()) {
        const auto key = it->key();
        if (key.size() != 9 || key[0] != 'r') break;
        auto record = DecodeAnchorRecord(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(it->value().data()),
                                                                  it->value().size()));
        if (record) out.push_back(std::move(*record));
    }
    m_impl->CheckIterator(*it, "anchors");
    return out;
}

std::optional<AnchorRecord> Ledger::LatestAnchor() const
{
    const uint64_t id = m_impl->latest_anchor_id.load();
    if (id == 0) return std::nullopt;
    auto record = GetAnchor(id);
    if (!record) m_impl->ReadFailed(fmt::format("anchor record {} is gone: the database is corrupt", id));
    return record;
}

uint64_t Ledger::Impl::FindLatestAnchorId() const
{
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), anchors));
    it->SeekForPrev(keys::AnchorRecordKey(UINT64_MAX));
    CheckIterator(*it, "anchors");
    if (!it->Valid() || it->key().size() != 9 || it->key()[0] != 'r') return 0;
    return keys::ParseU64(it->key().ToStringView().substr(1));
}

std::optional<AnchorRecord> Ledger::AnchorCovering(uint64_t index) const
{
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->anchors));
    it->Seek(keys::ProvenAnchorKey(index + 1, 0));
    m_impl->CheckIterator(*it, "anchors");
    if (!it->Valid() || it->key().size() != 17 || it->key()[0] != 'p') return std::nullopt;
    return GetAnchor(keys::ParseU64(it->key().ToStringView().substr(9)));
}

namespace {

// SHA-256 over projection entries held in memory, in key order as RocksDB keeps them.
Hash256 DerivedStateHash(const std::unordered_map<std::string, std::string>& entries)
{
    std::vector<const std::pair<const std::string, std::string>*> sorted;
    sorted.reserve(entries.size());
    for (const auto& entry : entries) sorted.push_back(&entry);
    std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
    Sha256Hasher hasher;
    for (const auto* entry : sorted) HashProjectionEntry(hasher, entry->first, entry->second);
    return hasher.Finalize();
}

} // namespace

Result<ConsistencyReport> Ledger::CheckConsistency() const
{
    ConsistencyReport report;
    const rocksdb::Snapshot* snapshot = nullptr;
    uint64_t generation = 0;
    std::optional<HighWater> mark;
    {
        READ_LOCK(m_impl->mutex); // no append in flight: the snapshot holds exactly the frontier's log
        snapshot = m_impl->db->GetSnapshot();
        report.tree_size = m_impl->frontier.size();
        report.root = m_impl->frontier.Root();
        generation = m_impl->projection_generation;
        mark = m_impl->mark ? std::optional(m_impl->mark->current()) : m_impl->read_only_mark;
    }
    // The log and the tree are read without the lock (their families never change);
    // the projections are derived in memory meanwhile.
    LayeredState derived([](const std::string&) { return std::optional<std::string>{}; });
    auto checked = ReadErrorsAsResult([&]() -> Status { return m_impl->CheckLog(snapshot, mark, derived, report); });
    if (checked) {
        report.derived_state_hash = DerivedStateHash(derived.writes());
        READ_LOCK(m_impl->mutex);
        if (m_impl->projection_generation != generation) {
            checked = Error{"the projections were rebuilt during the check; run it again"};
        } else if (auto stored = m_impl->StoredStateHash(snapshot); !stored) {
            checked = Error{stored.error()};
        } else {
            report.state_hash = *stored;
        }
    }
    m_impl->db->ReleaseSnapshot(snapshot);
    if (!checked) return checked.failure();
    if (report.state_hash != report.derived_state_hash) {
        AddProblem(report, fmt::format("the stored projections (state hash {}) differ from those derived from the "
                                       "log ({}): bitacorad -rebuild recomputes them",
                                       HexEncode(report.state_hash), HexEncode(report.derived_state_hash)));
    }
    if (!report.ok()) {
        m_impl->health.Degrade(fmt::format("the consistency check found {} problems: {}", report.problems_total,
                                           report.problems.front()));
    }
    return report;
}

namespace {

// A backup goes into a new or empty directory only: never over an earlier backup.
Status PrepareBackupDir(const std::filesystem::path& dir)
{
    if (!dir.is_absolute()) return Error{fmt::format("backup directory {} is not an absolute path", dir.string())};
    std::error_code ec;
    const auto status = std::filesystem::status(dir, ec);
    if (std::filesystem::exists(status)) {
        if (!std::filesystem::is_directory(status)) return Error{fmt::format("{} exists and is not a directory", dir.string())};
        if (!std::filesystem::is_empty(dir, ec) || ec) {
            return Error{fmt::format("backup directory {} is not empty; choose a new one", dir.string())};
        }
        return {};
    }
    std::filesystem::create_directories(dir, ec);
    if (ec) return Error{fmt::format("cannot create backup directory {}: {}", dir.string(), ec.message())};
    return {};
}

Status SyncPath(const std::filesystem::path& path, int flags)
{
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return Error{fmt::format("cannot open {}: {}", path.string(), std::strerror(errno))};
    const bool synced = ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!synced) return Error{fmt::format("cannot fsync {}: {}", path.string(), std::strerror(err))};
    return {};
}

// Copies a small secret file (the checkpoint key) with mode 0600, fsynced.
Status CopySecretFile(const std::filesystem::path& from, const std::filesystem::path& to)
{
    constexpr size_t kSecretBytesMax = 4096;
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return Error{fmt::format("cannot read {}: {}", from.string(), std::strerror(errno))};
    char buffer[kSecretBytesMax];
    const ssize_t got = ::read(in, buffer, sizeof(buffer));
    ::close(in);
    if (got <= 0 || static_cast<size_t>(got) == sizeof(buffer)) return Error{fmt::format("cannot read {}", from.string())};
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) return Error{fmt::format("cannot create {}: {}", to.string(), std::strerror(errno))};
    const bool written = ::write(out, buffer, static_cast<size_t>(got)) == got && ::fsync(out) == 0;
    std::memset(buffer, 0, sizeof(buffer));
    ::close(out);
    if (!written) return Error{fmt::format("cannot write {}", to.string())};
    return {};
}

// The marks of `before` that the copy holds (same root at the same size): the restored
// ledger is then held to what had been signed and anchored when the backup began.
HighWater BackupMark(const Ledger& copy, const std::optional<HighWater>& before)
{
    HighWater mark{.synced = {copy.size(), copy.root()}};
    if (!before) return mark;
    auto held = [&copy](const MarkedTree& tree) {
        if (tree.size == 0 || tree.size > copy.size()) return false;
        const auto root = copy.RootAt(tree.size);
        return root && *root == tree.root;
    };
    if (held(before->checkpoint)) {
        mark.checkpoint = before->checkpoint;
        mark.checkpoint_time = before->checkpoint_time;
    }
    if (before->anchor_id != 0 && held(before->anchor)) {
        mark.anchor_id = before->anchor_id;
        mark.anchor = before->anchor;
    }
    return mark;
}

// Opens the copy read-only and reads what it holds.
Result<BackupResult> ReadBackBackup(const std::filesystem::path& copy_dir, const std::optional<HighWater>& before)
{
    auto copy = Ledger::Open(copy_dir, LedgerOptions{.cache_mib = 8, .create_if_missing = false, .read_only = true});
    if (!copy) return Error{fmt::format("the backup in {} does not open: {}", copy_dir.string(), copy.error())};
    const Ledger& ledger = **copy;
    BackupResult result{.tree_size = ledger.size(), .root = ledger.root(), .schema_version = ledger.schema_version()};
    constexpr size_t kAnchorPage = 1000;
    for (uint64_t after = 0;;) {
        const auto page = ledger.ListAnchors(after, kAnchorPage);
        result.anchors += page.size();
        if (page.size() < kAnchorPage) break;
        after = page.back().id;
    }
    result.latest_anchor = ledger.LatestAnchor();
    result.mark = BackupMark(ledger, before);
    return result;
}

} // namespace

Result<BackupResult> Ledger::Backup(const std::filesystem::path& dir, bool include_key) const
{
    if (auto prepared = PrepareBackupDir(dir); !prepared) return prepared.failure();
    // Read before the checkpoint: every mark then covers a prefix of what the copy holds.
    const std::optional<HighWater> before = high_water();
    rocksdb::Checkpoint* raw = nullptr;
    if (const auto s = rocksdb::Checkpoint::Create(m_impl->db.get(), &raw); !s.ok()) {
        return Error{fmt::format("cannot start a checkpoint: {}", s.ToString())};
    }
    const std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    const std::filesystem::path copy_dir = dir / "ledger";
    // A flush first (log_size_for_flush 0): the copy's data is in tables, not a WAL to replay.
    if (const auto s = checkpoint->CreateCheckpoint(copy_dir.string(), 0); !s.ok()) {
        return Error{fmt::format("cannot write the checkpoint into {}: {}", copy_dir.string(), s.ToString())};
    }
    auto result = ReadBackBackup(copy_dir, before);
    if (!result) return result;
    if (auto written = HighWaterFile::Create(copy_dir / kHighWaterFileName, result->mark); !written) {
        return written.failure();
    }
    if (const auto key = checkpoint_public_key()) {
        result->checkpoint_public_key = key;
        if (include_key) {
            if (auto copied = CopySecretFile(m_impl->options.checkpoint_key_path, dir / "checkpoint.key"); !copied) {
                return copied.failure();
            }
            result->key_included = true;
        }
    }
    if (auto synced = SyncPath(dir, O_RDONLY | O_DIRECTORY); !synced) return synced.failure();
    LogInfo("Backup in {}: {} events, root {}, {} anchors{}", dir.string(), result->tree_size, HexEncode0x(result->root),
            result->anchors, result->key_included ? ", checkpoint key included" : "");
    return result;
}

std::optional<XOnlyPubKey> Ledger::checkpoint_public_key() const
{
    if (!m_impl->signer) return std::nullopt;
    return m_impl->signer->public_key();
}

namespace {
// Reads final projections straight from the database.
class FinalView final : public StateView {
public:
    explicit FinalView(LayeredState::BaseReader reader) : m_reader(std::move(reader)) {}
    std::optional<std::string> Get(const std::string& key) override { return m_reader(key); }
    void Put(const std::string&, const std::string&) override { std::abort(); } // queries never write
private:
    LayeredState::BaseReader m_reader;
};
} // namespace

std::optional<OrderRecord> Ledger::GetOrder(const UInt256& order_id, bool include_pending)
{
    READ_LOCK(m_impl->mutex);
    if (include_pending) {
        LOCK(m_impl->overlay_mutex);
        if (auto* overlay = m_impl->Overlay()) return ReadOrder(*overlay, order_id);
    }
    FinalView view(m_impl->ProjectionReader());
    return ReadOrder(view, order_id);
}

std::optional<VaultPosition> Ledger::GetPosition(const Address& owner, bool include_pending)
{
    READ_LOCK(m_impl->mutex);
    if (include_pending) {
        LOCK(m_impl->overlay_mutex);
        if (auto* overlay = m_impl->Overlay()) return ReadPosition(*overlay, owner);
    }
    FinalView view(m_impl->ProjectionReader());
    return ReadPosition(view, owner);
}

std::optional<uint8_t> Ledger::GetReputation(const Address& seller, bool include_pending)
{
    READ_LOCK(m_impl->mutex);
    if (include_pending) {
        LOCK(m_impl->overlay_mutex);
        if (auto* overlay = m_impl->Overlay()) return ReadReputation(*overlay, seller);
    }
    FinalView view(m_impl->ProjectionReader());
    return ReadReputation(view, seller);
}

Totals Ledger::GetTotals(bool include_pending)
{
    READ_LOCK(m_impl->mutex);
    if (include_pending) {
        LOCK(m_impl->overlay_mutex);
        if (auto* overlay = m_impl->Overlay()) return ReadTotals(*overlay);
    }
    FinalView view(m_impl->ProjectionReader());
    return ReadTotals(view);
}

Result<Hash256> Ledger::StateHash() const
{
    LOCK(m_impl->mutex); // a rebuild swaps the projections' column family
    return m_impl->StoredStateHash(nullptr);
}

std::vector<UInt256> Ledger::OrdersByParty(bool by_seller, const Address& party, const std::optional<UInt256>& after,
                                           size_t limit) const
{
    READ_LOCK(m_impl->mutex); // a rebuild swaps the projections' column family
    const std::string_view prefix_tag = by_seller ? keys::kOrdersBySellerPrefix : keys::kOrdersByBuyerPrefix;
    const std::string prefix = std::string(prefix_tag) + std::string(party.begin(), party.end());
    const std::string start = after ? keys::OrderByParty(prefix_tag, party, *after) : prefix;
    std::vector<UInt256> out;
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->proj));
    for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
        const auto key = it->key();
        if (!key.starts_with(prefix)) break;
        if (after && key.ToStringView() == start) continue;
        if (key.size() != prefix.size() + 32) continue;
        out.push_back(UInt256::FromBigEndian(
            std::span<const uint8_t, 32>(reinterpret_cast<const uint8_t*>(key.data()) + prefix.size(), 32)));
    }
    m_impl->CheckIterator(*it, "projections");
    return out;
}

std::vector<uint64_t> Ledger::AccountEvents(const Address& account, std::optional<uint64_t> after, size_t limit) const
{
    READ_LOCK(m_impl->mutex);
    const std::string prefix = std::string(keys::kAccountEventsPrefix) + std::string(account.begin(), account.end());
    const std::string start = after ? keys::AccountEvent(account, *after) : prefix;
    std::vector<uint64_t> out;
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->proj));
    for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
        const auto key = it->key();
        if (!key.starts_with(prefix) || key.size() != prefix.size() + 8) break;
        const uint64_t index = keys::ParseU64(std::string_view(key.data() + prefix.size(), 8));
        if (after && index <= *after) continue;
        out.push_back(index);
    }
    m_impl->CheckIterator(*it, "projections");
    return out;
}

std::vector<OrderRecord> Ledger::OrdersAfter(const std::optional<UInt256>& after, size_t limit) const
{
    READ_LOCK(m_impl->mutex);
    const std::string start = after ? keys::Order(*after) : std::string("o");
    std::vector<OrderRecord> out;
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->proj));
    for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
        const auto key = it->key();
        if (key.size() != 33 || key[0] != 'o') break;
        if (after && key.ToStringView() == start) continue;
        auto order = OrderRecord::Decode(AsSpan(it->value().ToString()));
        if (order) out.push_back(std::move(*order));
    }
    m_impl->CheckIterator(*it, "projections");
    return out;
}

Status Ledger::RebuildProjections()
{
    LOCK(m_impl->mutex);
    if (m_impl->options.read_only) return Error{"the ledger is open read-only"};
    if (!m_impl->write_error.empty()) return Error{fmt::format("ledger is read-only after a write error ({})", m_impl->write_error), ErrorKind::ReadOnly};
    ++m_impl->projection_generation;
    try {
        return RebuildProjectionsLocked();
    } catch (const LedgerReadError& e) {
        return Error{e.what()};
    }
}

Status Ledger::RebuildProjectionsLocked()
{
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    // The marker makes an interrupted rebuild restart at the next Open().
    if (const auto s = m_impl->db->Put(write_options, m_impl->meta, std::string(kRebuildMarker), "1"); !s.ok()) {
        return RebuildFailed(s);
    }
    if (auto status = m_impl->ResetProjections(); !status) return status;

    const uint64_t total = m_impl->frontier.size();
    LogInfo("Rebuilding projections from {} events", total);
    WrittenKeys written(total);
    const auto reader = m_impl->ProjectionReader();
    // Reading and decoding the next chunk of the log overlaps applying this one.
    auto load = [this](uint64_t begin, uint64_t end) { return m_impl->LoadEvents(begin, end); };
    std::future<Result<std::vector<Event>>> next;
    if (total > 0) next = std::async(std::launch::async, load, 0, std::min<uint64_t>(total, kRebuildChunkEvents));
    for (uint64_t begin = 0; begin < total; begin += kRebuildChunkEvents) {
        const uint64_t end = std::min<uint64_t>(total, begin + kRebuildChunkEvents);
        LayeredState state([&](const std::string& key) -> std::optional<std::string> {
            if (!written.MayContain(key)) return std::nullopt;
            return reader(key);
        });
        auto loaded = next.get();
        if (!loaded) return loaded.failure();
        std::vector<Event> chunk = std::move(loaded.value());
        if (end < total) {
            next = std::async(std::launch::async, load, end, std::min<uint64_t>(total, end + kRebuildChunkEvents));
        }
        ApplyEvents(chunk, begin, state);
        rocksdb::WriteBatch batch;
        for (const auto& [key, value] : state.writes()) {
            batch.Put(m_impl->proj, key, value);
            written.Add(key);
        }
        // No WAL: until the marker is cleared below, a crash restarts the rebuild anyway.
        rocksdb::WriteOptions chunk_options;
        chunk_options.disableWAL = true;
        if (const auto s = m_impl->db->Write(chunk_options, &batch); !s.ok()) return RebuildFailed(s);
    }
    // The projections reach their SST files before the marker goes.
    if (const auto s = m_impl->db->Flush(rocksdb::FlushOptions(), m_impl->proj); !s.ok()) return RebuildFailed(s);
    if (const auto s = m_impl->db->Delete(write_options, m_impl->meta, std::string(kRebuildMarker)); !s.ok()) {
        return RebuildFailed(s);
    }
    if (!m_impl->pending.empty()) m_impl->InvalidateOverlay();
    LogInfo("Rebuilt projections from {} events", total);
    return {};
}

Status Ledger::AddPendingBlock(const std::string& source, PendingBlock block)
{
    LOCK(m_impl->mutex);
    auto& blocks = m_impl->pending[source];
    if (!blocks.empty() && block.number != blocks.back().number + 1) {
        return Error{fmt::format("pending block {} of {} does not follow block {}", block.number, source,
                                 blocks.back().number)};
    }
    if (blocks.size() >= m_impl->options.pending_blocks_max) {
        return Error{fmt::format("pending overlay of {} is full ({} blocks)", source, blocks.size())};
    }
    if (block.events.size() > m_impl->options.pending_events_per_block_max) {
        return Error{fmt::format("pending block {} has {} events, over the limit", block.number, block.events.size())};
    }
    for (const auto& event : block.events) {
        if (!event.origin) return Error{"pending events must come from a chain"};
    }
    blocks.push_back(std::move(block));
    if (m_impl->listener && !blocks.back().events.empty()) {
        m_impl->listener(LedgerNotice{.type = LedgerNotice::Type::Pending, .source = source, .events = blocks.back().events});
    }
    LOCK(m_impl->overlay_mutex);
    if (m_impl->overlay && m_impl->pending.size() == 1) {
        // The common case, one chain extending its tip: apply only the new block.
        try {
            ApplyPendingEvents(blocks.back().events, *m_impl->overlay);
            return {};
        } catch (const LedgerReadError&) {
            // half-applied: start over at the next read
        }
    }
    m_impl->overlay.reset();
    m_impl->overlay_stale = true;
    return {};
}

Result<AppendResult> Ledger::FinalizePending(const std::string& source, uint64_t block_number)
{
    LOCK(m_impl->mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end() || it->second.empty() || it->second.front().number > block_number) {
        return Error{fmt::format("no pending block of {} at or below {}", source, block_number)};
    }
    auto& blocks = it->second;
    AppendResult last{.first_index = m_impl->frontier.size(), .tree_size = m_impl->frontier.size(), .root = m_impl->frontier.Root()};
    // One append per run of blocks that fits kAppendEventsMax; each moves the cursor to
    // its last block, so a failure part-way leaves log, cursor and overlay agreeing.
    while (!blocks.empty() && blocks.front().number <= block_number) {
        std::vector<Event> events;
        size_t taken = 0;
        while (taken < blocks.size() && blocks[taken].number <= block_number &&
               (taken == 0 || events.size() + blocks[taken].events.size() <= kAppendEventsMax)) {
            events.insert(events.end(), blocks[taken].events.begin(), blocks[taken].events.end());
            ++taken;
        }
        // Out of the overlay first, so that the append's overlay rebuild sees the rest only.
        std::vector<PendingBlock> finalized(std::make_move_iterator(blocks.begin()),
                                            std::make_move_iterator(blocks.begin() + static_cast<std::ptrdiff_t>(taken)));
        blocks.erase(blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(taken));
        const PendingBlock& tip = finalized.back();
        auto appended = AppendLocked(events, {Cursor{.source = source, .block_number = tip.number,
                                                     .block_hash = tip.hash}});
        if (!appended) {
            blocks.insert(blocks.begin(), std::make_move_iterator(finalized.begin()),
                          std::make_move_iterator(finalized.end()));
            m_impl->InvalidateOverlay();
            return appended.failure();
        }
        last = appended.value();
    }
    if (blocks.empty()) {
        m_impl->pending.erase(it);
        m_impl->InvalidateOverlay();
    }
    return last;
}

void Ledger::RollbackPending(const std::string& source, uint64_t block_number)
{
    LOCK(m_impl->mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end()) return;
    auto& blocks = it->second;
    LedgerNotice notice{.type = LedgerNotice::Type::RolledBack, .source = source};
    while (!blocks.empty() && blocks.back().number > block_number) {
        auto& dropped = blocks.back().events;
        notice.events.insert(notice.events.begin(), dropped.begin(), dropped.end());
        blocks.pop_back();
    }
    if (blocks.empty()) m_impl->pending.erase(it);
    m_impl->InvalidateOverlay();
    if (m_impl->listener && !notice.events.empty()) m_impl->listener(notice);
}

void Ledger::SetListener(LedgerListener listener)
{
    LOCK(m_impl->mutex);
    m_impl->listener = std::move(listener);
}

void Ledger::DropFinalizedPending(const std::string& source, uint64_t block_number)
{
    LOCK(m_impl->mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end()) return;
    auto& blocks = it->second;
    blocks.erase(std::remove_if(blocks.begin(), blocks.end(),
                                [&](const PendingBlock& b) { return b.number <= block_number; }),
                 blocks.end());
    if (blocks.empty()) m_impl->pending.erase(it);
    m_impl->InvalidateOverlay();
}

std::vector<PendingBlock> Ledger::GetPending(const std::string& source) const
{
    READ_LOCK(m_impl->mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end()) return {};
    return it->second;
}

} // namespace bitacora::ledger
