// The simulator's fault-injecting file system (tests/sim/fault_fs.h) under a real
// ledger: a power cut keeps every synced append, cuts the log back to a batch it held
// (losing unsynced ones), and never more; a full disk fails an append with an error,
// never a crash, and a reopen loses nothing that was acknowledged.
#include "ledger/checkpoint.h"
#include "ledger/ledger.h"
#include "ledger_testing.h"
#include "tests/sim/fault_fs.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;
using bitacora::sim::FaultFs;

namespace {

// On /dev/shm when there is one: the simulator's setting, and what the figures are of.
struct ShmDir {
    std::filesystem::path path;
    explicit ShmDir(const std::string& name)
    {
        const bool shm = ::access("/dev/shm", W_OK) == 0;
        const std::filesystem::path base = shm ? std::filesystem::path("/dev/shm") : std::filesystem::temp_directory_path();
        path = base / ("bitacora-" + name + "-" + std::to_string(::getpid()));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~ShmDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

// What the live ledger acknowledged: its leaves, and at every size an append reached,
// the root and how many of the reference stream's on-chain events it held.
struct Acknowledged {
    struct Boundary {
        Hash256 root{};
        uint64_t onchain{0};
    };
    std::vector<Bytes> leaves;
    std::map<uint64_t, Boundary> boundaries;

    uint64_t onchain() const { return boundaries.rbegin()->second.onchain; }
    void Record(const Ledger& ledger, uint64_t onchain)
    {
        for (uint64_t i = leaves.size(); i < ledger.size(); ++i) leaves.push_back(*ledger.GetLeaf(i));
        boundaries[ledger.size()] = {ledger.root(), onchain};
    }
    // What survived a cut is all there is now.
    void CutBack(uint64_t size)
    {
        leaves.resize(size);
        boundaries.erase(boundaries.upper_bound(size), boundaries.end());
    }
};

// The reopened log is a batch boundary the live one reached, at least `durable` long,
// with the same leaves and root.
void CheckRecovered(const Ledger& ledger, const Acknowledged& ack, uint64_t durable)
{
    const uint64_t size = ledger.size();
    CHECK(size >= durable);
    REQUIRE(size <= ack.leaves.size());
    const auto boundary = ack.boundaries.find(size);
    REQUIRE_MESSAGE(boundary != ack.boundaries.end(), "the log reopened at " << size << ", inside a batch");
    CHECK(ledger.root() == boundary->second.root);
    for (uint64_t i = 0; i < size; ++i) {
        const auto leaf = ledger.GetLeaf(i);
        REQUIRE(leaf);
        REQUIRE_MESSAGE(*leaf == ack.leaves[i], "leaf " << i << " differs from the one acknowledged");
    }
    const auto root_then = ledger.RootAt(durable);
    REQUIRE(root_then);
    CHECK(*root_then == ack.boundaries.at(durable).root);
}

std::vector<Event> ReferenceBatch(uint64_t first, uint64_t count)
{
    std::vector<Event> events;
    for (uint64_t i = first; i < first + count; ++i) events.push_back(ReferenceEvent(i));
    return events;
}

// An off-chain event: its batch is fsynced, and with it every batch before it.
uint64_t AppendSynced(Ledger& ledger, const CheckpointSigner& backend, uint64_t n)
{
    OffchainEvent event{"offer.posted", "offer-" + std::to_string(n), Bytes{'{', '}'}, backend.public_key(), {}};
    event.signature = backend.SignHash(OffchainSigningHash(event));
    const auto appended = ledger.AppendOffchain(event);
    REQUIRE_MESSAGE(appended, (appended ? "" : appended.error()));
    return ledger.size();
}

double MsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

TEST_CASE("a power cut keeps every synced append and loses the unsynced ones")
{
    constexpr int kCuts = 20;
    ShmDir dir("fault-fs-cut");
    const auto db = dir.path / "db";
    auto fs = FaultFs::Create();
    const auto env = fs->NewEnv();
    const LedgerOptions options{.sync_every_append = false, .env = env.get()};
    auto backend = CheckpointSigner::LoadOrCreate(dir.path / "backend.key");
    REQUIRE(backend);
    std::mt19937_64 rng(0xFA17);
    Acknowledged ack;
    uint64_t durable = 0;    // the size after the last synced append
    uint64_t offchain = 0;   // off-chain events appended, for their idempotency keys
    int cuts_that_lost = 0;  // cuts after which the log reopened shorter than acknowledged
    uint64_t bytes_lost = 0;
    double cycle_ms_total = 0;
    double cycle_ms_max = 0;
    auto opened = Ledger::Open(db, options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
    ack.Record(**opened, 0);
    for (int cut = 0; cut < kCuts; ++cut) {
        Ledger& ledger = **opened;
        const int batches = 2 + static_cast<int>(rng() % 6);
        for (int b = 0; b < batches; ++b) {
            if (rng() % 3 == 0) {
                durable = AppendSynced(ledger, **backend, offchain++);
                ack.Record(ledger, ack.onchain());
                continue;
            }
            const uint64_t count = 1 + rng() % 40;
            REQUIRE(ledger.Append(ReferenceBatch(ack.onchain(), count)));
            ack.Record(ledger, ack.onchain() + count);
        }
        // The last batch is never synced, so that every cut has something to lose.
        const uint64_t last_count = 1 + rng() % 40;
        REQUIRE(ledger.Append(ReferenceBatch(ack.onchain(), last_count)));
        ack.Record(ledger, ack.onchain() + last_count);

        const auto start = std::chrono::steady_clock::now();
        fs->PowerCut();
        const auto refused = ledger.Append(ReferenceBatch(ack.onchain(), 3));
        CHECK_FALSE(refused); // an error, not a crash
        CHECK(ledger.health().state == LedgerHealth::State::ReadOnly);
        opened = Error{"destroyed by the power cut"};
        const auto restored = fs->Restore();
        REQUIRE_MESSAGE(restored, (restored ? "" : restored.error()));
        bytes_lost += fs->stats().bytes_lost;
        opened = Ledger::Open(db, options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        const double cycle_ms = MsSince(start);
        cycle_ms_total += cycle_ms;
        cycle_ms_max = std::max(cycle_ms_max, cycle_ms);

        CheckRecovered(**opened, ack, durable);
        cuts_that_lost += (*opened)->size() < ack.leaves.size() ? 1 : 0;
        ack.CutBack((*opened)->size());
    }
    const auto stats = fs->stats();
    MESSAGE(kCuts << " power cuts on " << dir.path.parent_path().string() << ": " << cuts_that_lost
                  << " lost unsynced appends, " << bytes_lost << " bytes cut off in all; the log ended at "
                  << ack.leaves.size() << " events; " << stats.appends << " appends, " << stats.syncs
                  << " syncs; cut + restore + reopen " << cycle_ms_total / kCuts << " ms on average, "
                  << cycle_ms_max << " ms at most");
    CHECK(stats.power_cuts == kCuts);
    CHECK(bytes_lost > 0);
    CHECK(cuts_that_lost >= kCuts / 2);
}

TEST_CASE("a full disk fails the append with an error, and a reopen loses nothing acknowledged")
{
    ShmDir dir("fault-fs-full");
    const auto db = dir.path / "db";
    auto fs = FaultFs::Create();
    const auto env = fs->NewEnv();
    // Every acknowledged append is synced, so not even a power cut may take one back.
    const LedgerOptions options{.sync_every_append = true, .env = env.get()};
    Acknowledged ack;
    int round = 0;
    for (const uint64_t writes : {0, 1, 2, 3, 5, 8}) {
        CAPTURE(writes);
        auto opened = Ledger::Open(db, options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        Ledger& ledger = **opened;
        if (ack.boundaries.empty()) ack.Record(ledger, 0);
        CHECK(ledger.size() == ack.leaves.size());
        CheckRecovered(ledger, ack, ack.leaves.size());
        REQUIRE(ledger.Append(ReferenceBatch(ack.onchain(), 10)));
        ack.Record(ledger, ack.onchain() + 10);

        const uint64_t appends_before = fs->stats().appends;
        fs->FailWritesAfter(writes);
        uint64_t acknowledged = 0;
        Result<AppendResult> appended = Error{"not tried"};
        for (int attempt = 0; attempt < 20; ++attempt) {
            appended = ledger.Append(ReferenceBatch(ack.onchain(), 7));
            if (!appended) break;
            ack.Record(ledger, ack.onchain() + 7);
            ++acknowledged;
        }
        REQUIRE_FALSE(appended);
        MESSAGE("the full disk's error: " << appended.error());
        // A synced append is one WAL write, but RocksDB's own threads may write too (a
        // flush, a new WAL after the error): at most `writes` appends were acknowledged.
        CHECK(acknowledged <= writes);
        CHECK(fs->stats().appends - appends_before >= acknowledged);
        CHECK(ledger.health().state == LedgerHealth::State::ReadOnly);
        CHECK_FALSE(ledger.Append(ReferenceBatch(ack.onchain(), 1))); // read-only until reopened
        if (++round % 2 == 0) {
            // Space comes back.
            opened = Error{"closed"};
            fs->ClearFaults();
        } else {
            // Or the power goes while the disk is full.
            fs->PowerCut();
            opened = Error{"destroyed by the power cut"};
            REQUIRE(fs->Restore());
        }
    }
    auto reopened = Ledger::Open(db, options);
    REQUIRE(reopened);
    CHECK((*reopened)->size() == ack.leaves.size());
    CheckRecovered(**reopened, ack, ack.leaves.size());
    MESSAGE("the log ended at " << ack.leaves.size() << " events; " << fs->stats().faults_injected
                                << " writes refused in all");
}

TEST_CASE("a full disk or a power cut at any write of a reopen loses nothing acknowledged")
{
    constexpr uint64_t kWritesMax = 200; // a reopen and an append take about 20
    ShmDir dir("fault-fs-reopen");
    const auto db = dir.path / "db";
    auto fs = FaultFs::Create();
    const auto env = fs->NewEnv();
    const LedgerOptions options{.sync_every_append = true, .env = env.get()};
    Acknowledged ack;
    {
        auto opened = Ledger::Open(db, options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        ack.Record(**opened, 0);
        for (int batch = 0; batch < 3; ++batch) {
            REQUIRE((*opened)->Append(ReferenceBatch(ack.onchain(), 20)));
            ack.Record(**opened, ack.onchain() + 20);
        }
    }
    int faulted_reopens = 0;
    for (const bool cut : {false, true}) {
        for (uint64_t writes = 0; writes < kWritesMax; ++writes) {
            CAPTURE(cut);
            CAPTURE(writes);
            const uint64_t faults_before = fs->stats().faults_injected;
            if (cut) {
                fs->PowerCutAfter(writes);
            } else {
                fs->FailWritesAfter(writes);
            }
            if (auto opened = Ledger::Open(db, options)) {
                // Acknowledged means synced: it must survive whatever comes next.
                if ((*opened)->Append(ReferenceBatch(ack.onchain(), 5))) ack.Record(**opened, ack.onchain() + 5);
            }
            const bool faulted = fs->stats().faults_injected > faults_before;
            if (cut) {
                REQUIRE(fs->Restore());
            } else {
                fs->ClearFaults();
            }
            auto reopened = Ledger::Open(db, options);
            REQUIRE_MESSAGE(reopened, (reopened ? "" : reopened.error()));
            CHECK((*reopened)->size() == ack.leaves.size());
            CheckRecovered(**reopened, ack, ack.leaves.size());
            if (!faulted) break; // the whole reopen and append ran within the budget
            ++faulted_reopens;
        }
    }
    MESSAGE(faulted_reopens << " reopens faulted at each of their writes in turn; the log ended at "
                            << ack.leaves.size() << " events");
    CHECK(faulted_reopens >= 10);
}

// RocksDB writes IDENTITY and MANIFEST-000001 of a new database before CURRENT (writes 2
// to 5): a fault in between must not leave a directory that Ledger::Open() then refuses
// for good (the creation file, ledger.cpp, tells those leftovers from an earlier ledger's).
TEST_CASE("a fault at any write while the ledger is created")
{
    ShmDir dir("fault-fs-create");
    auto fs = FaultFs::Create();
    const auto env = fs->NewEnv();
    int faulted_creations = 0;
    for (const bool cut : {false, true}) {
        for (uint64_t writes = 0; writes < 100; ++writes) {
            CAPTURE(cut);
            CAPTURE(writes);
            const auto db = dir.path / fmt::format("db-{}-{}", cut, writes);
            // A checkpoint key, as the daemon has: it is created with the ledger, after CURRENT.
            const LedgerOptions options{.sync_every_append = false,
                                        .checkpoint_key_path = dir.path / fmt::format("key-{}-{}", cut, writes),
                                        .env = env.get()};
            if (cut) {
                fs->PowerCutAfter(writes);
            } else {
                fs->FailWritesAfter(writes);
            }
            const bool created = Ledger::Open(db, options).ok();
            if (cut) {
                REQUIRE(fs->Restore());
            } else {
                fs->ClearFaults();
            }
            auto reopened = Ledger::Open(db, options);
            REQUIRE_MESSAGE(reopened, (reopened ? "" : reopened.error()));
            CHECK((*reopened)->size() == 0);
            CHECK_FALSE(std::filesystem::exists(db / "LEDGER_CREATION_IN_PROGRESS"));
            REQUIRE((*reopened)->Append(ReferenceBatch(0, 4)));
            reopened = Error{"closed"};
            auto again = Ledger::Open(db, options);
            REQUIRE_MESSAGE(again, (again ? "" : again.error()));
            CHECK((*again)->size() == 4);
            if (created) break;
            ++faulted_creations;
        }
    }
    MESSAGE(faulted_creations << " creations faulted at each of their writes in turn, and were retried");
    CHECK(faulted_creations >= 10);
}

// The creation file only excuses what a creation writes before CURRENT: next to a WAL,
// a table, OPTIONS or a high-water mark (an earlier ledger's, whose CURRENT is gone) the
// refusal stands, even if a creation file outlived its ledger.
TEST_CASE("a creation file does not let an earlier ledger's files be recreated")
{
    ShmDir dir("fault-fs-creation-file");
    const auto db = dir.path / "db";
    const LedgerOptions options{.sync_every_append = true};
    {
        auto opened = Ledger::Open(db, options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        REQUIRE((*opened)->Append(ReferenceBatch(0, 10)));
    }
    std::filesystem::remove(db / "CURRENT");
    SUBCASE("only CURRENT deleted") {}
    SUBCASE("the WAL deleted too")
    {
        for (const auto& entry : std::filesystem::directory_iterator(db)) {
            if (entry.path().extension() == ".log") std::filesystem::remove(entry.path());
        }
    }
    { std::ofstream(db / "LEDGER_CREATION_IN_PROGRESS") << "copied back\n"; }
    auto opened = Ledger::Open(db, options);
    REQUIRE_FALSE(opened);
    MESSAGE("refused: " << opened.error());
    CHECK(opened.error().find("refusing to create a new ledger") != std::string::npos);
    CHECK(opened.error().find("HIGH_WATER_MARK") != std::string::npos);
    CHECK(opened.error().find("LEDGER_CREATION_IN_PROGRESS") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(db / "CURRENT"));
    CHECK(std::filesystem::exists(db / "IDENTITY")); // nothing was cleared
}
