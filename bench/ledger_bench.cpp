// Ledger benchmark: append with Merkle and projections in batches, inclusion-proof
// latency, projection rebuild rate, resident memory and database size per event.
//
//   build/bench/ledger_bench [EVENTS] [BATCH]      (defaults: 1000000 events, 1000 per batch)
//   build/bench/ledger_bench 10000000              (the 10-million-event figures)
//   BENCH_SYNC_EVERY_APPEND=1 build/bench/ledger_bench   (fsync every batch)
#include "common/hex.h"
#include "ledger/ledger.h"
#include "ledger/merkle_verify.h"
#include "ledger/merkle.h"
#include "tests/unit/ledger_testing.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

using namespace bitacora;
using namespace bitacora::ledger;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t StatusKib(const char* field)
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + std::strlen(field), nullptr, 10);
    }
    return 0;
}

uint64_t DirectoryBytes(const std::filesystem::path& dir)
{
    uint64_t total = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
        if (entry.is_regular_file()) total += entry.file_size();
    }
    return total;
}

double Seconds(Clock::duration d)
{
    return std::chrono::duration<double>(d).count();
}

} // namespace

int main(int argc, char* argv[])
{
    const uint64_t events_total = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
    const uint64_t batch = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000;
    if (events_total == 0 || batch == 0 || batch > Ledger::kAppendEventsMax) {
        std::fprintf(stderr, "usage: ledger_bench [EVENTS] [BATCH <= %zu]\n", Ledger::kAppendEventsMax);
        return 2;
    }
    ledger::testing::TempDir dir("ledger-bench");
    LedgerOptions options;
    options.sync_every_append = std::getenv("BENCH_SYNC_EVERY_APPEND") != nullptr;
    auto opened = Ledger::Open(dir.path / "db", options);
    if (!opened) {
        std::fprintf(stderr, "%s\n", opened.error().c_str());
        return 1;
    }
    auto& ledger = *opened.value();

    // 1. Append.
    std::vector<Event> events;
    events.reserve(batch);
    Clock::duration append_time{};
    for (uint64_t begin = 0; begin < events_total; begin += batch) {
        const uint64_t end = std::min(events_total, begin + batch);
        events.clear();
        for (uint64_t i = begin; i < end; ++i) events.push_back(ledger::testing::ReferenceEvent(i));
        const auto started = Clock::now();
        const auto result = ledger.Append(events, {Cursor{"evm", end, Hash256{}}});
        append_time += Clock::now() - started;
        if (!result) {
            std::fprintf(stderr, "append failed: %s\n", result.error().c_str());
            return 1;
        }
    }
    std::printf("append: %llu events in batches of %llu in %.2f s: %.0f events/s (Merkle, projections, "
                "cursor; %s)\n",
                static_cast<unsigned long long>(events_total), static_cast<unsigned long long>(batch),
                Seconds(append_time), static_cast<double>(events_total) / Seconds(append_time),
                options.sync_every_append ? "fsync every batch" : "on-chain events: no fsync, as in production");
    std::printf("memory: resident %llu MiB now, peak %llu MiB\n",
                static_cast<unsigned long long>(StatusKib("VmRSS:") / 1024),
                static_cast<unsigned long long>(StatusKib("VmHWM:") / 1024));

    // 2. Inclusion proofs at the full size, random leaves.
    std::mt19937_64 rng(7);
    const uint64_t size = ledger.size();
    const Hash256 root = ledger.root();
    std::vector<double> micros;
    constexpr int kProofs = 20'000;
    for (int i = 0; i < kProofs; ++i) {
        const uint64_t index = rng() % size;
        const auto started = Clock::now();
        const auto proof = ledger.ProveInclusion(index, size);
        micros.push_back(Seconds(Clock::now() - started) * 1e6);
        if (!proof || !VerifyInclusion(MerkleLeafHash(proof->leaf), index, size, proof->path, root)) {
            std::fprintf(stderr, "proof %llu failed\n", static_cast<unsigned long long>(index));
            return 1;
        }
    }
    std::sort(micros.begin(), micros.end());
    std::printf("inclusion proof at %llu leaves: p50 %.1f us, p99 %.1f us, max %.1f us (%d proofs, leaf included)\n",
                static_cast<unsigned long long>(size), micros[micros.size() / 2], micros[micros.size() * 99 / 100],
                micros.back(), kProofs);

    // 3. Rebuild of projections.
    const auto before = ledger.StateHash();
    const auto started = Clock::now();
    if (auto status = ledger.RebuildProjections(); !status) {
        std::fprintf(stderr, "rebuild failed: %s\n", status.error().c_str());
        return 1;
    }
    const double rebuild_s = Seconds(Clock::now() - started);
    const auto after = ledger.StateHash();
    std::printf("rebuild: %llu events in %.2f s: %.0f events/s; state hash %s %s\n",
                static_cast<unsigned long long>(size), rebuild_s, static_cast<double>(size) / rebuild_s,
                HexEncode(*after).c_str(), *before == *after ? "(unchanged)" : "(DIFFERENT)");

    const uint64_t bytes = DirectoryBytes(dir.path);
    std::printf("database: %.1f MiB on disk, %.1f bytes per event (before compaction settles)\n",
                static_cast<double>(bytes) / (1024.0 * 1024.0), static_cast<double>(bytes) / static_cast<double>(size));
    std::printf("memory: peak resident %llu MiB\n", static_cast<unsigned long long>(StatusKib("VmHWM:") / 1024));
    return *before == *after ? 0 : 1;
}
