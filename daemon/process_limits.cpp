#include "daemon/process_limits.h"

#include "common/logging.h"

#include <event2/event.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <mutex>
#include <sys/resource.h>

namespace bitacora {
namespace {

// RocksDB's table cache: ledger/ledger.cpp sets max_open_files to this.
constexpr uint64_t kLedgerTableFilesOpenMax = 512;
// RocksDB's own: WAL, MANIFEST, LOCK, CURRENT, directories, and a backup's checkpoint.
constexpr uint64_t kLedgerOwnFileCount = 16;
// stdio, debug.log, the data dir lock, libevent's epoll and wake-up pipes, systemd's
// notify socket, the cookie and pid files, the checkpoint key, and headroom.
constexpr uint64_t kFdMarginCount = 32;
// One libcurl handle: its connection and its multi handle's wake-up socket pair.
constexpr uint64_t kFdPerHttpClientCount = 3;
// The bitcoind client (a fresh connection per call) and the ZMQ subscriber's context.
constexpr uint64_t kBtcFollowerFdCount = 16;
// The ZMQ publisher's context and listener, and a few subscribers.
constexpr uint64_t kZmqPublisherFdCount = 32;
// Short of the full plan, connections get at least this many while half of what the
// reserve leaves allows; fewer than the minimum fails start-up.
constexpr uint64_t kRpcConnectionsFloor = 16;
constexpr uint64_t kRpcConnectionsMin = 4;

// An option's registered default (its -help text), so that the two cannot drift.
int64_t DefaultOf(const ArgsManager& args, std::string_view name, int64_t fallback)
{
    const ArgSpec* spec = args.FindSpec(name);
    if (spec == nullptr) return fallback;
    int64_t value = 0;
    const std::string& text = spec->default_text;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return ec == std::errc() && end == text.data() + text.size() ? value : fallback;
}

} // namespace

FdPlan PlanFileDescriptors(const ArgsManager& args)
{
    FdPlan plan;
    plan.reserved = kFdMarginCount;
    const uint64_t evm_clients = static_cast<uint64_t>(args.GetInt("evmfetchers", DefaultOf(args, "evmfetchers", 2))) + 2;
    plan.reserved += args.GetList("evmrpc").size() * evm_clients * kFdPerHttpClientCount;
    if (!args.GetString("btcrpcconnect", "").empty()) plan.reserved += kBtcFollowerFdCount;
    if (!args.GetString("zmqpubevent", "").empty()) plan.reserved += kZmqPublisherFdCount;
    plan.ledger_files = kLedgerTableFilesOpenMax + kLedgerOwnFileCount;
    if (args.GetBool("server", true)) {
        const size_t binds = args.GetList("rpcbind").size();
        plan.reserved += binds == 0 ? 2 : binds; // the listening sockets
        plan.rpc_connections = static_cast<size_t>(
            std::max<int64_t>(0, args.GetInt("rpcmaxconnections", DefaultOf(args, "rpcmaxconnections", 256))));
    }
    return plan;
}

std::optional<size_t> FitRpcConnections(const FdPlan& plan, uint64_t fd_limit)
{
    if (fd_limit >= plan.wanted()) return plan.rpc_connections;
    if (fd_limit <= plan.reserved) return std::nullopt;
    const uint64_t left = fd_limit - plan.reserved;
    const uint64_t after_ledger = left > plan.ledger_files ? left - plan.ledger_files : 0;
    const uint64_t floor = std::min(kRpcConnectionsFloor, left / 2);
    const auto fit = static_cast<size_t>(std::min<uint64_t>(plan.rpc_connections, std::max(after_ledger, floor)));
    if (fit < std::min<uint64_t>(plan.rpc_connections, kRpcConnectionsMin)) return std::nullopt;
    return fit;
}

uint64_t RaiseFileDescriptorLimit(uint64_t wanted)
{
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted; // as bitcoind: assume it is fine
    if (limit.rlim_cur < wanted) {
        limit.rlim_cur = std::min<rlim_t>(wanted, limit.rlim_max);
        setrlimit(RLIMIT_NOFILE, &limit);
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

Status SizeFileDescriptors(ArgsManager& args)
{
    const FdPlan plan = PlanFileDescriptors(args);
    const uint64_t limit = RaiseFileDescriptorLimit(plan.wanted());
    const auto connections = FitRpcConnections(plan, limit);
    if (!connections) {
        const uint64_t needed = plan.reserved + std::max<uint64_t>(1, 2 * std::min<uint64_t>(plan.rpc_connections, kRpcConnectionsMin));
        return Error{fmt::format("Not enough file descriptors available: the limit is {}, bitacorad needs at least {} "
                                 "({} with RocksDB's full table cache and -rpcmaxconnections={}). Raise it (LimitNOFILE= "
                                 "in the systemd unit, ulimit -n in a shell)",
                                 limit, needed, plan.wanted(), plan.rpc_connections)};
    }
    LogInfo("File descriptors: limit {}; reserved {} (followers, ZMQ, listeners, margin), {} for RocksDB, {} for RPC "
            "connections",
            limit, plan.reserved, plan.ledger_files, *connections);
    if (*connections < plan.rpc_connections) {
        LogWarning("Reducing -rpcmaxconnections from {} to {}, because of system limitations (file descriptor limit {}).",
                   plan.rpc_connections, *connections, limit);
        args.ForceSetArg("rpcmaxconnections", std::to_string(*connections),
                         fmt::format("the file descriptor limit ({})", limit));
    }
    if (limit < plan.reserved + plan.ledger_files + *connections) {
        LogWarning("The file descriptor limit ({}) leaves RocksDB {} of the {} files it may keep open: reads may fail as "
                   "the ledger grows. Raise it to {} (LimitNOFILE= in the systemd unit)",
                   limit, limit - plan.reserved - *connections, plan.ledger_files, plan.wanted());
    }
    return {};
}

void LogLibeventMessage(int severity, const char* message)
{
    // Per message class, so that one flood does not hide a different message.
    static log::LineRateLimiter limiter(kLibeventLinesMax, kLibeventWindow);
    const std::string_view text = message != nullptr ? message : "";
    const auto verdict = limiter.Admit(log::MessageClass(text));
    if (!verdict.admit) return;
    if (verdict.suppressed > 0) {
        LogWarning("libevent: suppressed {} messages like the next one (more than {} in {} s)", verdict.suppressed,
                   kLibeventLinesMax, kLibeventWindow.count() / 1000);
    }
    switch (severity) {
    case EVENT_LOG_DEBUG: LogDebug(log::Category::Rpc, "libevent: {}", text); break;
    case EVENT_LOG_MSG: LogInfo("libevent: {}", text); break;
    case EVENT_LOG_WARN: LogWarning("libevent: {}", text); break;
    default: LogError("libevent: {}", text); break;
    }
}

void RouteLibeventLog()
{
    static std::once_flag once;
    std::call_once(once, [] { event_set_log_callback(&LogLibeventMessage); });
}

} // namespace bitacora
