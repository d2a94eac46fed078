// bitacora-sim: seeded deterministic simulation of the EVM follower and the ledger.
//   bitacora-sim --seed N [--steps M]        one run; a failure prints its replay line
//   bitacora-sim --seeds K [--first N]       K seeds from N; stops at the first failure
//   bitacora-sim --mutations [--seeds K]     each broken variant must be caught within K seeds
// Exit 0: every run held its invariants (with --mutations: every mutant was caught).
#include "tests/sim/sim_run.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

using namespace bitacora::sim;

namespace {

struct Args {
    SimOptions base;
    uint64_t seeds{1};
    bool mutations{false};
    bool shrink{true};
    bool quiet{false};
};

[[noreturn]] void Usage(const std::string& why)
{
    fmt::print(stderr, "bitacora-sim: {}\nusage: bitacora-sim [--seed N | --seeds K [--first N]] [--steps M] "
                       "[--faults X] [--no-crashes] [--no-disk-full] [--no-deep-reorgs] [--no-bitcoin] [--mutation NAME] "
                       "[--mutations] [--no-shrink] [--quiet] [--verbose] [--dir PATH]\n", why);
    std::exit(2);
}

uint64_t Number(const char* text)
{
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0') Usage(fmt::format("not a number: {}", text));
    return value;
}

Args Parse(int argc, char** argv)
{
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) Usage(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--seed" || arg == "--first") args.base.seed = Number(value());
        else if (arg == "--seeds") args.seeds = Number(value());
        else if (arg == "--steps") args.base.steps = Number(value());
        else if (arg == "--faults") args.base.fault_intensity = std::strtod(value(), nullptr);
        else if (arg == "--no-crashes") args.base.crashes = false;
        else if (arg == "--no-disk-full") args.base.disk_full = false;
        else if (arg == "--no-deep-reorgs") args.base.deep_reorgs = false;
        else if (arg == "--no-bitcoin") args.base.bitcoin = false;
        else if (arg == "--mutations") args.mutations = true;
        else if (arg == "--no-shrink") args.shrink = false;
        else if (arg == "--quiet") args.quiet = true;
        else if (arg == "--verbose") args.base.verbose = true;
        else if (arg == "--dir") args.base.work_dir = value();
        else if (arg == "--mutation") {
            auto mutation = ParseMutation(value());
            if (!mutation) Usage("unknown mutation");
            args.base.mutation = *mutation;
        } else Usage("unknown argument " + arg);
    }
    return args;
}

struct Totals {
    uint64_t runs{0}, blocks{0}, steps{0}, follower_steps{0}, reorgs{0}, crashes{0}, disk_fulls{0}, faults{0},
        deep_stops{0}, events{0};
    BtcSideStats btc;
    void Add(const SimResult& r)
    {
        ++runs;
        blocks += r.blocks;
        steps += r.steps;
        follower_steps += r.follower_steps;
        reorgs += r.reorgs;
        crashes += r.crashes;
        disk_fulls += r.disk_fulls;
        faults += r.provider_faults;
        deep_stops += r.stopped_on_deep_reorg;
        events += r.final_events;
        btc.blocks += r.btc.blocks;
        btc.reorgs += r.btc.reorgs;
        btc.restarts += r.btc.restarts;
        btc.prunes += r.btc.prunes;
        btc.steps += r.btc.steps;
        btc.anchors += r.btc.anchors;
        btc.anchors_final += r.btc.anchors_final;
        btc.anchors_abandoned += r.btc.anchors_abandoned;
        btc.fee_bumps += r.btc.fee_bumps;
        btc.node_faults += r.btc.node_faults;
    }
};

// Seeds from options.seed on; the first failing one, if any.
std::optional<SimOptions> RunSeeds(const SimOptions& base, uint64_t seeds, Totals& totals)
{
    for (uint64_t k = 0; k < seeds; ++k) {
        SimOptions options = base;
        options.seed = base.seed + k;
        const SimResult result = RunSimulation(options);
        totals.Add(result);
        if (!result.ok) {
            fmt::print("FAIL seed {} at step {}: {}\n", options.seed, result.failed_step, result.failure);
            return options;
        }
    }
    return std::nullopt;
}

void PrintTotals(const Totals& t, double seconds)
{
    fmt::print("{} seeds, {} steps, {} follower steps, {} blocks ({} reorgs, {} below final, each stopped on), "
               "{} crashes, {} full disks, {} provider faults, {} final events; {:.2f} s: {:.0f} seeds/min, "
               "{:.0f} blocks/s, {:.0f} steps/s\n",
               t.runs, t.steps, t.follower_steps, t.blocks, t.reorgs, t.deep_stops, t.crashes, t.disk_fulls, t.faults,
               t.events, seconds, seconds > 0 ? 60.0 * static_cast<double>(t.runs) / seconds : 0.0,
               seconds > 0 ? static_cast<double>(t.blocks) / seconds : 0.0,
               seconds > 0 ? static_cast<double>(t.steps) / seconds : 0.0);
    fmt::print("bitcoin: {} blocks ({} reorgs), {} node restarts, {} prunings, {} node faults, {} follower steps, {} anchors ({} final, "
               "{} abandoned), {} fee bumps\n",
               t.btc.blocks, t.btc.reorgs, t.btc.restarts, t.btc.prunes, t.btc.node_faults, t.btc.steps, t.btc.anchors,
               t.btc.anchors_final, t.btc.anchors_abandoned, t.btc.fee_bumps);
}

int Mutations(const Args& args)
{
    int missed = 0;
    for (Mutation m : {Mutation::SkipParentCheck, Mutation::AppendBeforeFinality, Mutation::KeepOverlayOnReorg,
                       Mutation::ForgetCursorCheck, Mutation::AnchorKeepsProof, Mutation::AnchorFinalEarly,
                       Mutation::AnchorResignsAfterCrash}) {
        SimOptions base = args.base;
        base.mutation = m;
        Totals totals;
        const auto started = std::chrono::steady_clock::now();
        const auto caught = RunSeeds(base, args.seeds, totals);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (caught) {
            fmt::print("mutation {}: caught after {} seed(s), {:.2f} s: {}\n", MutationName(m), totals.runs, seconds,
                       ReplayLine(*caught));
        } else {
            fmt::print("mutation {}: NOT caught in {} seeds\n", MutationName(m), totals.runs);
            ++missed;
        }
    }
    return missed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    Args args = Parse(argc, argv);
    std::error_code error;
    if (!std::filesystem::is_directory(args.base.work_dir, error)) {
        args.base.work_dir = std::filesystem::temp_directory_path(); // no /dev/shm (a container)
    }
    if (args.mutations) return Mutations(args);
    Totals totals;
    const auto started = std::chrono::steady_clock::now();
    const auto failing = RunSeeds(args.base, args.seeds, totals);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    PrintTotals(totals, seconds);
    if (!failing) return 0;
    fmt::print("replay: {}\n", ReplayLine(*failing));
    if (args.shrink) {
        const SimOptions shrunk = Shrink(*failing);
        const SimResult again = RunSimulation(shrunk);
        fmt::print("shrunk: {}\n  fails at step {}: {}\n", ReplayLine(shrunk), again.failed_step, again.failure);
    }
    return 1;
}
