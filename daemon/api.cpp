#include "daemon/api.h"

#include "daemon/backup.h"

#include "common/hex.h"
#include "common/logging.h"

#include "rpc/ledger_json.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <thread>

namespace bitacora {
namespace {

constexpr int64_t kRpcThreadsDefault = 4;
constexpr int64_t kRpcWorkQueueDefault = 64;
constexpr int64_t kRpcMaxBodyDefault = 1 << 20;
constexpr int64_t kRpcMaxBatchDefault = 1000; // geth's, and what viem's batch transport sends at most
constexpr int64_t kRpcMaxConnectionsDefault = 256;
constexpr int64_t kRpcTimeoutSDefault = 30;
constexpr int64_t kRpcMaxRequestMsDefault = 10'000;
constexpr int64_t kRpcMaxResponseDefault = 25'000'000;

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
    args.AddArg({.name = "rpcallowip", .type = ArgType::List,
                 .help = "Allow API clients from this address or subnet besides loopback (1.2.3.4, 10.0.0.0/8, "
                         "10.0.0.0/255.0.0.0, fd00::/8); repeat for several. Others are answered 403. Required with "
                         "an -rpcbind beyond loopback",
                 .category = rpc,
                 .validate = [](std::string_view value) -> std::optional<std::string> {
                     if (rpc::ParseSubnet(value)) return std::nullopt;
                     return "expected an IP address or subnet";
                 }});
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
                 .help = "Most calls in one batch; a longer one is answered as geth does, with one error "
                         "-32600 \"batch too large\"",
                 .category = rpc, .min = 1, .max = 10'000});
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
    args.AddArg({.name = "rpcmaxresponse", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxResponseDefault),
                 .help = "Largest answer in bytes, a whole batch included: a list stops early with its continuation "
                         "marker, and the calls of a batch past it are answered with an error",
                 .category = rpc, .min = 4096, .max = 1 << 30});
    args.AddArg({.name = "rpcmaxrequestms", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxRequestMsDefault),
                 .help = "Calls of a batch that start later than this many milliseconds after the request are "
                         "answered with an error",
                 .category = rpc, .min = 1, .max = 600'000});
}

Status ValidateRpcArgs(const ArgsManager& args)
{
    if (!args.GetBool("server", true) || !args.GetList("rpcallowip").empty()) return {};
    for (const auto& bind : args.GetList("rpcbind")) {
        if (!rpc::IsLoopbackBind(bind)) {
            return Error{fmt::format("-rpcbind={} listens beyond loopback but no -rpcallowip says which clients may "
                                     "connect; add -rpcallowip=<address or subnet> (clients on loopback are always "
                                     "allowed), or bind to 127.0.0.1",
                                     bind)};
        }
    }
    return {};
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
            {"pendingDigest", HexEncode0x(s.pending_digest)},
            {"eventsAppended", s.events_final},
            {"rawLogs", s.raw_logs},
            {"reorgs", s.reorgs},
            {"reorgDepthMax", s.reorg_depth_max},
            {"inconsistentAnswers", s.inconsistent_answers},
            {"verifyRefusals", s.verify_refusals},
            {"receiptsChecked", s.receipts_checked},
            {"quorumChecks", s.quorum_checks},
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

namespace {

double Percentile(std::vector<double> samples, double q)
{
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    const size_t at = std::min(samples.size() - 1, static_cast<size_t>(q * static_cast<double>(samples.size())));
    return samples[at];
}

} // namespace

nlohmann::json BtcStatusJson(const btc::BtcFollowerStatus& s, const btc::AnchorerStatus* a)
{
    nlohmann::json out = {{"state", s.state},
                          {"tipHeight", s.tip_height ? nlohmann::json(*s.tip_height) : nlohmann::json(nullptr)},
                          {"tipHash", rpc::BitcoinHashHex(s.tip_hash)},
                          {"nodeHeight", s.node_height ? nlohmann::json(*s.node_height) : nlohmann::json(nullptr)},
                          {"blocksProcessed", s.blocks_processed},
                          {"blocksPrunedUnread", s.blocks_pruned_unread},
                          {"reorgs", s.reorgs},
                          {"blocksDisconnected", s.blocks_disconnected},
                          {"resyncs", s.resyncs},
                          {"rpcErrors", s.rpc_errors},
                          {"lastError", s.last_error},
                          {"zmq", {{"topic", s.zmq_topic}, {"messages", s.zmq.messages}, {"gaps", s.zmq.gaps},
                                   {"disconnects", s.zmq.disconnects}}},
                          {"zmqToProcessedMs", {{"p50", Percentile(s.hint_latency_ms, 0.50)},
                                                {"p99", Percentile(s.hint_latency_ms, 0.99)},
                                                {"samples", s.hint_latency_ms.size()}}}};
    if (a != nullptr) {
        nlohmann::json errors = nlohmann::json::object();
        for (const auto& [label, count] : a->errors) errors[label] = count;
        out["anchoring"] = {{"planned", a->anchors_planned}, {"broadcast", a->anchors_broadcast},
                            {"confirmed", a->anchors_confirmed}, {"final", a->anchors_final},
                            {"dropped", a->anchors_dropped}, {"abandoned", a->anchors_abandoned},
                            {"feeBumps", a->fee_bumps}, {"errors", errors}, {"lastError", a->last_error},
                            {"active", a->active ? rpc::AnchorJson(*a->active) : nlohmann::json(nullptr)},
                            {"latestFinal", a->latest_final ? rpc::AnchorJson(*a->latest_final) : nlohmann::json(nullptr)}};
    }
    return out;
}

std::string BtcMetrics(const btc::BtcFollowerStatus& s, const btc::AnchorerStatus* a)
{
    std::string out;
    auto metric = [&](const char* type, const char* name, const char* help, double value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} {3}\n{0}{{source=\"btc\"}} {2}\n", name, help, value, type);
    };
    metric("gauge", "bitacora_btc_tip_height", "The last Bitcoin block processed.", static_cast<double>(s.tip_height.value_or(0)));
    metric("gauge", "bitacora_btc_node_height", "bitcoind's best height.", static_cast<double>(s.node_height.value_or(0)));
    metric("gauge", "bitacora_btc_lag_blocks", "Blocks between bitcoind's best block and the last processed.",
           static_cast<double>(s.node_height.value_or(0) - std::min(s.node_height.value_or(0), s.tip_height.value_or(0))));
    metric("counter", "bitacora_btc_blocks_processed_total", "Bitcoin blocks processed.", static_cast<double>(s.blocks_processed));
    metric("counter", "bitacora_btc_reorgs_total", "Bitcoin reorgs walked back.", static_cast<double>(s.reorgs));
    metric("counter", "bitacora_btc_resyncs_total", "Resyncs asked by ZMQ gaps and disconnects.", static_cast<double>(s.resyncs));
    metric("counter", "bitacora_btc_zmq_gaps_total", "Gaps in ZMQ sequence numbers.", static_cast<double>(s.zmq.gaps));
    metric("counter", "bitacora_btc_rpc_errors_total", "bitcoind calls that failed in the follower.", static_cast<double>(s.rpc_errors));
    metric("gauge", "bitacora_btc_zmq_to_processed_ms_p99", "ZMQ block message to block processed, p99.",
           Percentile(s.hint_latency_ms, 0.99));
    if (a != nullptr) {
        out += "# HELP bitacora_anchors_total Anchors that reached each state in this process.\n"
               "# TYPE bitacora_anchors_total counter\n";
        for (const auto& [state, count] : {std::pair{"planned", a->anchors_planned}, std::pair{"broadcast", a->anchors_broadcast},
                                           std::pair{"confirmed", a->anchors_confirmed}, std::pair{"final", a->anchors_final},
                                           std::pair{"dropped", a->anchors_dropped}, std::pair{"abandoned", a->anchors_abandoned}}) {
            out += fmt::format("bitacora_anchors_total{{state=\"{}\"}} {}\n", state, count);
        }
        out += "# HELP bitacora_anchor_errors_total Failed anchoring steps by reason.\n# TYPE bitacora_anchor_errors_total counter\n";
        for (const char* label : {"node_down", "auth", "insufficient_funds", "wallet", "pruned", "rpc", "http", "malformed"}) {
            const auto it = a->errors.find(label);
            out += fmt::format("bitacora_anchor_errors_total{{reason=\"{}\"}} {}\n", label, it == a->errors.end() ? 0 : it->second);
        }
        out += fmt::format("# HELP bitacora_anchor_active_state State of the anchor in progress (0 none, 1 planned, 2 signed, "
                           "3 broadcast, 4 confirmed).\n# TYPE bitacora_anchor_active_state gauge\nbitacora_anchor_active_state {}\n",
                           a->active ? static_cast<int>(a->active->state) : 0);
        out += fmt::format("# HELP bitacora_anchor_final_tree_size Tree size of the latest final anchor.\n# TYPE "
                           "bitacora_anchor_final_tree_size gauge\nbitacora_anchor_final_tree_size {}\n",
                           a->latest_final ? a->latest_final->tree_size : 0);
        metric("counter", "bitacora_anchor_fee_bumps_total", "Anchor fee bumps (BIP125).", static_cast<double>(a->fee_bumps));
    }
    return out;
}

Result<std::unique_ptr<rpc::RpcServer>> StartApi(const ArgsManager& args, uint16_t default_port,
                                                 const std::filesystem::path& netdir, ledger::Ledger& ledger,
                                                 ApiSources sources)
{
    if (!args.GetBool("server", true)) return std::unique_ptr<rpc::RpcServer>{};
    rpc::RpcServerOptions options;
    const auto binds = args.GetList("rpcbind");
    if (!binds.empty()) options.http.bind_addresses = binds;
    for (const auto& text : args.GetList("rpcallowip")) options.http.allowed_clients.push_back(*rpc::ParseSubnet(text));
    for (const auto& bind : options.http.bind_addresses) {
        if (!rpc::IsLoopbackBind(bind)) {
            LogWarning("WARNING: the API listens on {}, beyond loopback: clients of -rpcallowip ({}) may connect. "
                       "Credentials travel in clear text: put TLS and a firewall in front",
                       bind, fmt::join(args.GetList("rpcallowip"), ", "));
        }
    }
    options.http.port = static_cast<uint16_t>(args.GetInt("rpcport", default_port));
    options.http.worker_threads = static_cast<size_t>(args.GetInt("rpcthreads", kRpcThreadsDefault));
    options.http.queue_depth_max = static_cast<size_t>(args.GetInt("rpcworkqueue", kRpcWorkQueueDefault));
    options.http.body_bytes_max = static_cast<size_t>(args.GetInt("rpcmaxbody", kRpcMaxBodyDefault));
    options.http.connections_max = static_cast<size_t>(args.GetInt("rpcmaxconnections", kRpcMaxConnectionsDefault));
    options.http.timeout_s = static_cast<int>(args.GetInt("rpctimeout", kRpcTimeoutSDefault));
    options.limits.batch_length_max = static_cast<size_t>(args.GetInt("rpcmaxbatch", kRpcMaxBatchDefault));
    options.limits.request_time_max = std::chrono::milliseconds(args.GetInt("rpcmaxrequestms", kRpcMaxRequestMsDefault));
    options.limits.answer_bytes_max = static_cast<size_t>(args.GetInt("rpcmaxresponse", kRpcMaxResponseDefault));
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
    if (sources.evm != nullptr || sources.btc != nullptr) {
        methods.sources = [sources] {
            nlohmann::json out = nlohmann::json::object();
            if (sources.evm) out["evm"] = FollowerStatusJson(sources.evm->status());
            if (sources.btc) {
                const auto anchorer = sources.anchorer ? std::optional(sources.anchorer->status()) : std::nullopt;
                out["btc"] = BtcStatusJson(sources.btc->status(), anchorer ? &*anchorer : nullptr);
            }
            return out;
        };
    }
    if (sources.anchorer != nullptr && sources.btc != nullptr) {
        methods.anchor_now = [sources, &ledger]() -> nlohmann::json {
            const uint64_t ticket = sources.anchorer->RequestNow();
            sources.btc->Wake();
            // The request is served on the follower's thread; bounded wait.
            for (int waited_ms = 0; waited_ms < 10'000 && sources.anchorer->HandledTicket() < ticket; waited_ms += 20) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            const bool handled = sources.anchorer->HandledTicket() >= ticket;
            const std::string outcome = handled ? sources.anchorer->last_request_outcome()
                                                : "requested; the follower is busy (is bitcoind reachable?), see bitacora_status";
            const auto latest = ledger.LatestAnchor();
            return {{"anchored", handled && outcome.empty()},
                    {"message", outcome.empty() ? "anchor sent" : outcome},
                    {"anchor", latest ? rpc::AnchorJson(*latest) : nlohmann::json(nullptr)}};
        };
    }
    // Shared by the method table's copies; the server drops it before the ledger closes.
    methods.backup = [runner = std::make_shared<BackupRunner>(ledger, netdir)](const std::string& dir, bool include_key) {
        auto outcome = runner->Run(dir, include_key, std::chrono::seconds(30));
        if (!outcome.answer) {
            throw rpc::RpcException{outcome.refused ? rpc::kInvalidParams : rpc::kInternalError, outcome.answer.error()};
        }
        return std::move(outcome.answer.value());
    };
    auto extra_metrics = [sources]() -> std::string {
        std::string out = sources.evm ? FollowerMetrics(sources.evm->status()) : "";
        if (sources.btc) {
            const auto anchorer = sources.anchorer ? std::optional(sources.anchorer->status()) : std::nullopt;
            out += BtcMetrics(sources.btc->status(), anchorer ? &*anchorer : nullptr);
        }
        return out;
    };
    return rpc::RpcServer::Start(options, std::move(methods), extra_metrics, [] { return true; });
}

} // namespace bitacora
