// Storage faults must never rewrite acknowledged history (issue 12): a damaged or
// truncated WAL, a deleted WAL and CURRENT, a corrupt SST block. Each fault is made on
// a closed ledger's files; the reopened ledger must refuse, or answer an error, but
// never silently open shorter, start a fresh log, or abort.
#include "common/hex.h"
#include "ledger/ledger.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/table_properties.h>

#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kEvents = 1'500;
constexpr uint64_t kBatchEvents = 50;

struct Written {
    uint64_t size{0};
    Hash256 root{};
};

// Appends kEvents in fsynced batches: every one of them was acknowledged as durable.
Written WriteLedger(const fs::path& db, const LedgerOptions& base = {})
{
    LedgerOptions options = base;
    options.sync_every_append = true;
    auto opened = Ledger::Open(db, options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
    Written out;
    for (uint64_t begin = 0; begin < kEvents; begin += kBatchEvents) {
        std::vector<Event> events;
        for (uint64_t i = begin; i < begin + kBatchEvents; ++i) events.push_back(ReferenceEvent(i));
        const auto appended = (*opened)->Append(events);
        REQUIRE(appended);
        out = {appended->tree_size, appended->root};
    }
    return out;
}

std::vector<fs::path> FilesEndingWith(const fs::path& dir, const std::string& suffix)
{
    std::vector<fs::path> out;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            out.push_back(entry.path());
        }
    }
    return out;
}

fs::path LargestWal(const fs::path& db)
{
    const auto logs = FilesEndingWith(db, ".log");
    REQUIRE_FALSE(logs.empty());
    return *std::max_element(logs.begin(), logs.end(),
                             [](const fs::path& a, const fs::path& b) { return fs::file_size(a) < fs::file_size(b); });
}

void FlipBytes(const fs::path& file, uint64_t offset, size_t count)
{
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f);
    for (size_t i = 0; i < count; ++i) {
        f.seekg(static_cast<std::streamoff>(offset + i));
        const int byte = f.get();
        REQUIRE(byte != EOF);
        f.seekp(static_cast<std::streamoff>(offset + i));
        f.put(static_cast<char>(byte ^ 0x5a));
    }
}

// The SST file of a column family (one, after a reopen flushed the recovered WAL).
std::optional<fs::path> SstOf(const fs::path& db, const std::string& family)
{
    for (const auto& path : FilesEndingWith(db, ".sst")) {
        rocksdb::SstFileReader reader(rocksdb::Options{});
        if (!reader.Open(path.string()).ok()) continue;
        if (reader.GetTableProperties()->column_family_name == family) return path;
    }
    return std::nullopt;
}

std::string OpenError(const fs::path& db, const LedgerOptions& options = {})
{
    auto opened = Ledger::Open(db, options);
    if (opened) {
        FAIL_CHECK("the damaged ledger opened with " << (*opened)->size() << " events");
        return "";
    }
    MESSAGE("refused: " << opened.error());
    return opened.error();
}

} // namespace

TEST_CASE("a flipped byte in the middle of the WAL refuses to open instead of dropping later records")
{
    TempDir dir("ledger-wal-flip");
    const auto db = dir.path / "db";
    WriteLedger(db);
    const auto wal = LargestWal(db);
    FlipBytes(wal, fs::file_size(wal) / 2, 1);
    const std::string error = OpenError(db);
    CHECK(error.find("backup") != std::string::npos);
}

TEST_CASE("a truncated WAL refuses to open: the ledger is shorter than it acknowledged")
{
    TempDir dir("ledger-wal-truncated");
    const auto db = dir.path / "db";
    const Written written = WriteLedger(db);
    const auto wal = LargestWal(db);
    fs::resize_file(wal, fs::file_size(wal) / 2);
    const std::string error = OpenError(db);
    CHECK(error.find(std::to_string(written.size)) != std::string::npos);
    CHECK(error.find(HexEncode(written.root)) != std::string::npos);
    CHECK(error.find("backup") != std::string::npos);
}

TEST_CASE("deleting the WAL and CURRENT does not create a fresh ledger where one existed")
{
    TempDir dir("ledger-wal-deleted");
    const auto db = dir.path / "ledger";
    LedgerOptions options;
    options.checkpoint_key_path = dir.path / "checkpoint.key";
    WriteLedger(db, options);
    for (const auto& wal : FilesEndingWith(db, ".log")) fs::remove(wal);
    fs::remove(db / "CURRENT");
    const std::string error = OpenError(db, options);
    CHECK(error.find("backup") != std::string::npos);
    CHECK(error.find("MANIFEST") != std::string::npos);

    SUBCASE("nor when the whole ledger directory is gone but the checkpoint key is there")
    {
        fs::remove_all(db);
        const std::string gone = OpenError(db, options);
        CHECK(gone.find("checkpoint.key") != std::string::npos);
        CHECK_FALSE(fs::exists(db / "CURRENT"));
    }
}

TEST_CASE("a corrupt SST block makes reads fail, never abort")
{
    TempDir dir("ledger-sst-corrupt");
    const auto db = dir.path / "db";
    WriteLedger(db);
    REQUIRE(Ledger::Open(db, {})); // the reopen flushes the recovered WAL into SST files
    const auto sst = SstOf(db, "events");
    REQUIRE(sst);
    FlipBytes(*sst, 100, 8); // inside the first data block: the first events' leaves

    // In a child first: before the fix, this read aborted the whole process.
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto opened = Ledger::Open(db, {});
        if (!opened) _exit(2);
        (void)(*opened)->GetLeaf(0);
        _exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE_MESSAGE(WIFEXITED(status), "reading a corrupt block killed the process with signal " << WTERMSIG(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    Ledger& ledger = **opened;
    CHECK(ledger.size() == kEvents);
    const auto leaf = ledger.GetLeaf(0);
    REQUIRE_FALSE(leaf);
    MESSAGE("read error: " << leaf.error());
    CHECK_FALSE(ledger.ProveInclusion(1, kEvents));
    // A leaf in an intact block still reads.
    CHECK(ledger.GetLeaf(kEvents - 1));
}

TEST_CASE("a read error degrades the ledger's health and the consistency check reports it")
{
    TempDir dir("ledger-sst-health");
    const auto db = dir.path / "db";
    WriteLedger(db);
    REQUIRE(Ledger::Open(db, {}));
    const auto sst = SstOf(db, "events");
    REQUIRE(sst);
    FlipBytes(*sst, 100, 8);
    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    CHECK((*opened)->health().state == LedgerHealth::State::Ok);
    CHECK_FALSE((*opened)->GetLeaf(0));
    const auto health = (*opened)->health();
    CHECK(health.state == LedgerHealth::State::Degraded);
    CHECK(health.reason.find("Corruption") != std::string::npos);
    const auto report = (*opened)->CheckConsistency();
    REQUIRE_FALSE(report);
    CHECK(report.error().find("Corruption") != std::string::npos);
}

TEST_CASE("calls without a Result throw LedgerReadError on a corrupt block, and the process goes on")
{
    TempDir dir("ledger-sst-throw");
    const auto db = dir.path / "db";
    WriteLedger(db);
    REQUIRE(Ledger::Open(db, {}));
    const auto sst = SstOf(db, "proj");
    REQUIRE(sst);
    FlipBytes(*sst, 100, 8); // the first block: the account index of the lowest addresses
    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    std::string error;
    for (uint64_t n = 1; n < 300 && error.empty(); ++n) {
        try {
            (void)(*opened)->AccountEvents(Addr(n), std::nullopt, 10);
        } catch (const LedgerReadError& e) {
            error = e.what();
        }
    }
    CHECK(error.find("Corruption") != std::string::npos);
    CHECK((*opened)->health().state == LedgerHealth::State::Degraded);
    CHECK_FALSE((*opened)->StateHash());
    CHECK((*opened)->GetLeaf(0)); // other families still read
}

namespace {

// Opens the ledger's RocksDB directly, to damage it behind the ledger's back.
void PutRaw(const fs::path& db, const std::string& family, const std::string& key, const std::string& value)
{
    rocksdb::Options options;
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(options, db.string(), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(options, db.string(), descriptors, &handles, &raw).ok());
    for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == family) REQUIRE(raw->Put(rocksdb::WriteOptions(), handles[i], key, value).ok());
    }
    for (auto* handle : handles) raw->DestroyColumnFamilyHandle(handle);
    delete raw;
}

} // namespace

TEST_CASE("the consistency check passes on a sound ledger and finds damaged nodes and projections")
{
    TempDir dir("ledger-check");
    const auto db = dir.path / "db";
    const Written written = WriteLedger(db);
    {
        auto opened = Ledger::Open(db, {});
        REQUIRE(opened);
        const auto report = (*opened)->CheckConsistency();
        REQUIRE_MESSAGE(report, (report ? "" : report.error()));
        CHECK(report->ok());
        CHECK(report->tree_size == written.size);
        CHECK(report->recomputed_root == written.root);
        CHECK(report->nodes_checked >= kEvents - 64); // one node completed per leaf but the first of each pair...
        CHECK(report->state_hash == report->derived_state_hash);
        CHECK(report->state_hash == *(*opened)->StateHash());
    }
    PutRaw(db, "merkle", std::string(1, '\x01') + std::string(7, '\0') + std::string(1, '\x05'), std::string(32, 'x'));
    PutRaw(db, "proj", "zz-not-derived-from-the-log", "1");
    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    const auto report = (*opened)->CheckConsistency();
    REQUIRE(report);
    CHECK_FALSE(report->ok());
    CHECK(report->problems_total == 2);
    for (const auto& problem : report->problems) MESSAGE(problem);
    CHECK(report->state_hash != report->derived_state_hash);
    CHECK((*opened)->health().state == LedgerHealth::State::Degraded);
}

TEST_CASE("a signed checkpoint syncs what it covers and is part of the high-water mark")
{
    TempDir dir("ledger-checkpoint-mark");
    const auto db = dir.path / "ledger";
    LedgerOptions options;
    options.checkpoint_key_path = dir.path / "checkpoint.key";
    uint64_t signed_size = 0;
    {
        auto opened = Ledger::Open(db, options); // on-chain batches: not fsynced by themselves
        REQUIRE(opened);
        for (uint64_t begin = 0; begin < kEvents; begin += kBatchEvents) {
            std::vector<Event> events;
            for (uint64_t i = begin; i < begin + kBatchEvents; ++i) events.push_back(ReferenceEvent(i));
            REQUIRE((*opened)->Append(events));
        }
        CHECK((*opened)->high_water()->synced.size == 0);
        const auto checkpoint = (*opened)->SignCheckpoint(1'790'000'000);
        REQUIRE(checkpoint);
        signed_size = checkpoint->tree_size;
        const auto mark = (*opened)->high_water();
        REQUIRE(mark);
        CHECK(mark->checkpoint == MarkedTree{checkpoint->tree_size, checkpoint->root});
        CHECK(mark->synced.size == kEvents);
        // An earlier size signed again does not lower the mark.
        REQUIRE((*opened)->SignCheckpointAt(10, 1'790'000'001));
        CHECK((*opened)->high_water()->checkpoint.size == kEvents);
    }
    const auto wal = LargestWal(db);
    fs::resize_file(wal, fs::file_size(wal) / 2);
    const std::string error = OpenError(db, options);
    CHECK(error.find("the largest signed checkpoint covered " + std::to_string(signed_size)) != std::string::npos);
}

TEST_CASE("an anchor is part of the high-water mark")
{
    TempDir dir("ledger-anchor-mark");
    const auto db = dir.path / "db";
    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    std::vector<Event> events;
    for (uint64_t i = 0; i < 20; ++i) events.push_back(ReferenceEvent(i));
    REQUIRE((*opened)->Append(events));
    AnchorRecord anchor{.id = 1, .tree_size = 20, .root = (*opened)->root()};
    REQUIRE((*opened)->PutAnchor(anchor, {}));
    const auto mark = (*opened)->high_water();
    REQUIRE(mark);
    CHECK(mark->anchor_id == 1);
    CHECK(mark->anchor == MarkedTree{20, anchor.root});
    CHECK(mark->synced == MarkedTree{20, anchor.root});
}

TEST_CASE("a damaged ledger opens read-only for inspection, degraded, and its check names the loss")
{
    TempDir dir("ledger-read-only");
    const auto db = dir.path / "db";
    WriteLedger(db);
    const auto wal = LargestWal(db);
    fs::resize_file(wal, fs::file_size(wal) / 2);
    LedgerOptions options;
    options.read_only = true;
    options.create_if_missing = false;
    auto opened = Ledger::Open(db, options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
    CHECK((*opened)->health().state == LedgerHealth::State::Degraded);
    CHECK((*opened)->health().reason.find("acknowledged events are lost") != std::string::npos);
    CHECK_FALSE((*opened)->Append({ReferenceEvent((*opened)->size())}));
    const auto report = (*opened)->CheckConsistency();
    REQUIRE(report);
    CHECK_FALSE(report->ok());
    REQUIRE_FALSE(report->problems.empty());
    CHECK(report->problems.back().find("covered 1500 events") != std::string::npos);
}

TEST_CASE("a ledger without a high-water mark (an older release) opens and starts one")
{
    TempDir dir("ledger-no-mark");
    const auto db = dir.path / "db";
    const Written written = WriteLedger(db);
    fs::remove(db / kHighWaterFileName);
    auto opened = Ledger::Open(db, {});
    REQUIRE(opened);
    CHECK((*opened)->high_water()->synced == MarkedTree{written.size, written.root});
    CHECK(fs::exists(db / kHighWaterFileName));
}

TEST_CASE("high-water mark slots: a torn slot falls back to the other, two bad slots are refused")
{
    TempDir dir("ledger-mark-file");
    const auto path = dir.path / kHighWaterFileName;
    auto file = HighWaterFile::Create(path, HighWater{.synced = {1, Hash256{1}}});
    REQUIRE(file);
    REQUIRE((*file)->Write(HighWater{.synced = {2, Hash256{2}}}));
    REQUIRE((*file)->Write(HighWater{.synced = {3, Hash256{3}}, .anchor_id = 7, .anchor = {3, Hash256{3}}}));
    auto read = HighWaterFile::Read(path);
    REQUIRE(read);
    REQUIRE(*read);
    CHECK((*read)->synced.size == 3);
    CHECK((*read)->anchor_id == 7);
    CHECK(fs::file_size(path) == 2 * kHighWaterSlotBytes);
    // Tear the newest slot (sequence 3 lives in slot 1): the previous mark is read.
    FlipBytes(path, kHighWaterSlotBytes + 20, 1);
    read = HighWaterFile::Read(path);
    REQUIRE(read);
    CHECK((*read)->synced.size == 2);
    FlipBytes(path, 20, 1);
    read = HighWaterFile::Read(path);
    REQUIRE_FALSE(read);
    CHECK(read.error().find("corrupt") != std::string::npos);
    CHECK(HighWaterFile::Read(dir.path / "absent"));
}
