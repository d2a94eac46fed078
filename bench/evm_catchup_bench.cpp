// Benchmark: EVM catch-up and live follow against a running node (anvil in
// bench/evm_catchup.sh). Indexes the deployment's contracts into a fresh ledger from the
// deployment block up to the node's finalized block, then, with --live-seconds, keeps
// following and reports the latency from a block returned by the node to its events
// being visible in the pending overlay.
//
//   evm_catchup_bench --rpc URL --deployment deployment.json [--live-seconds N]
//                     [--fetchers N] [--logs-per-request N] [--range BLOCKS] [--prefetch N]
//                     [--verify none|bloom|receipts|quorum] [--rpc URL2 ...] (quorum: every --rpc)
#include "common/logging.h"
#include "indexer/evm/follower.h"
#include "ledger/ledger.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace bitacora;
using Clock = std::chrono::steady_clock;

namespace {

long PeakRssKib()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

long CurrentRssKib()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

} // namespace

int main(int argc, char* argv[])
{
    std::vector<std::string> rpcs;
    std::string deployment_path;
    evm::VerifyMode verify = evm::FollowerOptions{}.verify;
    int live_seconds = 0;
    evm::FollowerOptions defaults;
    size_t fetchers = defaults.fetchers;
    uint64_t logs_target = defaults.logs_per_request_target;
    uint64_t range_initial = defaults.range_blocks_initial;
    size_t prefetch = defaults.prefetch_ranges_max;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--rpc")) rpcs.push_back(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--verify")) {
            const auto mode = evm::ParseVerifyMode(argv[i + 1]);
            if (!mode) {
                std::fprintf(stderr, "--verify: none, bloom, receipts or quorum\n");
                return 2;
            }
            verify = *mode;
        }
        else if (!std::strcmp(argv[i], "--fetchers")) fetchers = std::strtoul(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--logs-per-request")) logs_target = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--range")) range_initial = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--prefetch")) prefetch = std::strtoul(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--deployment")) deployment_path = argv[i + 1];
        else if (!std::strcmp(argv[i], "--live-seconds")) live_seconds = std::atoi(argv[i + 1]);
    }
    if (rpcs.empty() || deployment_path.empty()) {
        std::fprintf(stderr, "usage: evm_catchup_bench --rpc URL --deployment deployment.json [--live-seconds N]\n");
        return 2;
    }
    log::GetLogger().SetPrintToConsole(false);
    std::ifstream file(deployment_path);
    const auto deployment = nlohmann::json::parse(file);

    const auto dir = std::filesystem::temp_directory_path() / fmt::format("bitacora-evm-bench-{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto ledger = ledger::Ledger::Open(dir / "ledger", {});
    if (!ledger) {
        std::fprintf(stderr, "%s\n", ledger.error().c_str());
        return 1;
    }

    evm::FollowerOptions options;
    options.chain_id = deployment["chainId"].get<uint64_t>();
    options.escrow = *evm::ParseAddress(deployment["contracts"]["P2PEscrow"].get<std::string>());
    options.vault = *evm::ParseAddress(deployment["contracts"]["YieldVault"].get<std::string>());
    options.start_block = deployment["deploymentBlock"].get<uint64_t>();
    options.poll_interval_ms = 50;
    options.fetchers = fetchers;
    options.logs_per_request_target = logs_target;
    options.range_blocks_initial = range_initial;
    options.prefetch_ranges_max = prefetch;
    options.identity_path = dir / "evm-chain.json";
    options.rpc.urls = rpcs;
    options.verify = verify;
    options.quorum = std::min<size_t>(2, rpcs.size());

    std::string fatal;
    evm::EvmFollower follower(options, *ledger.value(), [&](const std::string& why) { fatal = why; });
    const auto started = Clock::now();
    follower.Start();
    // Synced: the final block is the node's finalized block and nothing is left to fetch.
    evm::FollowerStatus status;
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        status = follower.status();
        if (!fatal.empty() || status.state == evm::FollowerStatus::State::Failed) {
            std::fprintf(stderr, "follower failed: %s\n", fatal.c_str());
            return 1;
        }
        if (status.final_block && status.node_final_block > 0 && *status.final_block >= status.node_final_block &&
            status.state == evm::FollowerStatus::State::Following) {
            break;
        }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const long rss_after_catch_up = CurrentRssKib();
    const uint64_t events = ledger.value()->size();
    const auto& t = status.catch_up;
    fmt::print("catch-up: {} events (final block {}, {} pending events) in {:.3f} s = {:.0f} events/s to fully synced\n",
               events, *status.final_block, status.events_pending, seconds, static_cast<double>(events) / seconds);
    fmt::print("catch-up: {} HTTP requests, {} JSON-RPC calls, {:.1f} MiB received, {} eth_getLogs ranges\n",
               status.rpc.requests, status.rpc.calls, static_cast<double>(status.rpc.bytes_received) / (1 << 20), t.ranges);
    fmt::print("catch-up: peak RSS {} MiB (RSS now {} MiB)\n", PeakRssKib() / 1024, rss_after_catch_up / 1024);
    fmt::print("catch-up: -evmverify={}: {} blocks' receipts checked, {} ranges agreed by a quorum of {}, {} answers refused\n",
               evm::VerifyModeName(verify), status.receipts_checked, status.quorum_checks, options.quorum,
               status.verify_refusals);
    fmt::print("catch-up time, verification (summed): eth_getBlockReceipts HTTP {:.3f} s, receipts checks {:.3f} s, "
               "quorum {:.3f} s\n",
               t.receipts_http_s, t.receipts_check_s, t.quorum_s);
    fmt::print("catch-up time, fetcher threads (summed): eth_getLogs HTTP {:.3f} s, JSON->logs {:.3f} s, headers {:.3f} s, "
               "checks+decoding {:.3f} s, waiting for the database {:.3f} s\n",
               t.logs_http_s, t.logs_parse_s, t.headers_s, t.decode_s, t.queue_full_s);
    fmt::print("catch-up time, follower thread: ledger appends {:.3f} s, waiting for the network {:.3f} s, "
               "catch-up wall {:.3f} s\n",
               t.append_s, t.queue_empty_s, t.wall_s);

    if (live_seconds > 0) {
        fmt::print("live: following for {} s\n", live_seconds);
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::seconds(live_seconds));
        status = follower.status();
        fmt::print("live: block returned by the node -> events visible (pending): p50 {:.2f} ms, p99 {:.2f} ms, "
                   "max {:.2f} ms over {} blocks; final block {}, pending tip {}\n",
                   status.visible_latency_ms_p50, status.visible_latency_ms_p99, status.visible_latency_ms_max,
                   status.visible_latency_samples, status.final_block.value_or(0), status.pending_tip.value_or(0));
    }
    follower.Stop();
    ledger.value().reset();
    std::filesystem::remove_all(dir);
    return 0;
}
