// Crash safety, tested: a child process appends the reference event stream in
// batches of varying size and is SIGKILLed at random moments, at least 50 times.
// After each kill the log must be a prefix of the reference stream (no gap, no
// duplicate), the root must equal a recomputation from the stored leaves, the
// cursor must match the last stored event, and the projections' state hash must
// equal a rebuild's.
#include "common/hex.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <random>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

constexpr int kKills = 60;

[[noreturn]] void AppendForever(const std::filesystem::path& dir, uint64_t seed, int ready_fd)
{
    auto ledger = Ledger::Open(dir, {});
    if (!ledger) _exit(3);
    // Tell the parent the database is open, so that its kill lands among appends.
    const char ready = 1;
    if (::write(ready_fd, &ready, 1) != 1) _exit(5);
    std::mt19937_64 rng(seed);
    for (;;) {
        const uint64_t begin = (*ledger)->size();
        const uint64_t end = begin + 1 + rng() % 120;
        std::vector<Event> events;
        for (uint64_t i = begin; i < end; ++i) events.push_back(ReferenceEvent(i));
        // The cursor names the block of the batch's last event, so it must always
        // agree with the last stored leaf.
        const EvmOrigin last = OriginFor(end - 1);
        if (!(*ledger)->Append(events, {Cursor{"evm", last.block_number, last.block_hash}})) _exit(4);
    }
}

} // namespace

TEST_CASE("SIGKILL at random moments loses nothing and duplicates nothing")
{
    TempDir dir("ledger-crash");
    const auto db = dir.path / "db";
    std::mt19937_64 rng(0xC0FFEE);
    uint64_t previous_size = 0;
    int grew = 0;
    // Leaves verified so far, folded into a frontier; each round checks the new ones
    // and a final pass re-reads every leaf.
    MerkleFrontier recomputed;
    for (int kill = 0; kill < kKills; ++kill) {
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        const uint64_t child_seed = rng();
        const pid_t child = fork();
        REQUIRE(child >= 0);
        if (child == 0) AppendForever(db, child_seed, ready[1]);
        ::close(ready[1]);
        char byte = 0;
        const bool opened = ::read(ready[0], &byte, 1) == 1;
        ::close(ready[0]);
        if (opened) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 25'000));
        REQUIRE(::kill(child, SIGKILL) == 0);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE_MESSAGE(WIFSIGNALED(status), "the appender exited by itself with status " << WEXITSTATUS(status));

        auto ledger = Ledger::Open(db, {});
        REQUIRE_MESSAGE(ledger, (ledger ? "" : ledger.error()));
        const uint64_t size = (*ledger)->size();
        CHECK(size >= previous_size);
        grew += size > previous_size ? 1 : 0;
        previous_size = size;

        uint64_t first_mismatch = size;
        for (uint64_t i = recomputed.size(); i < size; ++i) {
            const auto leaf = (*ledger)->GetLeaf(i);
            if (!leaf || *leaf != EncodeEvent(ReferenceEvent(i))) {
                first_mismatch = i;
                break;
            }
            recomputed.Append(MerkleLeafHash(*leaf), [](const MerkleFrontier::Node&) {});
        }
        REQUIRE_MESSAGE(first_mismatch == size, "leaf " << first_mismatch << " is missing or differs from the reference");
        CHECK((*ledger)->root() == recomputed.Root());
        if (size > 0) {
            const auto cursor = (*ledger)->GetCursor("evm");
            REQUIRE(cursor);
            CHECK(cursor->block_number == OriginFor(size - 1).block_number);
        }
        const auto stored_state = (*ledger)->StateHash();
        REQUIRE((*ledger)->RebuildProjections());
        CHECK(*(*ledger)->StateHash() == *stored_state);
    }
    auto ledger = Ledger::Open(db, {});
    REQUIRE(ledger);
    MerkleFrontier full;
    for (uint64_t i = 0; i < (*ledger)->size(); ++i) {
        const auto leaf = (*ledger)->GetLeaf(i);
        REQUIRE(leaf);
        full.Append(MerkleLeafHash(*leaf), [](const MerkleFrontier::Node&) {});
    }
    CHECK(full.Root() == (*ledger)->root());
    MESSAGE("killed the appender " << kKills << " times; the log grew between " << grew << " of them to "
                                   << previous_size << " events");
    CHECK(grew >= kKills * 3 / 4);
}
