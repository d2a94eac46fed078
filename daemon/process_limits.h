// Process limits bitacorad sizes at start-up, as Bitcoin Core's init.cpp does: the
// soft RLIMIT_NOFILE is raised toward what the configured parts may hold open, and
// -rpcmaxconnections is lowered to what is left (with a warning). And libevent's own
// log, which at the descriptor limit writes a line per failed accept(), goes through
// the project's logger with a rate limit per message class.
#pragma once

#include "common/result.h"
#include "daemon/args.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace bitacora {

// File descriptors bitacorad may hold, by consumer.
struct FdPlan {
    uint64_t reserved{0};      // everything but RocksDB's files and RPC connections
    uint64_t ledger_files{0};  // RocksDB: its table cache and its own files
    size_t rpc_connections{0}; // what -rpcmaxconnections asks (0 with -noserver)
    uint64_t wanted() const { return reserved + ledger_files + rpc_connections; }
};

FdPlan PlanFileDescriptors(const ArgsManager& args);

// The connection limit that fits under fd_limit: all that was asked when RocksDB's
// full share fits too; short of that, at least min(16, half of what the reserve
// leaves). nullopt when fewer than min(4, asked) fit, or nothing is left for RocksDB.
std::optional<size_t> FitRpcConnections(const FdPlan& plan, uint64_t fd_limit);

// Raises the soft RLIMIT_NOFILE to wanted (never above the hard limit, never down);
// returns the soft limit in force.
uint64_t RaiseFileDescriptorLimit(uint64_t wanted);

// Plans, raises the limit and logs; lowers -rpcmaxconnections when the limit is short
// of the plan. An error when not even the minimum fits.
Status SizeFileDescriptors(ArgsManager& args);

// Installs LogLibeventMessage as libevent's log callback (once per process).
void RouteLibeventLog();
// At most kLibeventLinesMax lines per message class per kLibeventWindow, then one line
// saying how many were dropped; severities map to debug (category rpc), info,
// warning and error.
inline constexpr size_t kLibeventLinesMax = 5;
inline constexpr std::chrono::milliseconds kLibeventWindow{10'000};
void LogLibeventMessage(int severity, const char* message);

} // namespace bitacora
