// A full disk: appends fail with a clear error, nothing partial becomes visible, the
// in-memory tree stays at the last durable size, and after space is freed the ledger
// reopens with exactly the events that were acknowledged. Uses a small tmpfs, so it
// needs root (CI runs as root); without it the test says so and checks nothing else.
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <sys/mount.h>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

struct TmpfsMount {
    std::filesystem::path path;
    bool mounted{false};
    TmpfsMount(const std::filesystem::path& where, const char* size) : path(where)
    {
        std::filesystem::create_directories(path);
        mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, (std::string("size=") + size).c_str()) == 0;
    }
    bool Resize(const char* size)
    {
        return ::mount("tmpfs", path.c_str(), "tmpfs", MS_REMOUNT, (std::string("size=") + size).c_str()) == 0;
    }
    ~TmpfsMount()
    {
        if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    }
};

} // namespace

TEST_CASE("a full disk fails appends cleanly and loses nothing acknowledged")
{
    TempDir dir("ledger-full-disk");
    TmpfsMount disk(dir.path / "disk", "12m");
    if (!disk.mounted) {
        MESSAGE("SKIPPED: cannot mount a tmpfs (" << std::strerror(errno) << "); run as root to test a full disk");
        return;
    }
    uint64_t acknowledged = 0;
    Hash256 acknowledged_root{};
    std::string error;
    {
        LedgerOptions options;
        options.sync_every_append = true;
        auto opened = Ledger::Open(disk.path / "db", options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        auto& ledger = *opened.value();
        for (int batch = 0; batch < 10'000; ++batch) {
            std::vector<Event> events;
            for (uint64_t i = acknowledged; i < acknowledged + 500; ++i) events.push_back(ReferenceEvent(i));
            const auto result = ledger.Append(events);
            if (!result) {
                error = result.error();
                break;
            }
            acknowledged = result->tree_size;
            acknowledged_root = result->root;
        }
        REQUIRE_MESSAGE(!error.empty(), "the disk never filled");
        MESSAGE("append failed after " << acknowledged << " events with: " << error);
        CHECK(error.find("ledger append failed") != std::string::npos);
        // The failed batch left no trace in memory.
        CHECK(ledger.size() == acknowledged);
        CHECK(ledger.root() == acknowledged_root);
        // And later appends keep failing cleanly rather than writing half a batch.
        CHECK_FALSE(ledger.Append({ReferenceEvent(acknowledged)}));
        CHECK(ledger.size() == acknowledged);
    }
    REQUIRE(disk.Resize("256m"));
    auto reopened = Ledger::Open(disk.path / "db", {});
    REQUIRE_MESSAGE(reopened, (reopened ? "" : reopened.error()));
    auto& ledger = *reopened.value();
    CHECK(ledger.size() == acknowledged);
    CHECK(ledger.root() == acknowledged_root);
    MerkleFrontier recomputed;
    for (uint64_t i = 0; i < ledger.size(); ++i) {
        const auto leaf = ledger.GetLeaf(i);
        REQUIRE(leaf);
        REQUIRE(*leaf == EncodeEvent(ReferenceEvent(i)));
        recomputed.Append(MerkleLeafHash(*leaf), [](const MerkleFrontier::Node&) {});
    }
    CHECK(recomputed.Root() == acknowledged_root);
    const auto stored = ledger.StateHash();
    REQUIRE(ledger.RebuildProjections());
    CHECK(*ledger.StateHash() == *stored);
    // With space again, the log grows from where it stood.
    const auto more = ledger.Append({ReferenceEvent(ledger.size())});
    REQUIRE_MESSAGE(more, (more ? "" : more.error()));
    CHECK(more->first_index == acknowledged);
}
