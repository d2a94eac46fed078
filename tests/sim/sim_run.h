// One seeded run of the simulator: the real EVM follower (its own build, with the
// mutations of common/mutation.h compiled in) and the real ledger on a fault-injecting
// file system, against a simulated chain and provider, single-threaded on a manual
// clock. After every step the ledger is checked against a reference model read from the
// simulated chain (sim_run.cpp lists the invariants).
#pragma once

#include "common/mutation.h"
#include "tests/sim/sim_btc_side.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace bitacora::sim {

struct SimOptions {
    uint64_t seed{1};
    uint64_t steps{300};           // simulator steps (each: a chain change or a fault, then the follower)
    double fault_intensity{1.0};   // the provider's faults (0: an honest, reliable node)
    bool crashes{true};            // power cuts: the process dies, unsynced writes are lost
    bool disk_full{true};          // a full disk at some write
    bool deep_reorgs{true};        // at most one reorg below what the node called final, late in the run
    bool bitcoin{true};            // the Bitcoin follower and the anchorer beside the EVM follower
    Mutation mutation{Mutation::None};
    std::filesystem::path work_dir{"/dev/shm"};
    bool verbose{false};           // the follower's log on stderr
};

struct SimResult {
    bool ok{true};
    uint64_t failed_step{0};
    std::string failure;           // the invariant broken, with what was seen
    // What happened.
    uint64_t steps{0};
    uint64_t follower_steps{0};
    uint64_t blocks{0};            // blocks the chain generated (canonical and orphaned)
    uint64_t head{0};
    uint64_t reorgs{0};
    uint64_t crashes{0};
    uint64_t disk_fulls{0};
    uint64_t provider_faults{0};
    uint64_t final_events{0};
    uint64_t final_block{0};
    bool deep_reorg{false};        // a reorg took a block the ledger held as final
    bool stopped_on_deep_reorg{false};
    uint64_t simulated_ms{0};
    BtcSideStats btc;              // the Bitcoin side's (zero without it)
};

SimResult RunSimulation(const SimOptions& options);

// The command line that replays a run.
std::string ReplayLine(const SimOptions& options);

// A failing run made shorter and simpler where it still fails the same way (fewer steps,
// fewer kinds of fault); at most `runs_max` runs are tried.
SimOptions Shrink(const SimOptions& failing, uint32_t runs_max = 40);

std::string_view MutationName(Mutation mutation);
std::optional<Mutation> ParseMutation(std::string_view name);

} // namespace bitacora::sim
