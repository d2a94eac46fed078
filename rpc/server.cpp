#include "rpc/server.h"

#include "common/logging.h"
#include "common/sync.h"

#include <fmt/format.h>

#include <chrono>
#include <map>

namespace bitacora::rpc {
namespace {

using Clock = std::chrono::steady_clock;

struct MethodMetrics {
    uint64_t calls{0};
    double seconds{0};
};

// A 401 with a JSON-RPC error body, as its content type says: clients parse it (viem
// reported an empty one as "Unexpected end of JSON input") and keep its code.
HttpResponse Unauthorized(const std::string& message)
{
    const nlohmann::json body = {{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", ErrorObject(kAuthRequired, message)}};
    return {.status = 401, .body = body.dump(), .headers = {{"WWW-Authenticate", "Basic realm=\"jsonrpc\""}}};
}

} // namespace

struct RpcServer::Impl {
    RpcServerOptions options;
    Dispatcher dispatcher;
    Authenticator auth;
    std::function<std::string()> extra_metrics;
    std::function<bool()> ready;
    ledger::Ledger* ledger{nullptr}; // its health is part of GET /health
    std::unique_ptr<HttpServer> http;

    Mutex metrics_mutex;
    std::map<std::string, MethodMetrics> by_method GUARDED_BY(metrics_mutex);
    std::map<int, uint64_t> by_status GUARDED_BY(metrics_mutex);
    uint64_t auth_failures GUARDED_BY(metrics_mutex){0};

    explicit Impl(const RpcServerOptions& o) : options(o), dispatcher(o.limits) {}

    // One metrics update per request, under one lock.
    HttpResponse Handle(const HttpRequest& request) LOCKS_EXCLUDED(metrics_mutex)
    {
        std::vector<std::string> methods;
        double seconds = 0;
        HttpResponse response = Route(request, methods, seconds);
        LOCK(metrics_mutex);
        ++by_status[response.status];
        for (const auto& method : methods) {
            // Unknown names are counted together: a client must not grow this map.
            auto& m = by_method[dispatcher.Has(method) ? method : "(unknown)"];
            ++m.calls;
            m.seconds += seconds / static_cast<double>(methods.size());
        }
        return response;
    }

    HttpResponse Route(const HttpRequest& request, std::vector<std::string>& methods, double& seconds)
        LOCKS_EXCLUDED(metrics_mutex)
    {
        if (request.method == "GET" && request.path == "/health") return Health();
        if (request.method == "GET" && request.path == "/metrics") {
            return {.content_type = "text/plain; version=0.0.4", .body = Metrics()};
        }
        if (request.path != "/") return {.status = 404, .body = R"({"error":"not found"})"};
        if (request.method != "POST") {
            return {.status = 405, .body = R"({"error":"JSON-RPC requests are POSTed to /"})", .headers = {{"Allow", "POST"}}};
        }
        CallContext context{.authenticated = false, .reads_open = options.reads_open};
        if (!request.authorization.empty()) {
            if (!auth.Check(request.authorization)) {
                {
                    LOCK(metrics_mutex);
                    ++auth_failures;
                }
                LogWarning("RPC: incorrect credentials from {}", request.peer);
                return Unauthorized("incorrect credentials");
            }
            context.authenticated = true;
        } else if (!options.reads_open) {
            return Unauthorized("credentials required (HTTP Basic: -rpcauth or the cookie)");
        }
        const auto started = Clock::now();
        DispatchResult result = dispatcher.Handle(request.body, context);
        seconds = std::chrono::duration<double>(Clock::now() - started).count();
        methods = std::move(result.methods);
        return {.status = result.http_status, .body = std::move(result.body)};
    }

    // 503 while starting; then the ledger's and each source's state (rpc/health.h).
    HttpResponse Health() const
    {
        if (ready && !ready()) return {.status = 503, .body = R"({"status":"starting"})"};
        const auto health = ledger ? ledger->health() : ledger::LedgerHealth{};
        const auto sources = options.sources_health ? options.sources_health() : std::vector<SourceHealth>{};
        const HealthAnswer answer = DecideHealth(health, sources);
        return {.status = answer.http_status,
                .body = answer.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
    }

    // One metric family with a single sample, in Prometheus' text format.
    static void Family(std::string& out, std::string_view name, std::string_view type, std::string_view help,
                       uint64_t value)
    {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
    }

    static void FamilyDouble(std::string& out, std::string_view name, std::string_view type, std::string_view help,
                             double value)
    {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3:.3f}\n", name, help, type, value);
    }

    static int64_t UnixNowMs()
    {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    std::string HttpMetrics() const
    {
        std::string out;
        const HttpServerStats s = http ? http->stats() : HttpServerStats{};
        Family(out, "bitacora_rpc_http_requests_total", "counter", "HTTP requests received.", s.requests);
        out += "# HELP bitacora_rpc_rejected_total Requests refused before a worker saw them.\n# TYPE bitacora_rpc_rejected_total counter\n";
        out += fmt::format("bitacora_rpc_rejected_total{{reason=\"queue_full\"}} {}\n", s.rejected_queue_full);
        out += fmt::format("bitacora_rpc_rejected_total{{reason=\"framing\"}} {}\n", s.rejected_headers);
        out += fmt::format("bitacora_rpc_rejected_total{{reason=\"unsent_bytes\"}} {}\n", s.rejected_unsent_bytes);
        out += fmt::format("bitacora_rpc_rejected_total{{reason=\"client_not_allowed\"}} {}\n", s.rejected_clients);
        Family(out, "bitacora_rpc_connections_timed_out_total", "counter",
               "Connections closed because a request did not arrive whole within -rpctimeout.", s.timed_out_connections);
        Family(out, "bitacora_rpc_accept_errors_total", "counter",
               "accept() failures (out of descriptors); the listener pauses.", s.accept_errors);
        Family(out, "bitacora_rpc_listener_pauses_total", "counter",
               "Times the listener paused (connection limit or accept errors).", s.listener_pauses);
        Family(out, "bitacora_rpc_unsent_bytes", "gauge", "Answer bytes waiting for clients to read them.", s.unsent_bytes);
        Family(out, "bitacora_rpc_queue_depth", "gauge", "Requests waiting for a worker.", s.queue_depth);
        Family(out, "bitacora_rpc_connections", "gauge", "Open HTTP connections.", s.connections);
        return out;
    }

    // The counters of Handle and Route, copied under their lock.
    std::string CallMetrics() LOCKS_EXCLUDED(metrics_mutex)
    {
        std::string out;
        LOCK(metrics_mutex);
        out += "# HELP bitacora_rpc_calls_total JSON-RPC calls by method.\n# TYPE bitacora_rpc_calls_total counter\n";
        for (const auto& [method, m] : by_method) out += fmt::format("bitacora_rpc_calls_total{{method=\"{}\"}} {}\n", method, m.calls);
        out += "# HELP bitacora_rpc_call_seconds_total Time spent in JSON-RPC calls by method.\n# TYPE bitacora_rpc_call_seconds_total counter\n";
        for (const auto& [method, m] : by_method) {
            out += fmt::format("bitacora_rpc_call_seconds_total{{method=\"{}\"}} {:.6f}\n", method, m.seconds);
        }
        out += "# HELP bitacora_rpc_responses_total HTTP responses by status.\n# TYPE bitacora_rpc_responses_total counter\n";
        for (const auto& [status, count] : by_status) out += fmt::format("bitacora_rpc_responses_total{{status=\"{}\"}} {}\n", status, count);
        out += "# HELP bitacora_rpc_auth_failures_total Requests with wrong credentials.\n# TYPE bitacora_rpc_auth_failures_total counter\n";
        out += fmt::format("bitacora_rpc_auth_failures_total {}\n", auth_failures);
        return out;
    }

    // The ledger's and the followers' metrics are read without metrics_mutex: a slow
    // source must not hold up the requests that count themselves under it.
    std::string Metrics() LOCKS_EXCLUDED(metrics_mutex)
    {
        std::string out = HttpMetrics();
        out += CallMetrics();
        out += fmt::format("# HELP bitacora_build_info The daemon's version.\n# TYPE bitacora_build_info gauge\n"
                           "bitacora_build_info{{version=\"{}\"}} 1\n",
                           BITACORA_VERSION);
        if (ledger != nullptr) out += LedgerMetrics(*ledger);
        if (extra_metrics) out += extra_metrics();
        return out;
    }

    // From the ledger itself, so that a daemon that follows nothing (serving a ledger
    // read-only) exports them too.
    static std::string LedgerMetrics(const ledger::Ledger& ledger)
    {
        std::string out;
        // One series per state, 1 for the current one, so that an alert needs no label guessing.
        const auto state = ledger.health().state;
        out += "# HELP bitacora_ledger_health The ledger's health: ok, degraded (a read failed) or read-only (a "
               "write failed).\n# TYPE bitacora_ledger_health gauge\n";
        for (const auto s : {ledger::LedgerHealth::State::Ok, ledger::LedgerHealth::State::Degraded,
                             ledger::LedgerHealth::State::ReadOnly}) {
            out += fmt::format("bitacora_ledger_health{{state=\"{}\"}} {}\n", ledger::LedgerHealthName(s), s == state ? 1 : 0);
        }
        const uint64_t size = ledger.size();
        const int64_t now_ms = UnixNowMs();
        Family(out, "bitacora_ledger_size", "gauge", "Events in the final log (its tree size).", size);
        FamilyDouble(out, "bitacora_ledger_root_age_seconds", "gauge",
                     "Seconds since the root last changed (an append), or since the ledger was opened.",
                     static_cast<double>(std::max<int64_t>(0, now_ms - ledger.root_time_ms())) / 1e3);
        std::optional<ledger::AnchorRecord> final_anchor;
        try {
            final_anchor = LatestFinalAnchor(ledger);
        } catch (const ledger::LedgerReadError&) {
            return out; // the ledger is marked degraded: bitacora_ledger_health says so
        }
        Family(out, "bitacora_ledger_unanchored_events", "gauge",
               "Events in the log after the tree size of the latest final anchor (all of them without one).",
               size - std::min(size, final_anchor ? final_anchor->tree_size : 0));
        if (final_anchor) {
            FamilyDouble(out, "bitacora_anchor_last_final_age_seconds", "gauge",
                         "Seconds since the latest final anchor became final.",
                         std::max(0.0, static_cast<double>(now_ms) / 1e3 - static_cast<double>(final_anchor->updated_time)));
        }
        return out;
    }

    // The newest final anchor among the latest kRecentAnchorsMax (a final one is never
    // older than that: anchors are made one at a time).
    static std::optional<ledger::AnchorRecord> LatestFinalAnchor(const ledger::Ledger& ledger)
    {
        constexpr uint64_t kRecentAnchorsMax = 64;
        const auto latest = ledger.LatestAnchor();
        if (!latest) return std::nullopt;
        if (latest->state == ledger::AnchorState::Final) return latest;
        const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
        std::optional<ledger::AnchorRecord> found;
        for (auto& record : ledger.ListAnchors(from, kRecentAnchorsMax)) {
            if (record.state == ledger::AnchorState::Final) found = std::move(record);
        }
        return found;
    }
};

RpcServer::RpcServer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

Result<std::unique_ptr<RpcServer>> RpcServer::Start(const RpcServerOptions& options, MethodContext methods,
                                                    std::function<std::string()> extra_metrics, std::function<bool()> ready)
{
    auto impl = std::make_unique<Impl>(options);
    impl->extra_metrics = std::move(extra_metrics);
    impl->ready = std::move(ready);
    impl->ledger = methods.ledger;
    for (const auto& entry : options.rpcauth) {
        if (auto status = impl->auth.AddRpcAuth(entry); !status) return status.failure();
    }
    if (!options.cookie_path.empty()) {
        if (auto status = impl->auth.WriteCookie(options.cookie_path); !status) return status.failure();
    }
    RegisterMethods(impl->dispatcher, std::move(methods));
    Impl* raw = impl.get();
    auto http = HttpServer::Start(options.http, [raw](const HttpRequest& request) { return raw->Handle(request); });
    if (!http) {
        impl->auth.RemoveCookie();
        return http.failure();
    }
    impl->http = std::move(http.value());
    return std::unique_ptr<RpcServer>(new RpcServer(std::move(impl)));
}

RpcServer::~RpcServer() { Stop(); }

void RpcServer::Stop()
{
    if (m_impl->http) {
        m_impl->http->Stop();
        m_impl->http.reset();
    }
    m_impl->auth.RemoveCookie();
}

uint16_t RpcServer::port() const { return m_impl->http ? m_impl->http->bound_port() : 0; }

} // namespace bitacora::rpc
