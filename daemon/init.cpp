#include "daemon/init.h"

#include "daemon/api.h"
#include "daemon/btc_options.h"
#include "daemon/evm_options.h"
#include "daemon/process_limits.h"

#include "common/hex.h"
#include "common/logging.h"
#include "ledger/ledger.h"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace bitacora {
namespace {

namespace fs = std::filesystem;

// Set by a component that cannot go on (it also raises SIGTERM): exit with failure.
std::atomic<bool> g_fatal_error{false};

constexpr int64_t kDbCacheMibDefault = 64;

std::optional<std::string> ValidateChain(std::string_view value)
{
    for (const auto& chain : Chains()) {
        if (chain.name == value) return std::nullopt;
    }
    std::string known;
    for (const auto& chain : Chains()) known += (known.empty() ? "" : ", ") + chain.name;
    return "expected one of: " + known;
}

std::optional<std::string> ValidateCategory(std::string_view value)
{
    if (value.empty() || value == "0" || value == "none") return std::nullopt;
    if (log::ParseCategory(value)) return std::nullopt;
    std::string known = "1, all";
    for (const auto& name : log::CategoryNames()) known += ", " + name;
    return "unknown logging category; expected one of: " + known;
}

fs::path DefaultDataDir()
{
    const char* home = std::getenv("HOME");
    return fs::path(home != nullptr && *home != '\0' ? home : "/") / ".bitacora";
}

fs::path AbsoluteIn(const fs::path& base, const std::string& path)
{
    fs::path p(path);
    return p.is_absolute() ? p : base / p;
}

int InitError(const std::string& message)
{
    // Messages quote paths and option values, which may hold any byte.
    std::fprintf(stderr, "Error: %s\n", EscapeConfigText(message).c_str());
    return EXIT_FAILURE;
}

// A -datadir must be an existing directory; a file there is named as such.
Status CheckDataDir(const fs::path& datadir)
{
    std::error_code ec;
    const auto status = fs::status(datadir, ec);
    if (fs::is_directory(status)) return {};
    if (fs::exists(status)) return Error{fmt::format("Specified data directory \"{}\" is not a directory.", datadir.string())};
    return Error{fmt::format("Specified data directory \"{}\" does not exist.", datadir.string())};
}

// One bitacorad per data dir: an fcntl lock on <datadir>/.lock, held until exit.
class DirectoryLock {
public:
    static Result<std::unique_ptr<DirectoryLock>> Acquire(const fs::path& dir)
    {
        const fs::path path = dir / ".lock";
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) return Error{fmt::format("cannot open lock file {}: {}", path.string(), std::strerror(errno))};
        struct flock lock{};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        if (::fcntl(fd, F_SETLK, &lock) != 0) {
            const int err = errno;
            ::close(fd);
            if (err == EACCES || err == EAGAIN) {
                return Error{fmt::format("Cannot obtain a lock on data directory {}. bitacorad is probably already running.",
                                         dir.string())};
            }
            return Error{fmt::format("cannot lock {}: {}", path.string(), std::strerror(err))};
        }
        return std::unique_ptr<DirectoryLock>(new DirectoryLock(fd));
    }
    ~DirectoryLock() { ::close(m_fd); }
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;

private:
    explicit DirectoryLock(int fd) : m_fd(fd) {}
    int m_fd;
};

// Everything bitacorad runs, in start-up order; Shutdown() stops it in reverse.
struct Node {
    std::unique_ptr<DirectoryLock> lock;
    fs::path pid_file;
    std::unique_ptr<ledger::Ledger> ledger;
    std::unique_ptr<evm::EvmFollower> evm_follower;
    std::unique_ptr<btc::BitcoindRpc> btc_rpc;
    std::unique_ptr<btc::Anchorer> anchorer;
    std::unique_ptr<btc::BtcFollower> btc_follower;
    std::unique_ptr<rpc::RpcServer> api;
    std::unique_ptr<rpc::ZmqPublisher> zmq;

    void Shutdown()
    {
        LogInfo("Shutdown: in progress...");
        if (api) {
            LogInfo("Shutdown: stopping the RPC server");
            api->Stop();
            api.reset();
        }
        if (btc_follower) {
            LogInfo("Shutdown: stopping the Bitcoin follower");
            btc_follower->Stop();
            btc_follower.reset();
        }
        anchorer.reset();
        btc_rpc.reset();
        if (evm_follower) {
            LogInfo("Shutdown: stopping the EVM follower");
            evm_follower->Stop();
            evm_follower.reset();
        }
        if (zmq) {
            LogInfo("Shutdown: stopping the ZMQ publisher");
            if (ledger) ledger->SetListener(nullptr);
            zmq->Stop();
            zmq.reset();
        }
        if (ledger) {
            LogInfo("Shutdown: closing database");
            ledger.reset();
        }
        if (!pid_file.empty()) {
            std::error_code ignored;
            fs::remove(pid_file, ignored);
            pid_file.clear();
        }
        LogInfo("Shutdown: done");
        lock.reset();
    }
};

Status WritePidFile(const fs::path& path)
{
    std::ofstream file(path, std::ios::trunc);
    file << ::getpid() << "\n";
    file.close();
    if (!file) return Error{fmt::format("cannot write pid file {}", path.string())};
    return {};
}

void BlockShutdownSignals(sigset_t& set)
{
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    // Blocked before any thread starts (RocksDB starts some), so that every thread
    // inherits the mask and only the main loop's sigtimedwait receives them.
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

} // namespace

const std::vector<ChainInfo>& Chains()
{
    static const std::vector<ChainInfo> chains = {
        {"base", "", "Base mainnet (EVM chain id 8453) anchored to Bitcoin mainnet", 8453, 8931},
        {"base-sepolia", "base-sepolia", "Base Sepolia (EVM chain id 84532) anchored to a Bitcoin test network", 84532, 18931},
        {"regtest", "regtest", "a local anvil chain anchored to a Bitcoin regtest node", 31337, 28931},
    };
    return chains;
}

void RegisterDaemonArgs(ArgsManager& args)
{
    std::vector<std::string> sections;
    for (const auto& chain : Chains()) sections.push_back(chain.name);
    args.SetSectionNames(sections);

    std::string chain_names;
    for (const auto& chain : Chains()) chain_names += (chain_names.empty() ? "" : ", ") + chain.name;
    std::string categories;
    for (const auto& name : log::CategoryNames()) categories += (categories.empty() ? "" : ", ") + name;

    const std::string general = "Options";
    const std::string logging = "Logging options";
    args.AddArg({.name = "help", .type = ArgType::Bool, .help = "Print this help message and exit (also -h, -?)",
                 .category = general, .command_line_only = true});
    args.AddArg({.name = "version", .type = ArgType::Bool, .help = "Print the version and exit",
                 .category = general, .command_line_only = true});
    args.AddArg({.name = "conf", .type = ArgType::Path, .default_text = "bitacora.conf",
                 .help = "Read options from this file; a relative path is relative to the data dir. "
                         "Only on the command line.",
                 .category = general, .command_line_only = true});
    args.AddArg({.name = "datadir", .type = ArgType::Path, .default_text = "~/.bitacora",
                 .help = "Data directory; it must exist when given", .category = general, .top_level_only = true});
    args.AddArg({.name = "chain", .type = ArgType::String, .default_text = "base",
                 .help = "Chain to follow, one of: " + chain_names +
                         ". Selects the [section] of the config file that applies and, except for base, a "
                         "subdirectory of the data dir",
                 .category = general, .top_level_only = true, .validate = ValidateChain});
    args.AddArg({.name = "pid", .type = ArgType::Path, .default_text = "bitacorad.pid",
                 .help = "Process id file; relative to the chain's data dir", .category = general});
    args.AddArg({.name = "rebuild", .type = ArgType::Bool, .default_text = "0",
                 .help = "Recompute every projection from the event log at start-up and log the state hash "
                         "before and after",
                 .category = general});
    args.AddArg({.name = "dbcache", .type = ArgType::Int, .default_text = std::to_string(kDbCacheMibDefault),
                 .help = "Database block cache size in MiB", .category = general, .min = 4, .max = 1 << 16});

    args.AddArg({.name = "debug", .type = ArgType::List, .default_text = "none",
                 .help = "Log debug lines of a category; repeat or separate with commas; 1 or all for every "
                         "category. Categories: " + categories,
                 .category = logging, .validate = ValidateCategory});
    args.AddArg({.name = "debugexclude", .type = ArgType::List,
                 .help = "Exclude a category from -debug (for -debug=1 -debugexclude=db)", .category = logging,
                 .validate = ValidateCategory});
    args.AddArg({.name = "debuglogfile", .type = ArgType::Path, .default_text = "debug.log",
                 .help = "Log file; relative to the chain's data dir; -nodebuglogfile logs to no file. SIGHUP "
                         "reopens it, for logrotate",
                 .category = logging});
    args.AddArg({.name = "printtoconsole", .type = ArgType::Bool, .default_text = "1",
                 .help = "Also write log lines to standard output (the journal under systemd)", .category = logging});
    args.AddArg({.name = "logratelimit", .type = ArgType::Bool, .default_text = "1",
                 .help = "Limit info, warning and error lines to 1 MiB per source location per hour, so that "
                         "remote input cannot fill the disk; debug lines are never limited",
                 .category = logging});
    RegisterEvmArgs(args);
    RegisterBtcArgs(args);
    RegisterRpcArgs(args);
}

namespace {

// Where this start runs: the data dir, the chain's subdirectory of it, the config file.
struct Location {
    fs::path datadir;
    fs::path netdir;
    fs::path conf;
    std::string chain_name;
    const ChainInfo* chain{nullptr}; // null for a chain name the table does not know
    // The followers' options, read once before anything is touched (none: that side is off).
    std::optional<evm::FollowerOptions> evm;
    std::optional<BtcConfig> btc;
};

// -datadir, -conf and -chain, every option checked before the data dir is touched (a
// refused start leaves nothing behind), then the chain's directory made.
Result<Location> Locate(ArgsManager& args)
{
    std::error_code ec;
    Location where;
    where.datadir = args.IsSet("datadir") ? fs::path(args.GetString("datadir", "")) : DefaultDataDir();
    if (args.IsSet("datadir")) {
        if (auto status = CheckDataDir(where.datadir); !status) return status.failure();
    } else {
        fs::create_directories(where.datadir, ec);
        if (ec) return Error{fmt::format("cannot create data directory {}: {}", where.datadir.string(), ec.message())};
    }
    where.conf = AbsoluteIn(where.datadir, args.GetString("conf", "bitacora.conf"));
    if (auto status = args.ReadConfigFile(where.conf, args.IsSet("conf")); !status) return status.failure();
    // The config file may name another data dir (useful with -conf=/etc/...).
    if (args.IsSet("datadir")) {
        where.datadir = fs::path(args.GetString("datadir", ""));
        if (auto status = CheckDataDir(where.datadir); !status) return status.failure();
    }
    where.datadir = fs::absolute(where.datadir, ec);
    where.chain_name = args.GetString("chain", "base");
    args.SelectSection(where.chain_name);
    where.netdir = where.datadir;
    for (const auto& chain : Chains()) {
        if (chain.name != where.chain_name) continue;
        where.chain = &chain;
        if (!chain.datadir_subdir.empty()) where.netdir /= chain.datadir_subdir;
    }
    auto evm = EvmOptionsFromArgs(args, where.chain ? where.chain->evm_chain_id : 0, where.netdir);
    if (!evm) return evm.failure();
    where.evm = std::move(evm.value());
    auto btc = BtcConfigFromArgs(args, where.chain_name);
    if (!btc) return btc.failure();
    where.btc = std::move(btc.value());
    if (auto status = ValidateRpcArgs(args); !status) return status.failure();
    fs::create_directories(where.netdir, ec);
    if (ec) return Error{fmt::format("cannot create {}: {}", where.netdir.string(), ec.message())};
    return where;
}

Status StartLogging(const ArgsManager& args, const Location& where)
{
    auto& logger = log::GetLogger();
    logger.SetPrintToConsole(args.GetBool("printtoconsole", true));
    logger.SetRateLimiting(args.GetBool("logratelimit", true));
    for (const auto& name : args.GetList("debug")) {
        if (auto category = log::ParseCategory(name)) logger.EnableCategory(*category);
    }
    for (const auto& name : args.GetList("debugexclude")) {
        if (auto category = log::ParseCategory(name)) logger.DisableCategory(*category);
    }
    if (!args.IsNegated("debuglogfile")) {
        const fs::path log_path = AbsoluteIn(where.netdir, args.GetString("debuglogfile", "debug.log"));
        if (auto status = logger.OpenFile(log_path); !status) return status;
    }
    std::error_code ec;
    LogInfo("Bitácora daemon version v{}", BITACORA_VERSION);
    LogInfo("Chain: {}", where.chain_name);
    LogInfo("Data directory: {}", where.netdir.string());
    LogInfo("Config file: {}{}", where.conf.string(), fs::exists(where.conf, ec) ? "" : " (not found, using defaults)");
    LogInfo("Debug logging: {}", logger.EnabledCategoriesString());
    RouteLibeventLog();
    return {};
}

// The ledger, rebuilt first under -rebuild (its state hash logged before and after).
Status OpenLedger(const ArgsManager& args, const Location& where, Node& node)
{
    ledger::LedgerOptions ledger_options;
    ledger_options.cache_mib = static_cast<uint64_t>(args.GetInt("dbcache", kDbCacheMibDefault));
    ledger_options.checkpoint_key_path = where.netdir / "checkpoint.key";
    auto opened = ledger::Ledger::Open(where.netdir / "ledger", ledger_options);
    if (!opened) {
        LogError("{}", opened.error());
        return opened.failure();
    }
    node.ledger = std::move(opened.value());
    LogInfo("Checkpoint key: {}", HexEncode0x(*node.ledger->checkpoint_public_key()));
    if (!args.GetBool("rebuild", false)) return {};
    const auto before = node.ledger->StateHash();
    if (auto status = node.ledger->RebuildProjections(); !status) {
        LogError("Rebuild failed: {}", status.error());
        return status;
    }
    const auto after = node.ledger->StateHash();
    if (!before || !after) return Error{"cannot compute the state hash"};
    LogInfo("Projection state hash before rebuild {}, after {}{}", HexEncode0x(*before), HexEncode0x(*after),
            *before == *after ? "" : " (DIFFERENT: the stored projections did not match the log)");
    return {};
}

std::string FinalityName(const evm::FollowerOptions& o)
{
    switch (o.finality) {
    case evm::FinalityRule::Finalized: return "finalized";
    case evm::FinalityRule::Safe: return "safe";
    case evm::FinalityRule::Depth: break;
    }
    return fmt::format("{} confirmations", o.finality_depth);
}

Status StartEvmFollower(const ArgsManager& args, const Location& where, Node& node, ApiSources& sources)
{
    if (!where.evm) {
        LogInfo("EVM follower: off (no -evmrpc)");
        return {};
    }
    evm::FollowerOptions o = *where.evm;
    o.rpc.monitor = std::make_shared<UpstreamMonitor>("evm", UpstreamHangAfter(args));
    sources.evm_upstream = o.rpc.monitor;
    LogInfo("EVM follower: chain id {}, escrow {}, vault {}, from block {}, finality {}, endpoints {}", o.chain_id,
            evm::FormatAddress(o.escrow), evm::FormatAddress(o.vault), o.start_block, FinalityName(o), o.rpc.urls.size());
    node.evm_follower = std::make_unique<evm::EvmFollower>(o, *node.ledger, [](const std::string& why) {
        g_fatal_error = true;
        sd_notifyf(0, "STATUS=EVM follower stopped: %s", why.c_str());
        ::kill(::getpid(), SIGTERM);
    });
    node.evm_follower->Start();
    return {};
}

Status StartBitcoin(const ArgsManager& args, const Location& where, Node& node, ApiSources& sources)
{
    if (!where.btc) {
        LogInfo("Bitcoin follower: off (no -btcrpcconnect)");
        return {};
    }
    BtcConfig c = *where.btc;
    c.rpc.monitor = std::make_shared<UpstreamMonitor>("btc", UpstreamHangAfter(args));
    sources.btc_upstream = c.rpc.monitor;
    node.btc_rpc = std::make_unique<btc::BitcoindRpc>(c.rpc);
    node.anchorer = std::make_unique<btc::Anchorer>(*node.ledger, *node.btc_rpc, c.anchorer);
    if (auto* evm = node.evm_follower.get()) {
        c.follower.others_synced = [evm] { return evm->status().state == evm::FollowerStatus::State::Following; };
    }
    node.btc_follower = std::make_unique<btc::BtcFollower>(*node.ledger, *node.btc_rpc, node.anchorer.get(), c.follower);
    LogInfo("Bitcoin follower: bitcoind at {}{}, {}; anchoring {}", node.btc_rpc->endpoint(),
            c.rpc.wallet.empty() ? "" : " wallet " + c.rpc.wallet,
            c.rpc.user.empty() ? "cookie " + c.rpc.cookie_file.string() : "user " + c.rpc.user,
            c.anchorer.enabled ? fmt::format("every {} s, final at {} confirmations", c.anchorer.interval_s,
                                             c.anchorer.final_confirmations)
                               : std::string("on request only (-anchor=0)"));
    node.btc_follower->Start();
    return {};
}

// Everything after the logger: fd limits, pid file, ledger, ZMQ, followers, API.
Status StartNode(ArgsManager& args, const Location& where, Node& node)
{
    // Before anything opens files or sockets: RocksDB, the followers, the RPC server.
    if (auto status = SizeFileDescriptors(args); !status) {
        LogError("{}", status.error());
        return status;
    }
    const fs::path pid_file = AbsoluteIn(where.netdir, args.GetString("pid", "bitacorad.pid"));
    if (auto status = WritePidFile(pid_file); !status) {
        LogError("{}", status.error());
        return status;
    }
    node.pid_file = pid_file;
    if (auto status = OpenLedger(args, where, node); !status) return status;
    auto zmq = StartZmq(args, *node.ledger);
    if (!zmq) {
        LogError("{}", zmq.error());
        return zmq.failure();
    }
    node.zmq = std::move(zmq.value());
    ApiSources sources{.stall_after = UpstreamStallAfter(args), .head_stall = HeadStallBounds(args)};
    if (auto status = StartEvmFollower(args, where, node, sources); !status) return status;
    if (auto status = StartBitcoin(args, where, node, sources); !status) return status;
    sources.evm = node.evm_follower.get();
    sources.btc = node.btc_follower.get();
    sources.anchorer = node.anchorer.get();
    sources.zmq = node.zmq.get();
    auto api = StartApi(args, where.chain ? where.chain->rpc_port : 0, where.netdir, *node.ledger, sources);
    if (!api) {
        LogError("{}", api.error());
        return api.failure();
    }
    node.api = std::move(api.value());
    if (node.api) LogInfo("RPC server on port {}", node.api->port());
    return {};
}

// The main thread only waits for signals and, under WatchdogSec, pings systemd at half
// the interval; SIGHUP reopens the log file, SIGTERM and SIGINT end the wait.
void WaitForShutdown(const sigset_t& shutdown_signals)
{
    uint64_t watchdog_usec = 0;
    const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
    LogInfo("Initialization done{}", watchdog ? fmt::format(", watchdog every {} ms", watchdog_usec / 2000) : "");
    const long wait_ns = watchdog ? static_cast<long>(watchdog_usec / 2 * 1000) : 3600L * 1'000'000'000L;
    for (;;) {
        if (watchdog) sd_notify(0, "WATCHDOG=1");
        const timespec timeout{wait_ns / 1'000'000'000L, wait_ns % 1'000'000'000L};
        const int sig = sigtimedwait(&shutdown_signals, nullptr, &timeout);
        if (sig == SIGHUP) {
            LogInfo("SIGHUP received: reopening the log file");
            if (auto status = log::GetLogger().ReopenFile(); !status) std::fprintf(stderr, "Error: %s\n", status.error().c_str());
            LogInfo("Log file reopened");
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            if (g_fatal_error) LogError("Shutting down after a fatal error");
            else LogInfo("{} received: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
    }
}

} // namespace

int DaemonMain(int argc, char* argv[])
{
    sigset_t shutdown_signals;
    BlockShutdownSignals(shutdown_signals);

    ArgsManager args;
    RegisterDaemonArgs(args);
    if (auto status = args.ParseCommandLine(std::vector<std::string>(argv + 1, argv + argc)); !status) {
        return InitError(status.error());
    }
    if (args.GetBool("help", false)) {
        std::printf("Bitácora daemon version v%s\n\nUsage: bitacorad [options]\n%s", BITACORA_VERSION,
                    args.HelpMessage().c_str());
        return EXIT_SUCCESS;
    }
    if (args.GetBool("version", false)) {
        std::printf("Bitácora daemon version v%s\n", BITACORA_VERSION);
        return EXIT_SUCCESS;
    }
    auto where = Locate(args);
    if (!where) return InitError(where.error());
    Node node;
    {
        auto lock = DirectoryLock::Acquire(where->netdir);
        if (!lock) return InitError(lock.error());
        node.lock = std::move(lock.value());
    }
    if (auto status = StartLogging(args, *where); !status) return InitError(status.error());
    if (auto status = StartNode(args, *where, node); !status) {
        node.Shutdown();
        return InitError(status.error());
    }
    sd_notifyf(0, "READY=1\nSTATUS=Ledger open, %llu events\nMAINPID=%lu",
               static_cast<unsigned long long>(node.ledger->size()), static_cast<unsigned long>(::getpid()));
    WaitForShutdown(shutdown_signals);
    sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
    node.Shutdown();
    log::GetLogger().CloseFile();
    return g_fatal_error ? EXIT_FAILURE : EXIT_SUCCESS;
}

} // namespace bitacora
