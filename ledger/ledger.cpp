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
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <future>
#include <cstdarg>
#include <cstdio>

namespace bitacora::ledger {
namespace {

constexpr std::string_view kRebuildMarker = "rebuild_in_progress";
// Merkle nodes at this level and above are also kept in memory (one hash per 8
// leaves, 4 bytes per event: 40 MB at 10 million events), so an inclusion proof
// reads at most levels 1..3, the sibling leaf and the leaf itself from RocksDB.
constexpr unsigned kCachedLevelMin = 4;
constexpr size_t kRebuildChunkEvents = 20'000;

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
        const bool warning = level >= rocksdb::InfoLogLevel::WARN_LEVEL;
        if (!warning && !log::GetLogger().WillLogCategory(log::Category::Db)) return;
        char buffer[1024];
        std::vsnprintf(buffer, sizeof(buffer), format, ap);
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

} // namespace

struct Ledger::Impl {
    std::filesystem::path path;
    LedgerOptions options;
    std::unique_ptr<rocksdb::DB> db;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::ColumnFamilyHandle* meta{nullptr};
    rocksdb::ColumnFamilyHandle* events{nullptr};
    rocksdb::ColumnFamilyHandle* merkle{nullptr};
    rocksdb::ColumnFamilyHandle* proj{nullptr};
    rocksdb::ColumnFamilyHandle* anchors{nullptr};
    MerkleFrontier frontier;
    std::unique_ptr<CheckpointSigner> signer;
    std::map<std::string, std::vector<PendingBlock>> pending;
    std::vector<std::vector<Hash256>> upper_nodes; // [level - kCachedLevelMin][index]
    // Set by the first failed write (a full disk, an I/O error). RocksDB must not be
    // written again after that (its own assertions abort on it); reads still work,
    // and a restart once the disk is fixed recovers from the WAL.
    std::string write_error;
    std::unique_ptr<LayeredState> overlay; // final projections plus pending events

    ~Impl()
    {
        if (db) {
            for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
            db->Close();
        }
    }

    std::optional<std::string> Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key) const
    {
        std::string value;
        const auto status = db->Get(rocksdb::ReadOptions(), cf, key, &value);
        if (status.IsNotFound()) return std::nullopt;
        // A read error of the database under us is not recoverable here.
        if (!status.ok()) {
            LogError("Database read failed: {}", status.ToString());
            std::abort();
        }
        return value;
    }

    NodeReader Nodes() const
    {
        return [this](unsigned level, uint64_t index) {
            if (level >= kCachedLevelMin) {
                const auto& nodes = upper_nodes.at(level - kCachedLevelMin);
                if (index < nodes.size()) return nodes[index];
            }
            if (level == 0) {
                // Leaf hashes are not stored: the leaf is, and hashing it is cheaper than
                // a fifth key per event on every append.
                const auto leaf = Get(events, keys::Event(index));
                if (!leaf) {
                    LogError("Event {} missing: the database is corrupt", index);
                    std::abort();
                }
                return MerkleLeafHash(AsSpan(*leaf));
            }
            const auto value = Get(merkle, keys::MerkleNode(level, index));
            if (!value || value->size() != 32) {
                LogError("Merkle node ({}, {}) missing: the database is corrupt", level, index);
                std::abort();
            }
            Hash256 hash;
            std::copy(value->begin(), value->end(), hash.begin());
            return hash;
        };
    }

    LayeredState::BaseReader ProjectionReader() const
    {
        return [this](const std::string& key) { return Get(proj, key); };
    }
};

Ledger::Ledger(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Ledger::~Ledger() = default;

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::filesystem::path& dir, const LedgerOptions& options)
{
    rocksdb::Options db_options;
    db_options.create_if_missing = options.create_if_missing;
    db_options.create_missing_column_families = true;
    db_options.paranoid_checks = true;
    db_options.max_open_files = 512;
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

    const std::vector<std::string> families = {rocksdb::kDefaultColumnFamilyName, keys::kMetaFamily,
                                               keys::kEventsFamily, keys::kMerkleFamily, keys::kProjectionsFamily,
                                               keys::kAnchorsFamily};
    std::vector<std::string> existing;
    const bool fresh = !std::filesystem::exists(dir / "CURRENT");
    if (fresh && options.create_if_missing) {
        // Created here so that RocksDB does not warn about a missing directory.
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) return Error{fmt::format("cannot create database directory {}: {}", dir.string(), ec.message())};
    }
    if (!fresh && rocksdb::DB::ListColumnFamilies(db_options, dir.string(), &existing).ok()) {
        for (const auto& name : existing) {
            if (std::find(families.begin(), families.end(), name) == families.end()) {
                return Error{fmt::format("database {} has an unknown column family '{}'", dir.string(), name)};
            }
        }
    }
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
            family.memtable_whole_key_filtering = true;
            family.memtable_prefix_bloom_size_ratio = 0.05;
        }
        descriptors.emplace_back(name, family);
    }

    auto impl = std::make_unique<Impl>();
    impl->path = dir;
    impl->options = options;
    rocksdb::DB* raw = nullptr;
    const auto status = rocksdb::DB::Open(db_options, dir.string(), descriptors, &impl->handles, &raw);
    if (!status.ok()) return Error{fmt::format("cannot open database {}: {}", dir.string(), status.ToString())};
    impl->db.reset(raw);
    impl->meta = impl->handles[1];
    impl->events = impl->handles[2];
    impl->merkle = impl->handles[3];
    impl->proj = impl->handles[4];
    impl->anchors = impl->handles[5];
    LogDebug(log::Category::Db, "RocksDB {} opened: {} column families, block cache {} MiB", dir.string(),
             families.size(), options.cache_mib);

    auto ledger = std::unique_ptr<Ledger>(new Ledger(std::move(impl)));
    Impl& m = *ledger->m_impl;
    const auto stored = m.Get(m.meta, std::string(keys::kSchemaVersion));
    if (!stored) {
        rocksdb::WriteOptions write_options;
        write_options.sync = true;
        const auto written = m.db->Put(write_options, m.meta, std::string(keys::kSchemaVersion), std::to_string(kSchemaVersion));
        if (!written.ok()) return Error{fmt::format("cannot initialise database {}: {}", dir.string(), written.ToString())};
        ledger->m_schema_version = kSchemaVersion;
        LogInfo("Created database {} (schema version {})", dir.string(), kSchemaVersion);
    } else {
        uint32_t version = 0;
        const auto [ptr, ec] = std::from_chars(stored->data(), stored->data() + stored->size(), version);
        if (ec != std::errc() || ptr != stored->data() + stored->size()) {
            return Error{fmt::format("database {} has a corrupt schema version '{}'", dir.string(), *stored)};
        }
        if (version > kSchemaVersion) {
            return Error{fmt::format("database {} has schema version {}, newer than this bitacorad supports ({}); "
                                     "run a newer release",
                                     dir.string(), version, kSchemaVersion)};
        }
        ledger->m_schema_version = version;
    }

    m.upper_nodes.resize(64 - kCachedLevelMin);
    {
        std::unique_ptr<rocksdb::Iterator> it(m.db->NewIterator(rocksdb::ReadOptions(), m.merkle));
        for (it->Seek(std::string(1, static_cast<char>(kCachedLevelMin))); it->Valid(); it->Next()) {
            const auto key = it->key();
            if (key.size() != 9 || it->value().size() != 32) return Error{"corrupt Merkle node key or value"};
            const unsigned level = static_cast<uint8_t>(key[0]);
            auto& nodes = m.upper_nodes.at(level - kCachedLevelMin);
            if (keys::ParseU64(std::string_view(key.data() + 1, 8)) != nodes.size()) return Error{"gap in stored Merkle nodes"};
            Hash256 hash;
            std::copy(it->value().data(), it->value().data() + 32, hash.begin());
            nodes.push_back(hash);
        }
        if (!it->status().ok()) return Error{fmt::format("reading Merkle nodes failed: {}", it->status().ToString())};
    }
    const auto tree_size = m.Get(m.meta, std::string(keys::kTreeSize));
    m.frontier = MerkleFrontier::Load(m.Nodes(), tree_size ? keys::ParseU64(*tree_size) : 0);
    if (stored) {
        LogInfo("Opened database {} (schema version {}, {} events, root {})", dir.string(), ledger->m_schema_version,
                m.frontier.size(), HexEncode(m.frontier.Root()));
    }

    if (!options.checkpoint_key_path.empty()) {
        auto signer = CheckpointSigner::LoadOrCreate(options.checkpoint_key_path);
        if (!signer) return Error{signer.error()};
        m.signer = std::move(signer.value());
    }

    if (m.Get(m.meta, std::string(kRebuildMarker))) {
        LogWarning("A projection rebuild was interrupted; rebuilding again");
        if (auto rebuilt = ledger->RebuildProjections(); !rebuilt) return Error{rebuilt.error()};
    }
    // Projections of an older layout (fewer indexes) are recomputed from the log.
    const auto projection_version = m.Get(m.meta, std::string(keys::kProjectionVersion));
    const uint32_t stored_projection = projection_version ? static_cast<uint32_t>(std::stoul(*projection_version)) : 0;
    if (stored_projection < kProjectionVersion) {
        if (m.frontier.size() > 0) {
            LogInfo("Projections are version {}, this release writes version {}: rebuilding them from the log",
                    stored_projection, kProjectionVersion);
            if (auto status = ledger->RebuildProjections(); !status) return Error{status.error()};
        }
        rocksdb::WriteOptions write_options;
        write_options.sync = true;
        const auto written =
            m.db->Put(write_options, m.meta, std::string(keys::kProjectionVersion), std::to_string(kProjectionVersion));
        if (!written.ok()) return Error{fmt::format("cannot record the projection version: {}", written.ToString())};
    }
    return ledger;
}

Result<AppendResult> Ledger::Append(const std::vector<Event>& events, const std::vector<Cursor>& cursors)
{
    LOCK(m_mutex);
    return AppendLocked(events, cursors);
}

Result<AppendResult> Ledger::AppendLocked(const std::vector<Event>& events, const std::vector<Cursor>& cursors,
                                          const AnchorRecord* anchor)
{
    Impl& m = *m_impl;
    if (!m.write_error.empty()) {
        return Error{fmt::format("ledger is read-only after a write error ({}); fix the disk and restart", m.write_error)};
    }
    if (events.size() > kAppendEventsMax) {
        return Error{fmt::format("append of {} events exceeds the limit of {}", events.size(), kAppendEventsMax)};
    }
    for (const auto& event : events) {
        if (IsOnChain(event.kind()) != event.origin.has_value()) {
            return Error{fmt::format("{} event {} an EVM origin", EventKindName(event.kind()),
                                     event.origin ? "must not have" : "needs")};
        }
    }

    MerkleFrontier frontier = m.frontier; // committed only once the batch is durable
    LayeredState state(m.ProjectionReader());
    rocksdb::WriteBatch batch;
    std::vector<MerkleFrontier::Node> upper; // cached once the batch is durable
    const uint64_t first_index = frontier.size();
    for (const auto& event : events) {
        const uint64_t index = frontier.size();
        const Bytes leaf = EncodeEvent(event);
        batch.Put(m.events, keys::Event(index), AsSlice(leaf));
        frontier.Append(MerkleLeafHash(leaf), [&](const MerkleFrontier::Node& node) {
            if (node.level == 0) return;
            batch.Put(m.merkle, keys::MerkleNode(node.level, node.index), AsSlice(node.hash));
            if (node.level >= kCachedLevelMin) upper.push_back(node);
        });
    }
    ApplyEvents(events, first_index, state);
    for (const auto& [key, value] : state.writes()) batch.Put(m.proj, key, value);
    batch.Put(m.meta, std::string(keys::kTreeSize), keys::U64(frontier.size()));
    for (const auto& cursor : cursors) {
        batch.Put(m.meta, std::string(keys::kCursorPrefix) + cursor.source, EncodeCursor(cursor));
    }
    if (anchor != nullptr) {
        if (const auto old = m.Get(m.anchors, keys::AnchorRecordKey(anchor->id))) {
            if (const auto previous = DecodeAnchorRecord(AsSpan(*old)); previous && previous->proven()) {
                batch.Delete(m.anchors, keys::ProvenAnchorKey(previous->tree_size, previous->id));
            }
        }
        batch.Put(m.anchors, keys::AnchorRecordKey(anchor->id), AsSlice(EncodeAnchorRecord(*anchor)));
        if (anchor->proven()) batch.Put(m.anchors, keys::ProvenAnchorKey(anchor->tree_size, anchor->id), "");
    }

    rocksdb::WriteOptions write_options;
    write_options.sync = m.options.sync_every_append || anchor != nullptr ||
                         std::any_of(events.begin(), events.end(), [](const Event& e) { return !IsOnChain(e.kind()); });
    const auto status = m.db->Write(write_options, &batch);
    if (!status.ok()) {
        // Nothing was applied: the in-memory frontier still matches the database.
        m.write_error = status.ToString();
        LogError("Ledger append of {} events failed: {}; the ledger is read-only until restarted", events.size(),
                 status.ToString());
        return Error{fmt::format("ledger append failed: {}", status.ToString())};
    }
    m.frontier = std::move(frontier);
    for (const auto& node : upper) {
        auto& nodes = m.upper_nodes[node.level - kCachedLevelMin];
        assert(nodes.size() == node.index);
        nodes.push_back(node.hash);
    }
    LogDebug(log::Category::Ledger, "Appended {} events at {}; size {}", events.size(), first_index, m.frontier.size());
    if (m_listener && !events.empty()) {
        m_listener(LedgerNotice{.type = LedgerNotice::Type::Appended, .first_index = first_index, .events = events});
    }
    if (!m.pending.empty() && !events.empty()) RebuildOverlayLocked();
    return AppendResult{first_index, m.frontier.size(), m.frontier.Root()};
}

Result<uint64_t> Ledger::AppendOffchain(const OffchainEvent& event)
{
    if (event.kind.empty() || event.kind.size() > 64) return Error{"off-chain event kind must be 1 to 64 bytes"};
    if (event.idempotency_key.empty() || event.idempotency_key.size() > 128) {
        return Error{"idempotency key must be 1 to 128 bytes"};
    }
    if (event.payload.size() > 64 * 1024) return Error{"off-chain payload exceeds 64 KiB"};
    if (!VerifySchnorr(event.submitter, OffchainSigningHash(event), event.signature)) {
        return Error{"off-chain event signature does not verify for its submitter key"};
    }
    LOCK(m_mutex);
    LayeredState final_state(m_impl->ProjectionReader());
    if (const auto existing = ReadIdempotencyKey(final_state, event.idempotency_key)) {
        const auto leaf = m_impl->Get(m_impl->events, keys::Event(*existing));
        if (!leaf) return Error{"idempotency index points at a missing event"};
        const auto decoded = DecodeEvent(AsSpan(*leaf));
        const auto* previous = decoded ? std::get_if<OffchainEvent>(&decoded->body) : nullptr;
        if (previous == nullptr || previous->kind != event.kind || previous->payload != event.payload) {
            return Error{fmt::format("idempotency key '{}' was already used for a different event", event.idempotency_key)};
        }
        return *existing;
    }
    auto appended = AppendLocked({Event{std::nullopt, event}}, {});
    if (!appended) return Error{appended.error()};
    return appended->first_index;
}

uint64_t Ledger::size() const
{
    READ_LOCK(m_mutex);
    return m_impl->frontier.size();
}

Hash256 Ledger::root() const
{
    READ_LOCK(m_mutex);
    return m_impl->frontier.Root();
}

Result<Hash256> Ledger::RootAt(uint64_t tree_size) const
{
    READ_LOCK(m_mutex);
    if (tree_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", tree_size, m_impl->frontier.size())};
    }
    return MerkleFrontier::Load(m_impl->Nodes(), tree_size).Root();
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
    const auto value = m_impl->Get(m_impl->events, keys::Event(index));
    if (!value) return Error{fmt::format("event {} is missing from the database", index)};
    return Bytes(value->begin(), value->end());
}

Result<InclusionProof> Ledger::ProveInclusion(uint64_t index, uint64_t tree_size) const
{
    READ_LOCK(m_mutex);
    if (tree_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", tree_size, m_impl->frontier.size())};
    }
    if (index >= tree_size) return Error{fmt::format("index {} is not below tree size {}", index, tree_size)};
    InclusionProof proof;
    proof.index = index;
    proof.tree_size = tree_size;
    const auto leaf = m_impl->Get(m_impl->events, keys::Event(index));
    if (!leaf) return Error{fmt::format("event {} is missing from the database", index)};
    proof.leaf.assign(leaf->begin(), leaf->end());
    const NodeReader nodes = m_impl->Nodes();
    proof.path = MerkleInclusionPath(nodes, index, tree_size);
    proof.root = tree_size == m_impl->frontier.size() ? m_impl->frontier.Root() : MerkleFrontier::Load(nodes, tree_size).Root();
    return proof;
}

Result<std::vector<Hash256>> Ledger::ProveConsistency(uint64_t old_size, uint64_t new_size) const
{
    READ_LOCK(m_mutex);
    if (old_size > new_size) return Error{fmt::format("old size {} exceeds new size {}", old_size, new_size)};
    if (new_size > m_impl->frontier.size()) {
        return Error{fmt::format("tree size {} is beyond the log's {}", new_size, m_impl->frontier.size())};
    }
    return MerkleConsistencyPath(m_impl->Nodes(), old_size, new_size);
}

Result<Checkpoint> Ledger::SignCheckpoint(uint64_t timestamp) const
{
    LOCK(m_mutex);
    if (!m_impl->signer) return Error{"no checkpoint key configured"};
    return m_impl->signer->Sign(m_impl->frontier.size(), m_impl->frontier.Root(), timestamp);
}

Result<Checkpoint> Ledger::SignCheckpointAt(uint64_t tree_size, uint64_t timestamp) const
{
    if (!m_impl->signer) return Error{"no checkpoint key configured"};
    auto root = RootAt(tree_size);
    if (!root) return Error{root.error()};
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
    LOCK(m_mutex);
    return AppendLocked(events, cursors, &record);
}

std::optional<AnchorRecord> Ledger::GetAnchor(uint64_t id) const
{
    const auto value = m_impl->Get(m_impl->anchors, keys::AnchorRecordKey(id));
    if (!value) return std::nullopt;
    auto record = DecodeAnchorRecord(AsSpan(*value));
    if (!record) {
        LogError("Anchor record {} does not decode ({}): the database is corrupt", id, record.error());
        std::abort();
    }
    return std::move(*record);
}

std::vector<AnchorRecord> Ledger::ListAnchors(uint64_t after_id, size_t limit) const
{
    std::vector<AnchorRecord> out;
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->anchors));
    for (it->Seek(keys::AnchorRecordKey(after_id + 1)); it->Valid() && out.size() < limit; it->Next()) {
        const auto key = it->key();
        if (key.size() != 9 || key[0] != 'r') break;
        auto record = DecodeAnchorRecord(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(it->value().data()),
                                                                  it->value().size()));
        if (record) out.push_back(std::move(*record));
    }
    return out;
}

std::optional<AnchorRecord> Ledger::LatestAnchor() const
{
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->anchors));
    it->SeekForPrev(keys::AnchorRecordKey(UINT64_MAX));
    if (!it->Valid() || it->key().size() != 9 || it->key()[0] != 'r') return std::nullopt;
    return GetAnchor(keys::ParseU64(it->key().ToStringView().substr(1)));
}

std::optional<AnchorRecord> Ledger::AnchorCovering(uint64_t index) const
{
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(rocksdb::ReadOptions(), m_impl->anchors));
    it->Seek(keys::ProvenAnchorKey(index + 1, 0));
    if (!it->Valid() || it->key().size() != 17 || it->key()[0] != 'p') return std::nullopt;
    return GetAnchor(keys::ParseU64(it->key().ToStringView().substr(9)));
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
    READ_LOCK(m_mutex);
    if (include_pending && m_impl->overlay) return ReadOrder(*m_impl->overlay, order_id);
    FinalView view(m_impl->ProjectionReader());
    return ReadOrder(view, order_id);
}

std::optional<VaultPosition> Ledger::GetPosition(const Address& owner, bool include_pending)
{
    READ_LOCK(m_mutex);
    if (include_pending && m_impl->overlay) return ReadPosition(*m_impl->overlay, owner);
    FinalView view(m_impl->ProjectionReader());
    return ReadPosition(view, owner);
}

std::optional<uint8_t> Ledger::GetReputation(const Address& seller, bool include_pending)
{
    READ_LOCK(m_mutex);
    if (include_pending && m_impl->overlay) return ReadReputation(*m_impl->overlay, seller);
    FinalView view(m_impl->ProjectionReader());
    return ReadReputation(view, seller);
}

Totals Ledger::GetTotals(bool include_pending)
{
    READ_LOCK(m_mutex);
    if (include_pending && m_impl->overlay) return ReadTotals(*m_impl->overlay);
    FinalView view(m_impl->ProjectionReader());
    return ReadTotals(view);
}

Result<Hash256> Ledger::StateHash() const
{
    LOCK(m_mutex); // a rebuild swaps the projections' column family
    const rocksdb::Snapshot* snapshot = m_impl->db->GetSnapshot();
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    std::unique_ptr<rocksdb::Iterator> it(m_impl->db->NewIterator(read_options, m_impl->proj));
    Sha256Hasher hasher;
    Bytes framing;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
        framing.clear();
        Writer(framing).U32(static_cast<uint32_t>(it->key().size()));
        hasher.Update(framing);
        hasher.Update({reinterpret_cast<const uint8_t*>(it->key().data()), it->key().size()});
        framing.clear();
        Writer(framing).U32(static_cast<uint32_t>(it->value().size()));
        hasher.Update(framing);
        hasher.Update({reinterpret_cast<const uint8_t*>(it->value().data()), it->value().size()});
    }
    const auto status = it->status();
    it.reset();
    m_impl->db->ReleaseSnapshot(snapshot);
    if (!status.ok()) return Error{fmt::format("reading projections failed: {}", status.ToString())};
    return hasher.Finalize();
}

std::vector<UInt256> Ledger::OrdersByParty(bool by_seller, const Address& party, const std::optional<UInt256>& after,
                                           size_t limit) const
{
    READ_LOCK(m_mutex); // a rebuild swaps the projections' column family
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
    return out;
}

std::vector<uint64_t> Ledger::AccountEvents(const Address& account, std::optional<uint64_t> after, size_t limit) const
{
    READ_LOCK(m_mutex);
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
    return out;
}

std::vector<OrderRecord> Ledger::OrdersAfter(const std::optional<UInt256>& after, size_t limit) const
{
    READ_LOCK(m_mutex);
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
    return out;
}

Status Ledger::RebuildProjections()
{
    LOCK(m_mutex);
    Impl& m = *m_impl;
    if (!m.write_error.empty()) return Error{fmt::format("ledger is read-only after a write error ({})", m.write_error)};
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    // The marker makes an interrupted rebuild restart at the next Open(). Dropping the
    // family is faster than a range delete, whose tombstone every later read would meet.
    if (const auto s = m.db->Put(write_options, m.meta, std::string(kRebuildMarker), "1"); !s.ok()) {
        return Error{fmt::format("rebuild failed: {}", s.ToString())};
    }
    {
        rocksdb::ColumnFamilyDescriptor descriptor;
        if (const auto s = m.proj->GetDescriptor(&descriptor); !s.ok()) return Error{fmt::format("rebuild failed: {}", s.ToString())};
        if (const auto s = m.db->DropColumnFamily(m.proj); !s.ok()) return Error{fmt::format("rebuild failed: {}", s.ToString())};
        rocksdb::ColumnFamilyHandle* fresh = nullptr;
        if (const auto s = m.db->CreateColumnFamily(descriptor.options, descriptor.name, &fresh); !s.ok()) {
            return Error{fmt::format("rebuild failed: {}", s.ToString())};
        }
        auto it = std::find(m.handles.begin(), m.handles.end(), m.proj);
        m.db->DestroyColumnFamilyHandle(m.proj);
        *it = fresh;
        m.proj = fresh;
    }

    const uint64_t total = m.frontier.size();
    LogInfo("Rebuilding projections from {} events", total);
    WrittenKeys written(total);
    const auto reader = m.ProjectionReader();
    // Reading and decoding the next chunk of the log overlaps applying this one.
    auto load = [&m](uint64_t begin, uint64_t end) -> Result<std::vector<Event>> {
        std::vector<Event> chunk;
        chunk.reserve(end - begin);
        rocksdb::ReadOptions read_options;
        read_options.fill_cache = false; // one pass over the log; keep the cache for live reads
        std::unique_ptr<rocksdb::Iterator> it(m.db->NewIterator(read_options, m.events));
        uint64_t index = begin;
        for (it->Seek(keys::Event(begin)); it->Valid() && index < end; it->Next(), ++index) {
            if (keys::ParseU64(it->key().ToStringView()) != index) return Error{fmt::format("event {} is missing", index)};
            auto event = DecodeEvent({reinterpret_cast<const uint8_t*>(it->value().data()), it->value().size()});
            if (!event) return Error{fmt::format("event {} does not decode: {}", index, event.error())};
            chunk.push_back(std::move(event.value()));
        }
        if (!it->status().ok()) return Error{fmt::format("reading events failed: {}", it->status().ToString())};
        if (index != end) return Error{fmt::format("event {} is missing", index)};
        return chunk;
    };
    std::future<Result<std::vector<Event>>> next;
    if (total > 0) next = std::async(std::launch::async, load, 0, std::min<uint64_t>(total, kRebuildChunkEvents));
    for (uint64_t begin = 0; begin < total; begin += kRebuildChunkEvents) {
        const uint64_t end = std::min<uint64_t>(total, begin + kRebuildChunkEvents);
        LayeredState state([&](const std::string& key) -> std::optional<std::string> {
            if (!written.MayContain(key)) return std::nullopt;
            return reader(key);
        });
        auto loaded = next.get();
        if (!loaded) return Error{loaded.error()};
        std::vector<Event> chunk = std::move(loaded.value());
        if (end < total) {
            next = std::async(std::launch::async, load, end, std::min<uint64_t>(total, end + kRebuildChunkEvents));
        }
        ApplyEvents(chunk, begin, state);
        rocksdb::WriteBatch batch;
        for (const auto& [key, value] : state.writes()) {
            batch.Put(m.proj, key, value);
            written.Add(key);
        }
        // No WAL: until the marker is cleared below, a crash restarts the rebuild anyway.
        rocksdb::WriteOptions chunk_options;
        chunk_options.disableWAL = true;
        if (const auto s = m.db->Write(chunk_options, &batch); !s.ok()) return Error{fmt::format("rebuild failed: {}", s.ToString())};
    }
    // The projections reach their SST files before the marker goes.
    if (const auto s = m.db->Flush(rocksdb::FlushOptions(), m.proj); !s.ok()) {
        return Error{fmt::format("rebuild failed: {}", s.ToString())};
    }
    if (const auto s = m.db->Delete(write_options, m.meta, std::string(kRebuildMarker)); !s.ok()) {
        return Error{fmt::format("rebuild failed: {}", s.ToString())};
    }
    if (!m.pending.empty()) RebuildOverlayLocked();
    LogInfo("Rebuilt projections from {} events", total);
    return {};
}

void Ledger::RebuildOverlayLocked()
{
    Impl& m = *m_impl;
    if (m.pending.empty()) {
        m.overlay.reset();
        return;
    }
    auto overlay = std::make_unique<LayeredState>(m.ProjectionReader());
    uint64_t index = m.frontier.size(); // provisional indices after the final log
    for (const auto& [source, blocks] : m.pending) {
        for (const auto& block : blocks) {
            ApplyEvents(block.events, index, *overlay);
            index += block.events.size();
        }
    }
    m.overlay = std::move(overlay);
}

Status Ledger::AddPendingBlock(const std::string& source, PendingBlock block)
{
    LOCK(m_mutex);
    Impl& m = *m_impl;
    auto& blocks = m.pending[source];
    if (!blocks.empty() && block.number != blocks.back().number + 1) {
        return Error{fmt::format("pending block {} of {} does not follow block {}", block.number, source,
                                 blocks.back().number)};
    }
    if (blocks.size() >= m.options.pending_blocks_max) {
        return Error{fmt::format("pending overlay of {} is full ({} blocks)", source, blocks.size())};
    }
    if (block.events.size() > m.options.pending_events_per_block_max) {
        return Error{fmt::format("pending block {} has {} events, over the limit", block.number, block.events.size())};
    }
    for (const auto& event : block.events) {
        if (!event.origin) return Error{"pending events must come from a chain"};
    }
    blocks.push_back(std::move(block));
    if (m.overlay && m.pending.size() == 1) {
        // The common case, one chain extending its tip: apply only the new block.
        uint64_t index = m.frontier.size();
        for (size_t i = 0; i + 1 < blocks.size(); ++i) index += blocks[i].events.size();
        ApplyEvents(blocks.back().events, index, *m.overlay);
    } else {
        RebuildOverlayLocked();
    }
    return {};
}

Result<AppendResult> Ledger::FinalizePending(const std::string& source, uint64_t block_number)
{
    LOCK(m_mutex);
    Impl& m = *m_impl;
    auto it = m.pending.find(source);
    if (it == m.pending.end() || it->second.empty() || it->second.front().number > block_number) {
        return Error{fmt::format("no pending block of {} at or below {}", source, block_number)};
    }
    auto& blocks = it->second;
    AppendResult last{.first_index = m.frontier.size(), .tree_size = m.frontier.size(), .root = m.frontier.Root()};
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
            RebuildOverlayLocked();
            return Error{appended.error()};
        }
        last = appended.value();
    }
    if (blocks.empty()) {
        m.pending.erase(it);
        RebuildOverlayLocked();
    }
    return last;
}

void Ledger::RollbackPending(const std::string& source, uint64_t block_number)
{
    LOCK(m_mutex);
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
    RebuildOverlayLocked();
    if (m_listener && !notice.events.empty()) m_listener(notice);
}

void Ledger::SetListener(LedgerListener listener)
{
    LOCK(m_mutex);
    m_listener = std::move(listener);
}

void Ledger::DropFinalizedPending(const std::string& source, uint64_t block_number)
{
    LOCK(m_mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end()) return;
    auto& blocks = it->second;
    blocks.erase(std::remove_if(blocks.begin(), blocks.end(),
                                [&](const PendingBlock& b) { return b.number <= block_number; }),
                 blocks.end());
    if (blocks.empty()) m_impl->pending.erase(it);
    RebuildOverlayLocked();
}

std::vector<PendingBlock> Ledger::GetPending(const std::string& source) const
{
    READ_LOCK(m_mutex);
    auto it = m_impl->pending.find(source);
    if (it == m_impl->pending.end()) return {};
    return it->second;
}

} // namespace bitacora::ledger
