#include "daemon/api.h"

#include "common/hex.h"
#include "common/logging.h"

#include <fmt/format.h>

namespace bitacora {
namespace {

constexpr int64_t kRpcThreadsDefault = 4;
constexpr int64_t kRpcWorkQueueDefault = 64;
constexpr int64_t kRpcMaxBodyDefault = 1 << 20;
constexpr int64_t kRpcMaxBatchDefault = 100;
constexpr int64_t kRpcMaxConnectionsDefault = 256;
constexpr int64_t kRpcTimeoutSDefault = 30;
constexpr int64_t kRpcMaxRequestMsDefault = 10'000;

} // namespace

void RegisterRpcArgs(ArgsManager& args)
{
    const std::string rpc = "RPC server options";
    args.AddArg({.name = "server", .type = ArgType::Bool, .default_text = "1",
                 .help = "Serve the JSON-RPC API, GET /health and GET /metrics", .category = rpc});
    args.AddArg({.name = "rpcbind", .type = ArgType::List, .default_text = "127.0.0.1 and ::1",
                 .help = "Address to listen on; repeat for several. Anything but loopback exposes the API: put TLS "
                         "and a firewall in front",
                 .category = rpc});
    args.AddArg({.name = "rpcport", .type = ArgType::Int, .default_text = "8931 (base), 18931 (base-sepolia), 28931 (regtest)",
                 .help = "Port of the API; 0 picks a free one (logged)", .category = rpc, .min = 0, .max = 65535});
    args.AddArg({.name = "rpccookiefile", .type = ArgType::Path, .default_text = ".cookie",
                 .help = "Cookie file with a fresh password at each start (mode 0600), relative to the chain's data dir; "
                         "-norpccookiefile writes none",
                 .category = rpc});
    args.AddArg({.name = "rpcauth", .type = ArgType::List,
                 .help = "Credentials <user>:<salt>$<hmac-sha256(salt, password)>, the format of bitcoind's "
                         "share/rpcauth/rpcauth.py; repeat for several users",
                 .category = rpc});
    args.AddArg({.name = "rpcopenreads", .type = ArgType::Bool, .default_text = "0",
                 .help = "Let read methods be called without credentials (write methods always need them)",
                 .category = rpc});
    args.AddArg({.name = "rpcthreads", .type = ArgType::Int, .default_text = std::to_string(kRpcThreadsDefault),
                 .help = "Worker threads answering requests", .category = rpc, .min = 1, .max = 64});
    args.AddArg({.name = "rpcworkqueue", .type = ArgType::Int, .default_text = std::to_string(kRpcWorkQueueDefault),
                 .help = "Requests waiting for a worker; more are answered 503", .category = rpc, .min = 1, .max = 65536});
    args.AddArg({.name = "rpcmaxbody", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxBodyDefault),
                 .help = "Largest request body in bytes; larger ones are answered 413", .category = rpc, .min = 1024,
                 .max = 64 << 20});
    args.AddArg({.name = "rpcmaxbatch", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxBatchDefault),
                 .help = "Most calls in one batch", .category = rpc, .min = 1, .max = 10'000});
    args.AddArg({.name = "rpcmaxconnections", .type = ArgType::Int,
                 .default_text = std::to_string(kRpcMaxConnectionsDefault),
                 .help = "Most open connections; more are answered 503 and closed", .category = rpc, .min = 1,
                 .max = 65536});
    args.AddArg({.name = "rpctimeout", .type = ArgType::Int, .default_text = std::to_string(kRpcTimeoutSDefault),
                 .help = "Seconds to read a request and to keep an idle connection", .category = rpc, .min = 1,
                 .max = 3600});
    args.AddArg({.name = "backendkey", .type = ArgType::List,
                 .help = "x-only public key (64 hex digits) of the platform's backend allowed to sign off-chain events "
                         "(ledger_submitEvent); repeat for several. None: submission is off",
                 .category = rpc,
                 .validate = [](std::string_view value) -> std::optional<std::string> {
                     std::array<uint8_t, 32> key{};
                     if (value.size() == 64 && HexDecodeExact(value, key)) return std::nullopt;
                     return "expected 64 hex digits";
                 }});
    args.AddArg({.name = "zmqpubevent", .type = ArgType::String,
                 .help = "Publish ledger events on a ZMQ PUB socket at this address (e.g. tcp://127.0.0.1:28932): "
                         "topics final.<kind> and rollback.<kind>, bitcoind's three-part framing with a per-topic "
                         "sequence number. Off by default",
                 .category = "ZeroMQ notification options"});
    args.AddArg({.name = "zmqpubeventhwm", .type = ArgType::Int, .default_text = "100000",
                 .help = "Messages queued per ZMQ subscriber before the newest are dropped",
                 .category = "ZeroMQ notification options", .min = 1, .max = 10'000'000});
    args.AddArg({.name = "rpcmaxrequestms", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxRequestMsDefault),
                 .help = "Calls of a batch that start later than this many milliseconds after the request are "
                         "answered with an error",
                 .category = rpc, .min = 1, .max = 600'000});
}

Result<std::unique_ptr<rpc::ZmqPublisher>> StartZmq(const ArgsManager& args, ledger::Ledger& ledger)
{
    const std::string endpoint = args.GetString("zmqpubevent", "");
    if (endpoint.empty()) return std::unique_ptr<rpc::ZmqPublisher>{};
    auto publisher = rpc::ZmqPublisher::Start({.endpoint = endpoint,
                                               .high_water_mark = static_cast<int>(args.GetInt("zmqpubeventhwm", 100'000))});
    if (!publisher) return Error{publisher.error()};
    rpc::ZmqPublisher* raw = publisher->get();
    ledger.SetListener([raw](const ledger::LedgerNotice& notice) { raw->Notify(notice); });
    return std::move(publisher.value());
}

nlohmann::json FollowerStatusJson(const evm::FollowerStatus& s)
{
    const auto& r = s.reconcile;
    return {{"state", evm::FollowerStateName(s.state)},
            {"error", s.error},
            {"headBlock", s.head_block},
            {"nodeFinalBlock", s.node_final_block},
            {"finalBlock", s.final_block ? nlohmann::json(*s.final_block) : nlohmann::json(nullptr)},
            {"pendingTip", s.pending_tip ? nlohmann::json(*s.pending_tip) : nlohmann::json(nullptr)},
            {"pendingEvents", s.events_pending},
            {"pendingDigest", HexEncode(s.pending_digest)},
            {"eventsAppended", s.events_final},
            {"rawLogs", s.raw_logs},
            {"reorgs", s.reorgs},
            {"reorgDepthMax", s.reorg_depth_max},
            {"inconsistentAnswers", s.inconsistent_answers},
            {"rpc", {{"requests", s.rpc.requests}, {"calls", s.rpc.calls}, {"retries", s.rpc.retries},
                     {"transportErrors", s.rpc.transport_errors}, {"httpErrors", s.rpc.http_errors},
                     {"rateLimited", s.rpc.rate_limited}, {"malformed", s.rpc.malformed},
                     {"failovers", s.rpc.failovers}}},
            {"reconciliation", {{"checked", r.checked}, {"block", r.block_number},
                                {"escrowBalanceChain", r.escrow_balance_chain}, {"escrowLockedLedger", r.escrow_locked_ledger},
                                {"vaultSharesChain", r.vault_shares_chain}, {"vaultSharesLedger", r.vault_shares_ledger},
                                {"vaultAssetsChain", r.vault_assets_chain}, {"escrowMatches", r.escrow_matches},
                                {"sharesMatch", r.shares_match}, {"drifts", r.drifts}, {"errors", r.errors}}}};
}

std::string FollowerMetrics(const evm::FollowerStatus& s)
{
    std::string out;
    auto gauge = [&](const char* name, const char* help, double value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0}{{source=\"evm\"}} {2}\n", name, help, value);
    };
    auto counter = [&](const char* name, const char* help, double value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0}{{source=\"evm\"}} {2}\n", name, help, value);
    };
    gauge("bitacora_sync_head_block", "The node's latest block.", static_cast<double>(s.head_block));
    gauge("bitacora_sync_final_block", "The last block in the final log.", static_cast<double>(s.final_block.value_or(0)));
    gauge("bitacora_sync_pending_tip", "The last block in the pending overlay.", static_cast<double>(s.pending_tip.value_or(0)));
    gauge("bitacora_sync_lag_blocks", "Blocks between the node's head and the pending tip.",
          static_cast<double>(s.head_block - std::min(s.head_block, s.pending_tip.value_or(s.final_block.value_or(0)))));
    gauge("bitacora_pending_events", "Events in the pending overlay.", static_cast<double>(s.events_pending));
    counter("bitacora_events_appended_total", "Events appended to the final log by this process.", static_cast<double>(s.events_final));
    counter("bitacora_raw_logs_total", "Logs kept verbatim (no known event).", static_cast<double>(s.raw_logs));
    counter("bitacora_reorgs_total", "Reorgs rolled back in the pending overlay.", static_cast<double>(s.reorgs));
    counter("bitacora_upstream_inconsistent_total", "Upstream answers refused by the checks.",
            static_cast<double>(s.inconsistent_answers));
    out += "# HELP bitacora_upstream_errors_total Upstream RPC errors by kind.\n# TYPE bitacora_upstream_errors_total counter\n";
    out += fmt::format("bitacora_upstream_errors_total{{source=\"evm\",kind=\"transport\"}} {}\n", s.rpc.transport_errors);
    out += fmt::format("bitacora_upstream_errors_total{{source=\"evm\",kind=\"http\"}} {}\n", s.rpc.http_errors);
    out += fmt::format("bitacora_upstream_errors_total{{source=\"evm\",kind=\"rate_limited\"}} {}\n", s.rpc.rate_limited);
    out += fmt::format("bitacora_upstream_errors_total{{source=\"evm\",kind=\"malformed\"}} {}\n", s.rpc.malformed);
    out += fmt::format("bitacora_upstream_errors_total{{source=\"evm\",kind=\"rpc\"}} {}\n", s.rpc.rpc_errors);
    counter("bitacora_upstream_requests_total", "Upstream HTTP requests.", static_cast<double>(s.rpc.requests));
    counter("bitacora_upstream_request_seconds_total", "Time in upstream HTTP requests.",
            static_cast<double>(s.rpc.latency_us_total) / 1e6);
    gauge("bitacora_block_visible_latency_ms_p99", "Block returned by the node to its events pending, p99 (last 10,000).",
          s.visible_latency_ms_p99);
    counter("bitacora_reconciliation_drift_total", "Reconciliations that found a difference.", static_cast<double>(s.reconcile.drifts));
    gauge("bitacora_reconciliation_ok", "1 when the last reconciliation matched.",
          s.reconcile.escrow_matches && s.reconcile.shares_match ? 1.0 : 0.0);
    return out;
}

Result<std::unique_ptr<rpc::RpcServer>> StartApi(const ArgsManager& args, uint16_t default_port,
                                                 const std::filesystem::path& netdir, ledger::Ledger& ledger,
                                                 const evm::EvmFollower* follower)
{
    if (!args.GetBool("server", true)) return std::unique_ptr<rpc::RpcServer>{};
    rpc::RpcServerOptions options;
    const auto binds = args.GetList("rpcbind");
    if (!binds.empty()) options.http.bind_addresses = binds;
    options.http.port = static_cast<uint16_t>(args.GetInt("rpcport", default_port));
    options.http.worker_threads = static_cast<size_t>(args.GetInt("rpcthreads", kRpcThreadsDefault));
    options.http.queue_depth_max = static_cast<size_t>(args.GetInt("rpcworkqueue", kRpcWorkQueueDefault));
    options.http.body_bytes_max = static_cast<size_t>(args.GetInt("rpcmaxbody", kRpcMaxBodyDefault));
    options.http.connections_max = static_cast<size_t>(args.GetInt("rpcmaxconnections", kRpcMaxConnectionsDefault));
    options.http.timeout_s = static_cast<int>(args.GetInt("rpctimeout", kRpcTimeoutSDefault));
    options.limits.batch_length_max = static_cast<size_t>(args.GetInt("rpcmaxbatch", kRpcMaxBatchDefault));
    options.limits.request_time_max = std::chrono::milliseconds(args.GetInt("rpcmaxrequestms", kRpcMaxRequestMsDefault));
    options.reads_open = args.GetBool("rpcopenreads", false);
    options.rpcauth = args.GetList("rpcauth");
    if (!args.IsNegated("rpccookiefile")) {
        const std::filesystem::path cookie(args.GetString("rpccookiefile", ".cookie"));
        options.cookie_path = cookie.is_absolute() ? cookie : netdir / cookie;
    }
    rpc::MethodContext methods{.ledger = &ledger};
    for (const auto& text : args.GetList("backendkey")) {
        std::array<uint8_t, 32> key{};
        HexDecodeExact(text, key); // validated when parsed
        methods.backend_keys.push_back(key);
    }
    if (follower != nullptr) {
        methods.sources = [follower] { return nlohmann::json{{"evm", FollowerStatusJson(follower->status())}}; };
    }
    auto extra_metrics = [follower]() -> std::string { return follower ? FollowerMetrics(follower->status()) : ""; };
    return rpc::RpcServer::Start(options, std::move(methods), extra_metrics, [] { return true; });
}

} // namespace bitacora
