#include "daemon/api.h"

#include "common/clock.h"

#include "daemon/backup.h"

#include "common/hex.h"
#include "common/logging.h"

#include "rpc/ledger_json.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
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
constexpr int64_t kUpstreamHangSDefault = 10;
constexpr int64_t kUpstreamStallSDefault = 15;
// Base makes a block every 2 s and Bitcoin one every 10 min on average: 10 minutes without
// a new EVM head, or 2 hours without a Bitcoin block (e^-12 by chance), says the node is stuck.
constexpr int64_t kEvmHeadStallSDefault = 600;
constexpr int64_t kBtcHeadStallSDefault = 7'200;

const std::string kRpcCategory = "RPC server options";

// Where the API listens and who may call it.
void RegisterServerArgs(ArgsManager& args)
{
    const std::string& rpc = kRpcCategory;
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
}

// The API's bounds: threads, queue, bodies, batches, connections, time.
void RegisterLimitArgs(ArgsManager& args)
{
    const std::string& rpc = kRpcCategory;
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
    args.AddArg({.name = "rpcmaxresponse", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxResponseDefault),
                 .help = "Largest answer in bytes, a whole batch included: a list stops early with its continuation "
                         "marker, and the calls of a batch past it are answered with an error",
                 .category = rpc, .min = 4096, .max = 1 << 30});
    args.AddArg({.name = "rpcmaxrequestms", .type = ArgType::Int, .default_text = std::to_string(kRpcMaxRequestMsDefault),
                 .help = "Calls of a batch that start later than this many milliseconds after the request are "
                         "answered with an error",
                 .category = rpc, .min = 1, .max = 600'000});
}

// GET /health's view of the followed sources, and the ZMQ event stream.
void RegisterHealthAndZmqArgs(ArgsManager& args)
{
    const std::string& rpc = kRpcCategory;
    args.AddArg({.name = "zmqpubevent", .type = ArgType::String,
                 .help = "Publish ledger events on a ZMQ PUB socket at this address (e.g. tcp://127.0.0.1:28932): "
                         "topics final.<kind> and rollback.<kind>, bitcoind's three-part framing with a per-topic "
                         "sequence number. Off by default",
                 .category = "ZeroMQ notification options"});
    args.AddArg({.name = "zmqpubeventhwm", .type = ArgType::Int, .default_text = "100000",
                 .help = "Messages queued per ZMQ subscriber before the newest are dropped",
                 .category = "ZeroMQ notification options", .min = 1, .max = 10'000'000});
    args.AddArg({.name = "upstreamhang", .type = ArgType::Int, .default_text = std::to_string(kUpstreamHangSDefault),
                 .help = "Seconds after which a request to the EVM node or bitcoind that has no answer yet is logged "
                         "(once, while it hangs) and its source reported failing (GET /health: degraded)",
                 .category = rpc, .min = 1, .max = 3600});
    args.AddArg({.name = "upstreamstall", .type = ArgType::Int, .default_text = std::to_string(kUpstreamStallSDefault),
                 .help = "Seconds a followed source may fail (errors or a hung request, no answer at all) before GET "
                         "/health answers 503 unavailable, naming it",
                 .category = rpc, .min = 1, .max = 86'400});
    args.AddArg({.name = "evmheadstall", .type = ArgType::Int, .default_text = std::to_string(kEvmHeadStallSDefault),
                 .help = "Seconds the EVM node may answer with the same latest block before GET /health says the "
                         "evm source is degraded (0: never; for a chain that makes blocks only on demand)",
                 .category = rpc, .min = 0, .max = 86'400 * 7});
    args.AddArg({.name = "btcheadstall", .type = ArgType::Int, .default_text = std::to_string(kBtcHeadStallSDefault),
                 .help = "Seconds bitcoind may answer with the same best block before GET /health says the btc "
                         "source is degraded (0: never)",
                 .category = rpc, .min = 0, .max = 86'400 * 7});
}

} // namespace

void RegisterRpcArgs(ArgsManager& args)
{
    RegisterServerArgs(args);
    RegisterLimitArgs(args);
    RegisterHealthAndZmqArgs(args);
}

std::chrono::milliseconds UpstreamHangAfter(const ArgsManager& args)
{
    return std::chrono::seconds(args.GetInt("upstreamhang", kUpstreamHangSDefault));
}

std::chrono::milliseconds UpstreamStallAfter(const ArgsManager& args)
{
    return std::chrono::seconds(args.GetInt("upstreamstall", kUpstreamStallSDefault));
}

HeadStall HeadStallBounds(const ArgsManager& args)
{
    return {.evm_s = static_cast<uint64_t>(args.GetInt("evmheadstall", kEvmHeadStallSDefault)),
            .btc_s = static_cast<uint64_t>(args.GetInt("btcheadstall", kBtcHeadStallSDefault))};
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
    if (!publisher) return publisher.failure();
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

namespace {

// Prometheus' text format, a family at a time: one HELP and TYPE, then its samples.
void Header(std::string& out, std::string_view name, std::string_view type, std::string_view help)
{
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n", name, help, type);
}

std::string LabelValue(std::string_view value)
{
    std::string out;
    for (const char c : value) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string Number(double value)
{
    if (std::isnan(value)) return "NaN";
    return fmt::format("{}", value);
}

void Sample(std::string& out, std::string_view name, std::string_view labels, double value)
{
    if (labels.empty()) out += fmt::format("{} {}\n", name, Number(value));
    else out += fmt::format("{}{{{}}} {}\n", name, labels, Number(value));
}

void Single(std::string& out, std::string_view type, std::string_view name, std::string_view help,
            std::string_view labels, double value)
{
    Header(out, name, type, help);
    Sample(out, name, labels, value);
}

// A summary: quantiles over the latest samples (NaN without any), totals since start.
void Summary(std::string& out, std::string_view name, std::string_view help, std::string_view labels,
             std::initializer_list<std::pair<double, double>> quantiles, uint64_t count, double sum)
{
    Header(out, name, "summary", help);
    for (const auto& [q, value] : quantiles) Sample(out, name, fmt::format("{},quantile=\"{}\"", labels, q), value);
    out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, Number(sum), name, labels, count);
}

} // namespace

std::string FollowerMetrics(const evm::FollowerStatus& s)
{
    std::string out;
    const char* evm = "source=\"evm\"";
    Single(out, "gauge", "bitacora_sync_head_block", "The node's latest block (0: not seen yet).", evm,
           static_cast<double>(s.head_block));
    Single(out, "gauge", "bitacora_sync_final_block", "The last block in the final log.", evm,
           static_cast<double>(s.final_block.value_or(0)));
    Single(out, "gauge", "bitacora_sync_pending_tip", "The last block in the pending overlay.", evm,
           static_cast<double>(s.pending_tip.value_or(0)));
    // Unknown (NaN) until the node's head has been seen: a node that never answered is not "no lag".
    const uint64_t ours = s.pending_tip.value_or(s.final_block.value_or(0));
    Single(out, "gauge", "bitacora_sync_lag_blocks", "Blocks between the node's head and the pending tip (NaN: head unknown).",
           evm, s.head_block == 0 ? std::nan("") : static_cast<double>(s.head_block - std::min(s.head_block, ours)));
    Single(out, "gauge", "bitacora_pending_events", "Events in the pending overlay.", evm, static_cast<double>(s.events_pending));
    Single(out, "counter", "bitacora_events_appended_total", "Events appended to the final log by this process.", evm,
           static_cast<double>(s.events_final));
    Single(out, "counter", "bitacora_raw_logs_total", "Logs kept verbatim (no known event).", evm, static_cast<double>(s.raw_logs));
    Single(out, "counter", "bitacora_reorgs_total", "Reorgs rolled back in the pending overlay.", evm, static_cast<double>(s.reorgs));
    Single(out, "counter", "bitacora_upstream_inconsistent_total", "Upstream answers refused by the checks.", evm,
           static_cast<double>(s.inconsistent_answers));
    const bool seen = s.visible_latency_samples > 0;
    Summary(out, "bitacora_block_visible_latency_seconds",
            "Block returned by the node to its events pending (quantiles over the last 10,000).", evm,
            {{0.5, seen ? s.visible_latency_ms_p50 / 1e3 : std::nan("")},
             {0.99, seen ? s.visible_latency_ms_p99 / 1e3 : std::nan("")}},
            s.visible_latency_count, s.visible_latency_seconds_sum);
    const auto& r = s.reconcile;
    Single(out, "counter", "bitacora_reconciliation_drift_total", "Reconciliations that found a difference.", evm,
           static_cast<double>(r.drifts));
    Single(out, "counter", "bitacora_reconciliation_errors_total", "Reconciliations that could not be made.", evm,
           static_cast<double>(r.errors));
    Single(out, "gauge", "bitacora_reconciliation_ok", "1 when a reconciliation was made and the last one matched.", evm,
           r.checked && r.escrow_matches && r.shares_match ? 1.0 : 0.0);
    Single(out, "gauge", "bitacora_reconciliation_last_timestamp_seconds",
           "Unix time of the last reconciliation made (0: none yet in this process).", evm,
           static_cast<double>(r.checked_time));
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

namespace {

std::string AnchorerMetrics(const btc::AnchorerStatus& a)
{
    std::string out;
    Header(out, "bitacora_anchors_total", "counter", "Anchors that reached each state in this process.");
    for (const auto& [state, count] : {std::pair{"planned", a.anchors_planned}, std::pair{"broadcast", a.anchors_broadcast},
                                       std::pair{"confirmed", a.anchors_confirmed}, std::pair{"final", a.anchors_final},
                                       std::pair{"dropped", a.anchors_dropped}, std::pair{"abandoned", a.anchors_abandoned}}) {
        Sample(out, "bitacora_anchors_total", fmt::format("state=\"{}\"", state), static_cast<double>(count));
    }
    Header(out, "bitacora_anchor_errors_total", "counter", "Failed anchoring steps by reason.");
    for (const char* label : {"node_down", "auth", "insufficient_funds", "wallet", "pruned", "rpc", "http", "malformed"}) {
        const auto it = a.errors.find(label);
        Sample(out, "bitacora_anchor_errors_total", fmt::format("reason=\"{}\"", label),
               static_cast<double>(it == a.errors.end() ? 0 : it->second));
    }
    Single(out, "gauge", "bitacora_anchor_active_state",
           "State of the anchor in progress (0 none, 1 planned, 2 signed, 3 broadcast, 4 confirmed).", "",
           a.active ? static_cast<int>(a.active->state) : 0);
    Single(out, "gauge", "bitacora_anchor_final_tree_size", "Tree size of the latest final anchor.", "",
           static_cast<double>(a.latest_final ? a.latest_final->tree_size : 0));
    Single(out, "counter", "bitacora_anchor_fee_bumps_total", "Anchor fee bumps (BIP125).", "source=\"btc\"",
           static_cast<double>(a.fee_bumps));
    return out;
}

} // namespace

std::string BtcMetrics(const btc::BtcFollowerStatus& s, const btc::AnchorerStatus* a)
{
    std::string out;
    const char* btc = "source=\"btc\"";
    auto metric = [&](const char* type, const char* name, const char* help, double value) {
        Single(out, type, name, help, btc, value);
    };
    metric("gauge", "bitacora_btc_tip_height", "The last Bitcoin block processed.", static_cast<double>(s.tip_height.value_or(0)));
    metric("gauge", "bitacora_btc_node_height", "bitcoind's best height (0: not seen yet).",
           static_cast<double>(s.node_height.value_or(0)));
    metric("gauge", "bitacora_btc_lag_blocks", "Blocks between bitcoind's best block and the last processed (NaN: unknown).",
           s.node_height ? static_cast<double>(*s.node_height - std::min(*s.node_height, s.tip_height.value_or(0)))
                         : std::nan(""));
    metric("counter", "bitacora_btc_blocks_processed_total", "Bitcoin blocks processed.", static_cast<double>(s.blocks_processed));
    metric("counter", "bitacora_btc_reorgs_total", "Bitcoin reorgs walked back.", static_cast<double>(s.reorgs));
    metric("counter", "bitacora_btc_resyncs_total", "Resyncs asked by ZMQ gaps and disconnects.", static_cast<double>(s.resyncs));
    metric("counter", "bitacora_btc_zmq_messages_total", "ZMQ messages received from bitcoind.", static_cast<double>(s.zmq.messages));
    metric("counter", "bitacora_btc_zmq_gaps_total", "Gaps in ZMQ sequence numbers (messages bitcoind dropped).",
           static_cast<double>(s.zmq.gaps));
    metric("counter", "bitacora_btc_zmq_dropped_total", "ZMQ messages dropped here as malformed or oversized.",
           static_cast<double>(s.zmq.malformed));
    metric("counter", "bitacora_btc_zmq_disconnects_total", "ZMQ disconnects from bitcoind.", static_cast<double>(s.zmq.disconnects));
    metric("counter", "bitacora_btc_rpc_errors_total", "bitcoind calls that failed in the follower.", static_cast<double>(s.rpc_errors));
    const bool seen = !s.hint_latency_ms.empty();
    Summary(out, "bitacora_btc_zmq_to_processed_seconds", "ZMQ block message to block processed (quantiles over the latest 4,096).",
            btc, {{0.5, seen ? Percentile(s.hint_latency_ms, 0.5) / 1e3 : std::nan("")},
                  {0.99, seen ? Percentile(s.hint_latency_ms, 0.99) / 1e3 : std::nan("")}},
            s.hint_latency_count, s.hint_latency_seconds_sum);
    if (a != nullptr) out += AnchorerMetrics(*a);
    return out;
}

namespace {

// Each source's follower state as one series per state (1 for the current one), so that
// an alert needs no label guessing.
// Seconds since a head changed at `changed_unix_s` (none: never seen).
std::optional<uint64_t> HeadAgeSeconds(uint64_t changed_unix_s)
{
    if (changed_unix_s == 0) return std::nullopt;
    const uint64_t now = SystemClock().UnixSeconds();
    return now > changed_unix_s ? now - changed_unix_s : 0;
}

void SourceStateMetrics(std::string& out, const ApiSources& sources)
{
    // One status each: a status copies the follower's latency samples.
    const auto evm = sources.evm ? std::optional(sources.evm->status()) : std::nullopt;
    const auto btc = sources.btc ? std::optional(sources.btc->status()) : std::nullopt;
    Header(out, "bitacora_source_state", "gauge", "Each followed source's state: 1 for the current one.");
    if (evm) {
        const auto state = evm->state;
        using S = evm::FollowerStatus::State;
        for (const S s : {S::Starting, S::CatchingUp, S::Following, S::Failed, S::Stopped}) {
            Sample(out, "bitacora_source_state", fmt::format("source=\"evm\",state=\"{}\"", evm::FollowerStateName(s)),
                   s == state ? 1 : 0);
        }
    }
    if (btc) {
        const std::string& state = btc->state;
        for (const char* s : {"starting", "syncing", "synced", "node_down", "failed"}) {
            Sample(out, "bitacora_source_state", fmt::format("source=\"btc\",state=\"{}\"", s), state == s ? 1 : 0);
        }
    }
    Header(out, "bitacora_source_head_age_seconds", "gauge",
           "Seconds since each source's node last reported a new head (NaN: none seen yet).");
    auto age = [](uint64_t changed) {
        const auto seconds = HeadAgeSeconds(changed);
        return seconds ? static_cast<double>(*seconds) : std::nan("");
    };
    if (evm) Sample(out, "bitacora_source_head_age_seconds", "source=\"evm\"", age(evm->head_changed_unix_s));
    if (btc) Sample(out, "bitacora_source_head_age_seconds", "source=\"btc\"", age(btc->node_best_changed_unix_s));
}

// The error kinds each source's client can report, listed at 0 before they happen.
std::vector<std::string_view> KnownErrorKinds(std::string_view source)
{
    if (source == "btc") return {"transport", "auth", "http", "rpc", "malformed"};
    return {"transport", "http", "rate_limited", "rpc", "malformed", "too_large"};
}

// What the upstream monitors counted, per source and endpoint, as it happened.
void UpstreamMetrics(std::string& out, const std::vector<UpstreamMonitor::Snapshot>& snapshots,
                     const std::vector<UpstreamVerdict>& verdicts)
{
    auto per_endpoint = [&](const char* name, const char* type, const char* help, auto value) {
        Header(out, name, type, help);
        for (const auto& s : snapshots) {
            for (const auto& e : s.endpoints) {
                Sample(out, name, fmt::format("source=\"{}\",endpoint=\"{}\"", s.source, LabelValue(e.endpoint)), value(e));
            }
        }
    };
    per_endpoint("bitacora_upstream_requests_total", "counter", "Upstream HTTP exchanges ended, answered or not.",
                 [](const auto& e) { return static_cast<double>(e.requests); });
    Header(out, "bitacora_upstream_errors_total", "counter", "Upstream exchanges that failed, by kind, counted as they end.");
    for (const auto& s : snapshots) {
        for (const auto& e : s.endpoints) {
            std::map<std::string, uint64_t> kinds;
            for (const auto kind : KnownErrorKinds(s.source)) kinds[std::string(kind)] = 0;
            for (const auto& [kind, count] : e.errors) kinds[kind] = count;
            for (const auto& [kind, count] : kinds) {
                Sample(out, "bitacora_upstream_errors_total",
                       fmt::format("source=\"{}\",endpoint=\"{}\",kind=\"{}\"", s.source, LabelValue(e.endpoint), kind),
                       static_cast<double>(count));
            }
        }
    }
    per_endpoint("bitacora_upstream_hung_requests_total", "counter",
                 "Upstream requests logged as hung (no answer within -upstreamhang) while in flight.",
                 [](const auto& e) { return static_cast<double>(e.hung); });
    Header(out, "bitacora_upstream_request_duration_seconds", "histogram", "Upstream HTTP exchanges by duration.");
    for (const auto& s : snapshots) {
        for (const auto& e : s.endpoints) {
            const std::string labels = fmt::format("source=\"{}\",endpoint=\"{}\"", s.source, LabelValue(e.endpoint));
            uint64_t cumulative = 0;
            for (size_t i = 0; i < e.duration_counts.size(); ++i) {
                cumulative += e.duration_counts[i];
                const std::string le = i < UpstreamMonitor::kDurationBuckets.size()
                                           ? fmt::format("{}", UpstreamMonitor::kDurationBuckets[i])
                                           : std::string("+Inf");
                Sample(out, "bitacora_upstream_request_duration_seconds_bucket", fmt::format("{},le=\"{}\"", labels, le),
                       static_cast<double>(cumulative));
            }
            Sample(out, "bitacora_upstream_request_duration_seconds_sum", labels, e.duration_seconds_sum);
            Sample(out, "bitacora_upstream_request_duration_seconds_count", labels, static_cast<double>(cumulative));
        }
    }
    auto per_source = [&](const char* name, const char* help, auto value) {
        Header(out, name, "gauge", help);
        for (size_t i = 0; i < snapshots.size(); ++i) {
            Sample(out, name, fmt::format("source=\"{}\"", snapshots[i].source), value(snapshots[i], verdicts[i]));
        }
    };
    per_source("bitacora_upstream_in_flight_requests", "Upstream requests waiting for an answer now.",
               [](const auto& s, const auto&) { return static_cast<double>(s.in_flight); });
    per_source("bitacora_upstream_failing_seconds",
               "Seconds the source has been failing (errors or a hung request; 0: it answers).",
               [](const auto&, const auto& v) { return v.failing_s; });
    per_source("bitacora_upstream_last_answer_age_seconds", "Seconds since the source's node last answered (NaN: never).",
               [](const auto&, const auto& v) { return v.last_answer_s < 0 ? std::nan("") : v.last_answer_s; });
}

std::string ZmqPublisherMetrics(const rpc::ZmqPublisher& zmq)
{
    std::string out;
    Single(out, "counter", "bitacora_zmq_published_total", "Ledger events published on -zmqpubevent.", "",
           static_cast<double>(zmq.published()));
    Single(out, "counter", "bitacora_zmq_dropped_total",
           "Ledger events not published (our queue full, or the socket's high-water mark reached).", "",
           static_cast<double>(zmq.dropped()));
    return out;
}

} // namespace

std::vector<rpc::SourceHealth> SourcesHealth(const ApiSources& sources)
{
    const auto now = UpstreamMonitor::Clock::now();
    auto judge = [&](const std::shared_ptr<const UpstreamMonitor>& monitor) -> std::optional<UpstreamVerdict> {
        if (!monitor) return std::nullopt;
        return JudgeUpstream(monitor->snapshot(), now, monitor->hang_after(), sources.stall_after);
    };
    std::vector<rpc::SourceHealth> out;
    if (sources.evm) {
        const auto s = sources.evm->status();
        out.push_back({.name = "evm", .state = std::string(evm::FollowerStateName(s.state)),
                       .failed = s.state == evm::FollowerStatus::State::Failed, .error = s.error,
                       .upstream = judge(sources.evm_upstream), .head_age_s = HeadAgeSeconds(s.head_changed_unix_s),
                       .head_stall_s = sources.head_stall.evm_s});
    }
    if (sources.btc) {
        const auto s = sources.btc->status();
        out.push_back({.name = "btc", .state = s.state, .failed = s.state == "failed", .error = s.last_error,
                       .upstream = judge(sources.btc_upstream), .head_age_s = HeadAgeSeconds(s.node_best_changed_unix_s),
                       .head_stall_s = sources.head_stall.btc_s});
    }
    return out;
}

std::string SourcesMetrics(const ApiSources& sources)
{
    std::string out;
    if (sources.evm || sources.btc) SourceStateMetrics(out, sources);
    const auto now = UpstreamMonitor::Clock::now();
    std::vector<UpstreamMonitor::Snapshot> snapshots;
    std::vector<UpstreamVerdict> verdicts;
    for (const auto* monitor : {sources.evm_upstream.get(), sources.btc_upstream.get()}) {
        if (monitor == nullptr) continue;
        snapshots.push_back(monitor->snapshot());
        verdicts.push_back(JudgeUpstream(snapshots.back(), now, monitor->hang_after(), sources.stall_after));
    }
    if (!snapshots.empty()) UpstreamMetrics(out, snapshots, verdicts);
    if (sources.evm) out += FollowerMetrics(sources.evm->status());
    if (sources.btc) {
        const auto anchorer = sources.anchorer ? std::optional(sources.anchorer->status()) : std::nullopt;
        out += BtcMetrics(sources.btc->status(), anchorer ? &*anchorer : nullptr);
    }
    if (sources.zmq) out += ZmqPublisherMetrics(*sources.zmq);
    return out;
}

namespace {

// -rpcbind, -rpcport and the API's limits and credentials.
rpc::RpcServerOptions ServerOptions(const ArgsManager& args, uint16_t default_port, const std::filesystem::path& netdir)
{
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
    return options;
}

// What the methods reach beyond the ledger: backend keys, the sources' status, anchoring
// on request and backups.
rpc::MethodContext MethodsFor(const ArgsManager& args, const std::filesystem::path& netdir, ledger::Ledger& ledger,
                              const ApiSources& sources)
{
    rpc::MethodContext methods{.ledger = &ledger};
    for (const auto& text : args.GetList("backendkey")) {
        std::array<uint8_t, 32> key{};
        HexDecodeExact(text, key); // validated when parsed
        methods.backend_keys.push_back(key);
    }
    if (sources.evm != nullptr || sources.btc != nullptr || sources.zmq != nullptr) {
        methods.sources = [sources] {
            nlohmann::json out = nlohmann::json::object();
            if (sources.evm) out["evm"] = FollowerStatusJson(sources.evm->status());
            if (sources.btc) {
                const auto anchorer = sources.anchorer ? std::optional(sources.anchorer->status()) : std::nullopt;
                out["btc"] = BtcStatusJson(sources.btc->status(), anchorer ? &*anchorer : nullptr);
            }
            // The stream's epoch: a subscriber that sees it change knows the sequence restarted.
            if (sources.zmq) {
                out["zmq"] = {{"endpoint", sources.zmq->endpoint()}, {"epoch", sources.zmq->epoch()},
                              {"published", sources.zmq->published()}, {"dropped", sources.zmq->dropped()}};
            }
            return out;
        };
    }
    if (sources.anchorer != nullptr && sources.btc != nullptr) {
        methods.anchor_now = [sources, &ledger]() -> nlohmann::json {
            const uint64_t ticket = sources.anchorer->RequestNow();
            sources.btc->Wake();
            // The request is served on the follower's thread; bounded wait.
            const bool handled = sources.anchorer->WaitHandled(ticket, std::chrono::seconds(10));
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
    return methods;
}

} // namespace

Result<std::unique_ptr<rpc::RpcServer>> StartApi(const ArgsManager& args, uint16_t default_port,
                                                 const std::filesystem::path& netdir, ledger::Ledger& ledger,
                                                 ApiSources sources)
{
    if (!args.GetBool("server", true)) return std::unique_ptr<rpc::RpcServer>{};
    rpc::RpcServerOptions options = ServerOptions(args, default_port, netdir);
    rpc::MethodContext methods = MethodsFor(args, netdir, ledger, sources);
    auto extra_metrics = [sources]() -> std::string { return SourcesMetrics(sources); };
    if (sources.evm || sources.btc) options.sources_health = [sources] { return SourcesHealth(sources); };
    return rpc::RpcServer::Start(options, std::move(methods), extra_metrics, [] { return true; });
}

} // namespace bitacora
