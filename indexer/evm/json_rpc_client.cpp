#include "indexer/evm/json_rpc_client.h"

#include "common/json_bounds.h"
#include "common/logging.h"

#include <curl/curl.h>
#include <malloc.h>
#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <cctype>
#include <charconv>
#include <mutex>
#include <thread>

namespace bitacora::evm {
namespace {

using Clock = std::chrono::steady_clock; // time points only; the time itself comes from m_clock

void GlobalInitOnce()
{
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

struct Body {
    std::string data;
    size_t limit_bytes{0};
    bool over_limit{false};
};

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata)
{
    auto* body = static_cast<Body*>(userdata);
    const size_t bytes = size * nmemb;
    if (body->data.size() + bytes > body->limit_bytes) {
        body->over_limit = true;
        return 0; // makes curl fail the transfer with CURLE_WRITE_ERROR
    }
    body->data.append(ptr, bytes);
    return bytes;
}

// Ends a transfer in flight when the daemon stops, and tells the monitor it still waits
// (curl calls it about once a second even while no byte arrives).
int OnProgress(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t)
{
    const auto* watch = static_cast<const JsonRpcClient::ProgressWatch*>(userdata);
    if (watch->monitor != nullptr) watch->monitor->Progress(watch->token);
    return watch->stop != nullptr && watch->stop->stopped() ? 1 : 0;
}

std::string_view MonitorKind(RpcError::Kind kind)
{
    switch (kind) {
    case RpcError::Kind::Transport: return "transport";
    case RpcError::Kind::Http: return "http";
    case RpcError::Kind::RateLimited: return "rate_limited";
    case RpcError::Kind::Rpc: return "rpc";
    case RpcError::Kind::Malformed: return "malformed";
    case RpcError::Kind::TooLarge: return "too_large";
    case RpcError::Kind::Stopped: return "";
    }
    return "other";
}

struct Headers {
    std::optional<uint32_t> retry_after_s;
};

size_t ReadHeader(char* buffer, size_t size, size_t nitems, void* userdata)
{
    auto* headers = static_cast<Headers*>(userdata);
    const std::string_view line(buffer, size * nitems);
    constexpr std::string_view kName = "retry-after:";
    if (line.size() > kName.size() && Lower(line.substr(0, kName.size())) == kName) {
        std::string_view value = line.substr(kName.size());
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        uint32_t seconds = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
        // Only the delta-seconds form; an HTTP-date falls back to our own backoff.
        if (ec == std::errc() && end != value.data()) headers->retry_after_s = seconds;
    }
    return size * nitems;
}

// Parses one JSON-RPC response object into a result or an RpcError.
RpcResult<nlohmann::json> ParseResponseObject(nlohmann::json& object, const std::string& endpoint)
{
    if (!object.is_object()) return RpcError{.kind = RpcError::Kind::Malformed, .message = "response is not an object", .endpoint = endpoint};
    if (auto error = object.find("error"); error != object.end() && !error->is_null()) {
        RpcError rpc{.kind = RpcError::Kind::Rpc, .endpoint = endpoint};
        if (error->is_object()) {
            if (auto code = error->find("code"); code != error->end() && code->is_number_integer()) {
                rpc.code = code->get<int64_t>();
            }
            if (auto message = error->find("message"); message != error->end() && message->is_string()) {
                rpc.message = message->get<std::string>();
            }
            if (auto data = error->find("data"); data != error->end() && !data->is_null()) {
                // The answer's nesting was bounded before parsing, so dump() stays shallow.
                std::string text = data->is_string() ? data->get<std::string>() : data->dump();
                if (text.size() > 1024) text.resize(1024);
                rpc.message += " (" + text + ")";
            }
        } else {
            rpc.message = error->dump();
        }
        if (rpc.message.size() > 2048) rpc.message.resize(2048);
        rpc.message = log::EscapeMessage(rpc.message);
        if (IsRateLimitMessage(rpc.message) || rpc.code == 429) rpc.kind = RpcError::Kind::RateLimited;
        return rpc;
    }
    auto result = object.find("result");
    if (result == object.end()) {
        return RpcError{.kind = RpcError::Kind::Malformed, .message = "response has neither result nor error", .endpoint = endpoint};
    }
    return std::move(*result);
}

// Written out rather than built as a JSON value and dumped: that copied every request's
// params into a tree of maps first (6% of a simulator run). Keys in the order nlohmann
// sorts them, as before.
std::string BatchBody(const std::vector<RpcRequest>& requests, uint64_t first_id)
{
    std::string body = "[";
    for (size_t i = 0; i < requests.size(); ++i) {
        if (i > 0) body += ',';
        fmt::format_to(std::back_inserter(body), R"({{"id":{},"jsonrpc":"2.0","method":{},"params":{}}})", first_id + i,
                       nlohmann::json(requests[i].method).dump(), requests[i].params.dump());
    }
    body += ']';
    return body;
}

// "batch of 100 eth_getBlockByNumber" (the first call's method), for the log.
std::string BatchWhat(const std::vector<RpcRequest>& requests)
{
    if (requests.size() == 1) return requests.front().method;
    return fmt::format("batch of {} {}", requests.size(), requests.empty() ? "" : requests.front().method);
}

} // namespace

std::string_view RpcErrorKindName(RpcError::Kind kind)
{
    switch (kind) {
    case RpcError::Kind::Transport: return "transport";
    case RpcError::Kind::Http: return "http";
    case RpcError::Kind::RateLimited: return "rate-limited";
    case RpcError::Kind::Rpc: return "rpc";
    case RpcError::Kind::Malformed: return "malformed";
    case RpcError::Kind::Stopped: return "stopped";
    case RpcError::Kind::TooLarge: return "too-large";
    }
    return "?";
}

ErrorKind RpcError::error_kind() const
{
    if (kind == Kind::Stopped) return ErrorKind::Stopped;
    if (kind == Kind::TooLarge) return ErrorKind::TooLarge;
    return ErrorKind::Upstream;
}

std::string RpcError::ToString() const
{
    std::string out = fmt::format("{} error", RpcErrorKindName(kind));
    if (!endpoint.empty()) out += " from " + endpoint;
    if (http_status != 0) out += fmt::format(" (HTTP {})", http_status);
    if (kind == Kind::Rpc || kind == Kind::RateLimited) out += fmt::format(" code {}", code);
    if (!message.empty()) out += ": " + message;
    return out;
}

std::string RedactUrl(std::string_view url)
{
    std::string_view rest = url;
    std::string scheme;
    if (const auto pos = rest.find("://"); pos != std::string_view::npos) {
        scheme = std::string(rest.substr(0, pos + 3));
        rest.remove_prefix(pos + 3);
    }
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
    return scheme + std::string(rest);
}

bool IsRateLimitMessage(std::string_view message)
{
    const std::string lower = Lower(message);
    for (const char* phrase : {"rate limit", "ratelimit", "rate-limit", "too many requests", "exceeded the quota",
                               "capacity", "compute units", "throughput", "request limit"}) {
        if (lower.find(phrase) != std::string::npos) return true;
    }
    return false;
}

struct JsonRpcClient::Endpoint {
    std::string url;
    std::string name; // redacted
    CURL* curl{nullptr};
    curl_slist* headers{nullptr};
    uint32_t failures_in_row{0};
    Clock::time_point unhealthy_until{};

    ~Endpoint()
    {
        if (curl) curl_easy_cleanup(curl);
        if (headers) curl_slist_free_all(headers);
    }
};

JsonRpcClient::JsonRpcClient(RpcClientOptions options, StopSignal* stop)
    : m_options(std::move(options)), m_stop(stop != nullptr ? stop : &m_own_stop),
      m_clock(m_options.clock != nullptr ? m_options.clock : &SystemClock()),
      m_rng_state((m_options.jitter_seed != 0 ? m_options.jitter_seed
                                              : static_cast<uint64_t>(m_clock->Now().time_since_epoch().count())) | 1)
{
    m_watch = {.stop = m_stop, .monitor = m_options.monitor.get(), .token = 0};
    for (const auto& url : m_options.urls) {
        auto endpoint = std::make_unique<Endpoint>();
        endpoint->url = url;
        endpoint->name = RedactUrl(url);
        if (m_options.transport) {
            m_endpoints.push_back(std::move(endpoint)); // no curl handle: the transport answers
            continue;
        }
        GlobalInitOnce();
        endpoint->curl = curl_easy_init();
        endpoint->headers = curl_slist_append(nullptr, "Content-Type: application/json");
        endpoint->headers = curl_slist_append(endpoint->headers, "Accept: application/json");
        CURL* c = endpoint->curl;
        curl_easy_setopt(c, CURLOPT_URL, endpoint->url.c_str());
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, endpoint->headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); // every encoding curl decodes: gzip, deflate, br
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(m_options.timeout_ms));
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(m_options.connect_timeout_ms));
        curl_easy_setopt(c, CURLOPT_USERAGENT, m_options.user_agent.c_str());
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ReadHeader);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &m_watch);
        m_endpoints.push_back(std::move(endpoint));
    }
}

JsonRpcClient::~JsonRpcClient() = default;

RpcClientStats JsonRpcClient::stats() const { return m_stats; }

std::string JsonRpcClient::current_endpoint() const
{
    return m_endpoints.empty() ? std::string() : m_endpoints[m_current]->name;
}

void JsonRpcClient::DistrustCurrent(uint32_t cooldown_ms)
{
    if (m_endpoints.empty()) return;
    m_endpoints[m_current]->unhealthy_until = m_clock->Now() + std::chrono::milliseconds(cooldown_ms);
}

bool JsonRpcClient::SleepMs(uint64_t ms)
{
    return m_clock->SleepFor(std::chrono::milliseconds(ms), *m_stop);
}

std::optional<RpcError> JsonRpcClient::RetryOrGiveUp(const RpcError& error, uint32_t attempt)
{
    if (error.kind != RpcError::Kind::Malformed || attempt + 1 >= m_options.attempts_max) return error;
    if (!PenalizeCurrent(attempt)) return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
    return std::nullopt;
}

bool JsonRpcClient::PenalizeCurrent(uint32_t attempt)
{
    const uint64_t wait_ms = std::min<uint64_t>(uint64_t{m_options.backoff_initial_ms} << std::min(attempt, 10u),
                                                m_options.backoff_max_ms);
    m_endpoints[m_current]->unhealthy_until = m_clock->Now() + std::chrono::milliseconds(wait_ms);
    ++m_stats.retries;
    return !m_stop->stopped();
}

JsonRpcClient::Endpoint* JsonRpcClient::PickEndpoint()
{
    if (m_endpoints.empty()) return nullptr;
    const auto now = m_clock->Now();
    // The first healthy endpoint in configured order: the operator's preference.
    for (size_t i = 0; i < m_endpoints.size(); ++i) {
        if (m_endpoints[i]->unhealthy_until <= now) {
            if (i != m_current) {
                ++m_stats.failovers;
                LogInfo("EVM RPC: using endpoint {}", m_endpoints[i]->name);
                m_current = i;
            }
            return m_endpoints[i].get();
        }
    }
    // All cooling down: the one that recovers first.
    size_t best = 0;
    for (size_t i = 1; i < m_endpoints.size(); ++i) {
        if (m_endpoints[i]->unhealthy_until < m_endpoints[best]->unhealthy_until) best = i;
    }
    m_current = best;
    return m_endpoints[best].get();
}

RpcResult<std::string> JsonRpcClient::SendWatched(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max,
                                                  uint32_t& retry_after_ms)
{
    UpstreamMonitor* monitor = m_options.monitor.get();
    if (monitor == nullptr) return SendOnce(endpoint, body, answer_bytes_max, retry_after_ms);
    m_watch.token = monitor->Begin(endpoint.name, m_what);
    auto result = SendOnce(endpoint, body, answer_bytes_max, retry_after_ms);
    if (result) monitor->End(m_watch.token, "", "", true);
    else monitor->End(m_watch.token, MonitorKind(result.error().kind), result.error().ToString(), false);
    m_watch.token = 0;
    return result;
}

void JsonRpcClient::NoteMalformed(const RpcError& error)
{
    ++m_stats.malformed;
    if (m_options.monitor) m_options.monitor->Refused(error.endpoint, "malformed", error.ToString());
}

HttpReply JsonRpcClient::PostCurl(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max)
{
    Body response{.limit_bytes = answer_bytes_max};
    Headers headers;
    CURL* c = endpoint.curl;
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &headers);
    const CURLcode code = curl_easy_perform(c);
    HttpReply reply;
    if (code == CURLE_ABORTED_BY_CALLBACK) {
        reply.outcome = HttpReply::Outcome::Stopped;
    } else if (code != CURLE_OK) {
        reply.outcome = response.over_limit ? HttpReply::Outcome::TooLarge : HttpReply::Outcome::Transport;
        reply.error = curl_easy_strerror(code);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
        reply.retry_after_s = headers.retry_after_s;
    }
    reply.body = std::move(response.data);
    return reply;
}

RpcResult<std::string> JsonRpcClient::SendOnce(Endpoint& endpoint, const std::string& body, size_t answer_bytes_max,
                                               uint32_t& retry_after_ms)
{
    ++m_stats.requests;
    const auto started = m_clock->Now();
    HttpReply reply = m_options.transport ? m_options.transport->Post(endpoint.url, body, answer_bytes_max)
                                          : PostCurl(endpoint, body, answer_bytes_max);
    m_stats.latency_us_total +=
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(m_clock->Now() - started).count());
    m_stats.bytes_received += reply.body.size();
    if (reply.outcome == HttpReply::Outcome::Ok && reply.body.size() > answer_bytes_max) {
        reply.outcome = HttpReply::Outcome::TooLarge; // a transport that did not cut it off
    }
    switch (reply.outcome) {
    case HttpReply::Outcome::Ok: break;
    case HttpReply::Outcome::Stopped: return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
    case HttpReply::Outcome::TooLarge:
        ++m_stats.transport_errors;
        return RpcError{.kind = RpcError::Kind::TooLarge,
                        .message = fmt::format("answer larger than {} bytes (decoded)", answer_bytes_max),
                        .endpoint = endpoint.name};
    case HttpReply::Outcome::Transport:
        ++m_stats.transport_errors;
        return RpcError{.kind = RpcError::Kind::Transport, .message = reply.error, .endpoint = endpoint.name};
    }
    const long status = reply.status;
    Body response{.data = std::move(reply.body)};
    if (reply.retry_after_s) retry_after_ms = std::min<uint64_t>(*reply.retry_after_s * 1000ull, m_options.retry_after_max_ms);
    if (status == 429) {
        ++m_stats.rate_limited;
        return RpcError{.kind = RpcError::Kind::RateLimited, .http_status = status, .message = "too many requests",
                        .endpoint = endpoint.name};
    }
    if (status != 200) {
        // Some servers answer JSON-RPC errors with 4xx/5xx bodies; keep their message.
        ++m_stats.http_errors;
        std::string message = log::EscapeMessage(response.data.substr(0, 512));
        BoundedJson parsed = ParseJsonBounded(response.data);
        if (parsed.ok() && parsed.value.is_object()) {
            auto rpc = ParseResponseObject(parsed.value, endpoint.name);
            if (!rpc) message = rpc.error().message;
        }
        return RpcError{.kind = RpcError::Kind::Http, .http_status = status, .message = message, .endpoint = endpoint.name};
    }
    return std::move(response.data);
}

RpcResult<nlohmann::json> JsonRpcClient::Send(const std::string& body, size_t calls)
{
    auto raw = SendRaw(body, calls, m_options.response_bytes_max);
    if (!raw) return raw.error();
    // Nesting is bounded before parsing: an id or error nested 200,000 deep overflowed
    // the stack when it was compared or dumped.
    BoundedJson parsed = ParseJsonBounded(raw.value());
    if (!parsed.ok()) {
        RpcError error{.kind = RpcError::Kind::Malformed,
                       .message = parsed.status == JsonParseStatus::TooDeep
                                      ? fmt::format("response nests deeper than {} levels", kJsonDepthMax)
                                      : fmt::format("response is not JSON ({} bytes)", raw.value().size()),
                       .endpoint = current_endpoint()};
        NoteMalformed(error);
        return error;
    }
    return std::move(parsed.value);
}

RpcResult<std::string> JsonRpcClient::SendRaw(const std::string& body, size_t calls, size_t answer_bytes_max)
{
    if (m_endpoints.empty()) return RpcError{.kind = RpcError::Kind::Transport, .message = "no RPC endpoint configured"};
    m_stats.calls += calls;
    uint64_t backoff_ms = m_options.backoff_initial_ms;
    RpcError last;
    for (uint32_t attempt = 0; attempt < m_options.attempts_max; ++attempt) {
        if (m_stop->stopped()) return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
        Endpoint* endpoint = PickEndpoint();
        const auto wait = endpoint->unhealthy_until - m_clock->Now();
        if (wait > Clock::duration::zero()) {
            if (!SleepMs(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()))) {
                return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
            }
        }
        uint32_t retry_after_ms = 0;
        auto result = SendWatched(*endpoint, body, answer_bytes_max, retry_after_ms);
        if (result) {
            endpoint->failures_in_row = 0;
            return result;
        }
        last = result.error();
        if (last.kind == RpcError::Kind::Stopped) return last;
        ++endpoint->failures_in_row;
        if (last.kind == RpcError::Kind::TooLarge) {
            // Asking again cannot make it smaller: the caller asks for less. The endpoint
            // cools down, longer each time in a row, so that another one (if any) is asked
            // next: an endpoint that only ever sends too much cannot hold the follower.
            const uint64_t cooldown_ms = std::min<uint64_t>(
                uint64_t{m_options.backoff_initial_ms} << std::min(endpoint->failures_in_row, 10u), m_options.backoff_max_ms);
            endpoint->unhealthy_until = m_clock->Now() + std::chrono::milliseconds(cooldown_ms);
            malloc_trim(0); // the cut-off answer's buffer goes back to the system
            // Another endpoint may answer it within the cap (the first one may be lying):
            // each is asked at most once per call, then the caller asks for less.
            const auto now = m_clock->Now();
            const bool other = std::any_of(m_endpoints.begin(), m_endpoints.end(),
                                           [&](const auto& e) { return e->unhealthy_until <= now; });
            if (!other) return last;
            ++m_stats.failovers;
            continue;
        }
        // Full jitter (a uniform wait up to the backoff) spreads retries of many clients.
        m_rng_state ^= m_rng_state << 13;
        m_rng_state ^= m_rng_state >> 7;
        m_rng_state ^= m_rng_state << 17;
        uint64_t wait_ms = backoff_ms / 2 + m_rng_state % (backoff_ms / 2 + 1);
        if (retry_after_ms > 0) wait_ms = retry_after_ms;
        else if (last.kind == RpcError::Kind::RateLimited) wait_ms = std::max<uint64_t>(wait_ms, 1000);
        // An endpoint that keeps failing cools down so the next one takes over.
        endpoint->unhealthy_until = m_clock->Now() + std::chrono::milliseconds(wait_ms);
        backoff_ms = std::min<uint64_t>(backoff_ms * 2, m_options.backoff_max_ms);
        ++m_stats.retries;
        LogDebug(log::Category::Evm, "RPC attempt {} failed: {}; retrying in {} ms", attempt + 1, last.ToString(), wait_ms);
    }
    return last;
}

RpcResult<nlohmann::json> JsonRpcClient::Call(std::string_view method, nlohmann::json params)
{
    m_what = method;
    const uint64_t id = m_next_id++;
    const nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
    const std::string body = request.dump();
    // Malformed answers are retried like transport errors: a proxy may cut a body short.
    for (uint32_t attempt = 0;; ++attempt) {
        auto response = Send(body, 1);
        if (!response) {
            if (auto give_up = RetryOrGiveUp(response.error(), attempt)) return *give_up;
            continue;
        }
        const std::string endpoint = current_endpoint();
        if (!response->is_object() || response->value("id", nlohmann::json()) != nlohmann::json(id)) {
            RpcError error{.kind = RpcError::Kind::Malformed, .message = "answer is not a response to this request",
                           .endpoint = endpoint};
            NoteMalformed(error);
            if (attempt + 1 >= m_options.attempts_max) return error;
            if (!PenalizeCurrent(attempt)) return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
            continue;
        }
        auto result = ParseResponseObject(response.value(), endpoint);
        if (!result && (result.error().kind == RpcError::Kind::Rpc || result.error().kind == RpcError::Kind::RateLimited)) {
            ++m_stats.rpc_errors;
            if (m_options.monitor) m_options.monitor->CountAnswerError(endpoint, MonitorKind(result.error().kind));
        }
        return result;
    }
}

RpcResult<JsonRpcClient::RawAnswer> JsonRpcClient::CallRaw(std::string_view method, const nlohmann::json& params)
{
    m_what = method;
    const uint64_t id = m_next_id++;
    const nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
    const size_t answer_bytes_max = method == "eth_getLogs" ? m_options.logs_response_bytes_max : m_options.response_bytes_max;
    auto body = SendRaw(request.dump(), 1, answer_bytes_max);
    if (!body) return body.error();
    return RawAnswer{id, std::move(body.value())};
}

RpcResult<JsonRpcClient::RawBatch> JsonRpcClient::BatchRaw(const std::vector<RpcRequest>& requests)
{
    m_what = BatchWhat(requests);
    const uint64_t first_id = m_next_id;
    m_next_id += requests.size();
    auto body = SendRaw(BatchBody(requests, first_id), requests.size(), m_options.response_bytes_max);
    if (!body) return body.error();
    return RawBatch{first_id, std::move(body.value())};
}

RpcResult<std::vector<RpcResult<nlohmann::json>>> JsonRpcClient::Batch(const std::vector<RpcRequest>& requests)
{
    if (requests.empty()) return std::vector<RpcResult<nlohmann::json>>{};
    if (requests.size() > m_options.batch_requests_max) {
        return RpcError{.kind = RpcError::Kind::Malformed,
                        .message = fmt::format("batch of {} exceeds {}", requests.size(), m_options.batch_requests_max)};
    }
    m_what = BatchWhat(requests);
    const uint64_t first_id = m_next_id;
    m_next_id += requests.size();
    const std::string body = BatchBody(requests, first_id);
    for (uint32_t attempt = 0;; ++attempt) {
        auto response = Send(body, requests.size());
        if (!response) {
            if (auto give_up = RetryOrGiveUp(response.error(), attempt)) return *give_up;
            continue;
        }
        const std::string endpoint = current_endpoint();
        std::optional<RpcError> malformed;
        std::vector<std::optional<RpcResult<nlohmann::json>>> slots(requests.size());
        if (response->is_object() && response->contains("error")) {
            // A server that refuses batches answers one error object for all.
            auto error = ParseResponseObject(response.value(), endpoint);
            if (!error) return error.error();
            malformed = RpcError{.kind = RpcError::Kind::Malformed, .message = "batch answered with one object", .endpoint = endpoint};
        } else if (!response->is_array() || response->size() != requests.size()) {
            malformed = RpcError{.kind = RpcError::Kind::Malformed,
                                 .message = fmt::format("batch of {} answered with {}", requests.size(),
                                                        response->is_array() ? response->size() : 1),
                                 .endpoint = endpoint};
        } else {
            // Answers may come in any order; match them by id.
            for (auto& item : response.value()) {
                const auto id = item.is_object() ? item.value("id", nlohmann::json()) : nlohmann::json();
                if (!id.is_number_unsigned() || id.get<uint64_t>() < first_id || id.get<uint64_t>() >= first_id + requests.size() ||
                    slots[id.get<uint64_t>() - first_id]) {
                    malformed = RpcError{.kind = RpcError::Kind::Malformed, .message = "batch answer with an unknown or repeated id",
                                         .endpoint = endpoint};
                    break;
                }
                auto result = ParseResponseObject(item, endpoint);
                if (!result) {
                    ++m_stats.rpc_errors;
                    if (m_options.monitor) m_options.monitor->CountAnswerError(endpoint, MonitorKind(result.error().kind));
                }
                slots[id.get<uint64_t>() - first_id] = std::move(result);
            }
        }
        if (malformed) {
            NoteMalformed(*malformed);
            if (attempt + 1 >= m_options.attempts_max) return *malformed;
            if (!PenalizeCurrent(attempt)) return RpcError{.kind = RpcError::Kind::Stopped, .message = "stopping"};
            continue;
        }
        std::vector<RpcResult<nlohmann::json>> out;
        out.reserve(requests.size());
        for (auto& slot : slots) out.push_back(std::move(*slot));
        return out;
    }
}

} // namespace bitacora::evm
