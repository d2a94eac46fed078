#include "indexer/btc/bitcoind_rpc.h"

#include "common/json_bounds.h"
#include "common/logging.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <mutex>

namespace bitacora::btc {
namespace {

struct Body {
    std::string data;
    size_t max{0};
    bool too_large{false};
};

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata)
{
    auto* body = static_cast<Body*>(userdata);
    const size_t n = size * nmemb;
    if (body->data.size() + n > body->max) {
        body->too_large = true;
        return 0; // makes curl fail the transfer
    }
    body->data.append(ptr, n);
    return n;
}

// Ends a transfer when the daemon stops; tells the monitor the call still waits.
int Progress(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t)
{
    const auto* watch = static_cast<const BitcoindRpc::ProgressWatch*>(userdata);
    if (watch->monitor != nullptr) watch->monitor->Progress(watch->token);
    return (*watch->stopping && (*watch->stopping)()) ? 1 : 0;
}

// The monitor's error label, and whether bitcoind answered at all.
std::pair<std::string_view, bool> MonitorOutcome(const BtcError& error)
{
    switch (error.kind) {
    case BtcError::Kind::Transport: return {"transport", false};
    case BtcError::Kind::Auth: return {"auth", false};
    case BtcError::Kind::Http: return {"http", false};
    case BtcError::Kind::Rpc: return {"rpc", true};
    case BtcError::Kind::Malformed: return {"malformed", false};
    case BtcError::Kind::Stopped: return {"", false};
    }
    return {"other", false};
}

} // namespace

std::string_view BtcError::Label() const
{
    switch (kind) {
    case Kind::Transport: return "node_down";
    case Kind::Auth: return "auth";
    case Kind::Http: return "http";
    case Kind::Malformed: return "malformed";
    case Kind::Stopped: return "stopped";
    case Kind::Rpc: break;
    }
    if (pruned()) return "pruned";
    if (insufficient_funds()) return "insufficient_funds";
    if (wallet_missing()) return "wallet";
    if (code == kRpcInWarmup) return "node_down";
    return "rpc";
}

ErrorKind BtcError::error_kind() const
{
    if (kind == Kind::Stopped) return ErrorKind::Stopped;
    if (not_found()) return ErrorKind::NotFound;
    return ErrorKind::Upstream;
}

std::string BtcError::ToString() const
{
    switch (kind) {
    case Kind::Transport: return "bitcoind unreachable: " + message;
    case Kind::Auth: return "bitcoind refused our credentials (HTTP 401): " + message;
    case Kind::Http: return fmt::format("bitcoind answered HTTP {}: {}", http_status, message);
    case Kind::Rpc: return fmt::format("bitcoind error {}: {}", code, message);
    case Kind::Malformed: return "bitcoind answer malformed: " + message;
    case Kind::Stopped: return "stopped";
    }
    return message;
}

bool ParseHostPort(std::string_view text, std::string& host, uint16_t& port)
{
    if (text.empty()) return false;
    std::string_view port_text;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return false;
        host = std::string(text.substr(1, close - 1));
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return false;
            port_text = text.substr(close + 2);
        }
    } else {
        const auto colon = text.rfind(':');
        if (colon != std::string_view::npos && text.find(':') == colon) {
            host = std::string(text.substr(0, colon));
            port_text = text.substr(colon + 1);
        } else {
            host = std::string(text);
        }
    }
    if (host.empty()) return false;
    if (!port_text.empty()) {
        unsigned value = 0;
        for (const char c : port_text) {
            if (c < '0' || c > '9') return false;
            value = value * 10 + static_cast<unsigned>(c - '0');
            if (value > 65535) return false;
        }
        if (value == 0) return false;
        port = static_cast<uint16_t>(value);
    }
    return true;
}

BitcoindRpc::BitcoindRpc(BitcoindRpcOptions options, std::function<bool()> stopping)
    : m_options(std::move(options)), m_stopping(std::move(stopping)),
      m_endpoint(fmt::format("http://{}:{}", m_options.host.find(':') != std::string::npos ? "[" + m_options.host + "]"
                                                                                              : m_options.host,
                             m_options.port))
{
    LOCK(m_mutex);
    m_watch = {.stopping = &m_stopping, .monitor = m_options.monitor.get(), .token = 0};
    if (m_options.transport) return; // no curl handle: the transport answers
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    m_curl = curl_easy_init();
}

BitcoindRpc::~BitcoindRpc()
{
    LOCK(m_mutex);
    if (m_curl != nullptr) curl_easy_cleanup(static_cast<CURL*>(m_curl));
}

BitcoindRpcStats BitcoindRpc::stats() const
{
    LOCK(m_mutex);
    return m_stats;
}

std::optional<std::string> BitcoindRpc::Credentials(bool reload)
{
    if (!m_options.user.empty()) return m_options.user + ":" + m_options.password;
    if (!reload && !m_credentials.empty()) return m_credentials;
    std::ifstream file(m_options.cookie_file);
    std::string line;
    if (!file || !std::getline(file, line) || line.find(':') == std::string::npos) return std::nullopt;
    m_credentials = line;
    return m_credentials;
}

namespace {
nlohmann::json ParamArray(std::initializer_list<nlohmann::json> params)
{
    nlohmann::json array = nlohmann::json::array();
    for (const auto& param : params) array.push_back(param);
    return array;
}

// As curl_easy_escape: every byte but A-Z a-z 0-9 - . _ ~ as %XX (no curl handle needed).
std::string EscapeUrlPart(std::string_view text)
{
    std::string out;
    out.reserve(text.size() * 3);
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved) {
            out.push_back(c);
        } else {
            out += fmt::format("%{:02X}", byte);
        }
    }
    return out;
}
} // namespace

BtcResult<nlohmann::json> BitcoindRpc::Call(std::string_view method, std::initializer_list<nlohmann::json> list)
{
    const nlohmann::json params = ParamArray(list);
    LOCK(m_mutex);
    return Send("/", method, params);
}

BtcResult<nlohmann::json> BitcoindRpc::WalletCall(std::string_view method, std::initializer_list<nlohmann::json> list)
{
    const nlohmann::json params = ParamArray(list);
    LOCK(m_mutex);
    if (m_options.wallet.empty()) return Send("/", method, params);
    const std::string path = "/wallet/" + EscapeUrlPart(m_options.wallet);
    auto answer = Send(path, method, params);
    // bitcoind forgets a wallet on restart unless it was loaded with load_on_startup, so
    // "not loaded" (-18) gets one loadwallet and one retry; a wallet that cannot be
    // loaded (absent, locked by another node) keeps the original error, with why.
    if (answer || answer.error().kind != BtcError::Kind::Rpc || answer.error().code != kRpcWalletNotFound) return answer;
    auto loaded = Send("/", "loadwallet", nlohmann::json::array({m_options.wallet}));
    if (!loaded && !(loaded.error().kind == BtcError::Kind::Rpc && loaded.error().code == kRpcWalletAlreadyLoaded)) {
        BtcError error = answer.error();
        error.message += fmt::format(" (loadwallet \"{}\" failed: {})", m_options.wallet, loaded.error().message);
        return error;
    }
    LogInfo("Loaded wallet \"{}\" on bitcoind, which had not loaded it (it does not reload wallets on restart "
            "unless they were loaded with load_on_startup)", m_options.wallet);
    ++m_stats.wallet_loads;
    return Send(path, method, params);
}

BtcResult<nlohmann::json> BitcoindRpc::Send(const std::string& path, std::string_view method, const nlohmann::json& params)
{
    UpstreamMonitor* monitor = m_options.monitor.get();
    if (monitor == nullptr) return SendUnwatched(path, method, params);
    m_watch.token = monitor->Begin(m_endpoint, method);
    auto result = SendUnwatched(path, method, params);
    if (result) {
        monitor->End(m_watch.token, "", "", true);
    } else {
        const auto [kind, answered] = MonitorOutcome(result.error());
        monitor->End(m_watch.token, kind, result.error().ToString(), answered);
    }
    m_watch.token = 0;
    return result;
}

namespace {

// bitcoind answers JSON-RPC 2.0 errors with HTTP 200, and legacy errors with 404 or 500
// and a JSON body: the body is read whenever it is JSON.
BtcResult<nlohmann::json> ParseAnswer(long status, const std::string& body, std::string_view method, uint64_t id)
{
    // Nesting is bounded before parsing: a deep id or error would overflow the stack
    // when copied or dumped.
    BoundedJson parsed = ParseJsonBounded(body);
    if (parsed.status == JsonParseStatus::TooDeep) {
        return BtcError{BtcError::Kind::Malformed, 0, status,
                        fmt::format("{} answer nests deeper than {} levels", method, kJsonDepthMax)};
    }
    nlohmann::json& answer = parsed.value;
    if (!parsed.ok() || !answer.is_object()) {
        if (status != 200) return BtcError{BtcError::Kind::Http, 0, status, log::EscapeMessage(body.substr(0, 200))};
        return BtcError{BtcError::Kind::Malformed, 0, status,
                        fmt::format("{} answer is not a JSON object ({} bytes)", method, body.size())};
    }
    if (answer.contains("error") && !answer["error"].is_null()) {
        const auto& error = answer["error"];
        BtcError e{BtcError::Kind::Rpc, 0, status, error.dump()};
        if (error.is_object()) {
            if (error.contains("code") && error["code"].is_number_integer()) e.code = error["code"].get<int>();
            if (error.contains("message") && error["message"].is_string()) e.message = error["message"].get<std::string>();
        }
        return e;
    }
    if (!answer.contains("result") || answer.value("id", nlohmann::json()) != nlohmann::json(id)) {
        return BtcError{BtcError::Kind::Malformed, 0, status, fmt::format("{} answer has no result for id {}", method, id)};
    }
    return std::move(answer["result"]);
}

// The reply of one exchange (curl's or a transport's) as the caller sees it; 401 is the
// caller's (it may read the cookie again).
BtcResult<nlohmann::json> ReadReply(const HttpReply& reply, std::string_view method, uint64_t id,
                                    size_t answer_bytes_max, const std::string& endpoint)
{
    HttpReply::Outcome outcome = reply.outcome;
    if (outcome == HttpReply::Outcome::Ok && reply.body.size() > answer_bytes_max) {
        outcome = HttpReply::Outcome::TooLarge; // a transport that did not cut it off
    }
    switch (outcome) {
    case HttpReply::Outcome::Ok: break;
    case HttpReply::Outcome::Stopped: return BtcError{BtcError::Kind::Stopped, 0, 0, "stopping"};
    case HttpReply::Outcome::TooLarge:
        return BtcError{BtcError::Kind::Malformed, 0, reply.status,
                        fmt::format("{} answer larger than {} bytes", method, answer_bytes_max)};
    case HttpReply::Outcome::Transport:
        return BtcError{BtcError::Kind::Transport, 0, 0, fmt::format("{}: {}", endpoint, reply.error)};
    }
    return ParseAnswer(reply.status, reply.body, method, id);
}

} // namespace

HttpReply BitcoindRpc::PostCurl(const std::string& url, const std::string& body, const std::string& credentials,
                                size_t answer_bytes_max)
{
    CURL* c = static_cast<CURL*>(m_curl);
    Body response{.data = {}, .max = answer_bytes_max};
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    // A fresh connection per call, as bitcoin-cli does: on a reused one, a response
    // written in two segments met delayed ACKs and took 40 ms more now and then
    // (bench/btc_zmq_latency.py: p99 53 ms with reuse, 5.6 ms without).
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERPWD, credentials.c_str());
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(m_options.timeout_ms));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(m_options.connect_timeout_ms));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, Progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &m_watch);
    const CURLcode code = curl_easy_perform(c);
    curl_slist_free_all(headers);
    HttpReply reply;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
    if (code == CURLE_ABORTED_BY_CALLBACK) {
        reply.outcome = HttpReply::Outcome::Stopped;
    } else if (code != CURLE_OK) {
        reply.outcome = response.too_large ? HttpReply::Outcome::TooLarge : HttpReply::Outcome::Transport;
        reply.error = curl_easy_strerror(code);
    }
    reply.body = std::move(response.data);
    return reply;
}

BtcResult<nlohmann::json> BitcoindRpc::SendUnwatched(const std::string& path, std::string_view method,
                                                     const nlohmann::json& params)
{
    if (!m_options.transport && m_curl == nullptr) {
        return BtcError{BtcError::Kind::Transport, 0, 0, "libcurl could not be initialised"};
    }
    const uint64_t id = m_next_id++;
    const std::string body =
        nlohmann::json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}}.dump();
    const std::string url = m_endpoint + path;
    const size_t answer_bytes_max = method == "getblock" ? m_options.block_response_bytes_max : m_options.response_bytes_max;
    const auto started = std::chrono::steady_clock::now();
    ++m_stats.calls;
    // A stale cookie (bitcoind restarted) gets one more try with the file read again.
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (m_stopping && m_stopping()) return BtcError{BtcError::Kind::Stopped, 0, 0, "stopping"};
        std::optional<std::string> credentials;
        if (!m_options.transport) {
            credentials = Credentials(attempt > 0);
            if (!credentials) {
                ++m_stats.errors;
                return BtcError{BtcError::Kind::Auth, 0, 0,
                                fmt::format("cannot read the cookie file {} (is bitcoind running with this datadir?)",
                                            m_options.cookie_file.string())};
            }
        }
        const HttpReply reply = m_options.transport ? m_options.transport->Post(url, body, answer_bytes_max)
                                                    : PostCurl(url, body, *credentials, answer_bytes_max);
        m_stats.latency_us_total += static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
        if (reply.outcome == HttpReply::Outcome::Ok && reply.status == 401) {
            if (attempt == 0 && m_options.user.empty()) continue;
            ++m_stats.errors;
            return BtcError{BtcError::Kind::Auth, 0, reply.status,
                            m_options.user.empty() ? "the cookie in " + m_options.cookie_file.string() + " was refused"
                                                   : "-btcrpcuser/-btcrpcpassword refused"};
        }
        auto result = ReadReply(reply, method, id, answer_bytes_max, m_endpoint);
        if (!result && result.error().kind != BtcError::Kind::Stopped) ++m_stats.errors;
        return result;
    }
    return BtcError{BtcError::Kind::Auth, 0, 401, "credentials refused"};
}

} // namespace bitacora::btc
