// An Ethereum JSON-RPC client over libcurl: persistent connections (one easy handle
// per endpoint), per-request timeouts, gzip, batches, several endpoints with failover
// and health tracking, and retries with exponential backoff and full jitter that honour
// HTTP 429 and Retry-After.
//
// What is retried here: transport failures, HTTP errors, rate limits and malformed
// answers (a truncated body, a wrong id). What is not: a well-formed JSON-RPC error
// answer, which goes back to the caller, who knows what it means for that method
// (eth_getLogs range limits, for example).
//
// One client is used by one thread at a time.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "common/http_transport.h"
#include "common/upstream_monitor.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::evm {

struct RpcError {
    enum class Kind {
        Transport,   // connection refused, timeout, reset, a body cut short
        Http,        // a status other than 200
        RateLimited, // HTTP 429, or a JSON-RPC error that says so
        Rpc,         // a well-formed JSON-RPC error object
        Malformed,   // not JSON, not JSON-RPC, or an answer to another request
        Stopped,     // the client was asked to stop while waiting or transferring
        TooLarge,    // the decoded answer outgrew its cap (not retried: asking again cannot help)
    };
    Kind kind{Kind::Transport};
    int64_t code{0};      // JSON-RPC error code (Rpc, RateLimited)
    long http_status{0};
    std::string message;  // with the error's "data" appended when it has one
    std::string endpoint; // scheme://host:port, never credentials or paths (API keys live there)

    std::string ToString() const;
    // The code base's kind: Stopped, TooLarge (over our cap), else Upstream.
    ErrorKind error_kind() const;
};

std::string_view RpcErrorKindName(RpcError::Kind kind);

template <typename T>
using RpcResult = Result<T, RpcError>;

struct RpcRequest {
    std::string method;
    nlohmann::json params = nlohmann::json::array();
};

// The HTTP seam: common/http_transport.h.
using bitacora::HttpReply;
using bitacora::HttpTransport;

struct RpcClientOptions {
    std::vector<std::string> urls;         // tried in this order; the first healthy one is used
    uint32_t timeout_ms{30'000};           // whole request
    uint32_t connect_timeout_ms{5'000};
    uint32_t attempts_max{6};              // per call, over all endpoints
    uint32_t backoff_initial_ms{100};
    uint32_t backoff_max_ms{10'000};
    uint32_t retry_after_max_ms{60'000};   // a longer Retry-After is capped
    // Decoded bytes of one answer (gzip is counted inflated); past them the transfer is
    // cut off and the call fails with TooLarge. eth_getLogs answers get their own cap:
    // the follower halves its range when one is too large, as for a provider's limit.
    size_t response_bytes_max{16u << 20};
    size_t logs_response_bytes_max{32u << 20};
    size_t batch_requests_max{1'000};
    std::string user_agent{"bitacorad"};
    // Shared by every client of one follower (its fetchers, quorum peers): each exchange
    // is counted there per endpoint as it ends, and watched while it hangs. Null: none.
    std::shared_ptr<UpstreamMonitor> monitor;
    std::shared_ptr<HttpTransport> transport; // null: libcurl
    TimeSource* clock{nullptr};                    // null: SystemClock(); waits, timing and jitter's seed
    uint64_t jitter_seed{0};                  // 0: from the clock
};

struct RpcClientStats {
    uint64_t requests{0}; // HTTP requests sent
    uint64_t calls{0};    // JSON-RPC calls (a batch of n counts n)
    uint64_t retries{0};
    uint64_t transport_errors{0};
    uint64_t http_errors{0};
    uint64_t rate_limited{0};
    uint64_t malformed{0};
    uint64_t rpc_errors{0};
    uint64_t failovers{0};
    uint64_t bytes_received{0};
    uint64_t latency_us_total{0};
};

class JsonRpcClient {
public:
    // `stop` (null: never) ends waits and transfers at once, so that shutdown never
    // waits out a backoff.
    JsonRpcClient(RpcClientOptions options, StopSignal* stop);
    ~JsonRpcClient();
    JsonRpcClient(const JsonRpcClient&) = delete;
    JsonRpcClient& operator=(const JsonRpcClient&) = delete;

    RpcResult<nlohmann::json> Call(std::string_view method, nlohmann::json params = nlohmann::json::array());
    // The same exchange, but the body comes back unparsed (for answers of tens of MB that
    // a faster parser reads): transport and HTTP errors are retried, nothing else is checked.
    struct RawAnswer {
        uint64_t id{0};
        std::string body;
    };
    RpcResult<RawAnswer> CallRaw(std::string_view method, const nlohmann::json& params);
    // A batch whose body comes back unparsed; its ids are first_id, first_id + 1, ...
    struct RawBatch {
        uint64_t first_id{0};
        std::string body;
    };
    RpcResult<RawBatch> BatchRaw(const std::vector<RpcRequest>& requests);
    // One HTTP request; the results in request order, each its own value or error.
    RpcResult<std::vector<RpcResult<nlohmann::json>>> Batch(const std::vector<RpcRequest>& requests);

    // Read by the thread that uses the client.
    RpcClientStats stats() const;
    // The endpoint calls go to now (scheme://host:port).
    std::string current_endpoint() const;
    // Its last answer was well-formed but failed verification (a lie): the next calls go
    // to another endpoint, if there is one, for cooldown_ms.
    void DistrustCurrent(uint32_t cooldown_ms);

    // What curl's progress callback sees of the transfer in flight.
    struct ProgressWatch {
        const StopSignal* stop{nullptr};
        UpstreamMonitor* monitor{nullptr};
        uint64_t token{0};
    };

private:
    struct Endpoint;
    RpcResult<nlohmann::json> Send(const std::string& body, size_t calls);
    RpcResult<std::string> SendRaw(const std::string& body, size_t calls, size_t answer_bytes_max);
    HttpReply PostCurl(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max);
    RpcResult<std::string> SendOnce(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max,
                                    uint32_t& retry_after_ms);
    // SendOnce under the monitor's eye (if any).
    RpcResult<std::string> SendWatched(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max,
                                       uint32_t& retry_after_ms);
    // A 200 answer that is not JSON-RPC: counted against the endpoint that sent it.
    void NoteMalformed(const RpcError& error);
    Endpoint* PickEndpoint();
    // A wrong answer from the endpoint in use: cool it down before the next attempt.
    bool PenalizeCurrent(uint32_t attempt);
    // After a failed send: the error to give up with, or nullopt to ask again (a
    // malformed answer with attempts left).
    std::optional<RpcError> RetryOrGiveUp(const RpcError& error, uint32_t attempt);
    bool SleepMs(uint64_t ms);

    RpcClientOptions m_options;
    StopSignal m_own_stop; // when the caller gave none
    StopSignal* m_stop;
    TimeSource* m_clock;
    std::vector<std::unique_ptr<Endpoint>> m_endpoints;
    size_t m_current{0};
    uint64_t m_next_id{1};
    ProgressWatch m_watch;
    std::string m_what; // the call in progress, for the monitor: "eth_getLogs", "batch of 100 eth_getBlockByNumber"
    uint64_t m_rng_state;
    RpcClientStats m_stats;
};

// "https://user:key@host:8545/v2/KEY" -> "https://host:8545": for logs.
std::string RedactUrl(std::string_view url);

// Whether a JSON-RPC error message says "slow down" rather than anything about the data.
bool IsRateLimitMessage(std::string_view message);

} // namespace bitacora::evm
