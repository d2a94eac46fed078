// A bitcoind JSON-RPC client: cookie file (re-read when bitcoind restarts and writes a
// new one) or -rpcuser/-rpcpassword, wallet calls on /wallet/<name>, and bitcoind's
// errors mapped to what they mean for us (as captured from a real node in
// ../shared/fixtures/bitcoind/rpc.jsonl). No retries here: the follower and the
// anchorer decide what to do with each error and when to try again.
// One client is used by one thread at a time (calls are serialized by a mutex).
#pragma once

#include "common/result.h"
#include "common/http_transport.h"
#include "common/sync.h"
#include "common/upstream_monitor.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace bitacora::btc {

// bitcoind's RPC error codes we act on (src/rpc/protocol.h).
enum RpcCode : int {
    kRpcMiscError = -1,            // also "Block not available (pruned data)"
    kRpcTypeError = -3,
    kRpcWalletError = -4,          // also "Insufficient funds" from fundrawtransaction
    kRpcInvalidAddressOrKey = -5,  // unknown block or transaction
    kRpcWalletInsufficientFunds = -6,
    kRpcInvalidParameter = -8,
    kRpcVerifyError = -25,         // missing or spent inputs
    kRpcVerifyRejected = -26,      // mempool policy (e.g. RBF fee too low)
    kRpcVerifyAlreadyInChain = -27,
    kRpcInWarmup = -28,
    kRpcWalletNotFound = -18,
    kRpcWalletNotSpecified = -19,
    kRpcWalletAlreadyLoaded = -35,
    kRpcMethodNotFound = -32601,
};

struct BtcError {
    enum class Kind {
        Transport, // refused, timeout, reset: the node is down or busy
        Auth,      // HTTP 401: wrong or stale credentials
        Http,      // another HTTP status with no JSON-RPC body
        Rpc,       // a JSON-RPC error object from bitcoind
        Malformed, // not JSON-RPC
        Stopped,
    };
    Kind kind{Kind::Transport};
    int code{0};
    long http_status{0};
    std::string message;

    bool pruned() const { return kind == Kind::Rpc && code == kRpcMiscError && message.find("pruned") != std::string::npos; }
    bool not_found() const { return kind == Kind::Rpc && code == kRpcInvalidAddressOrKey; }
    bool insufficient_funds() const
    {
        return kind == Kind::Rpc && (code == kRpcWalletInsufficientFunds ||
                                     (code == kRpcWalletError && (message.find("nsufficient funds") != std::string::npos ||
                                                                   message.find("exceeds your balance") != std::string::npos)));
    }
    bool wallet_missing() const { return kind == Kind::Rpc && (code == kRpcWalletNotFound || code == kRpcWalletNotSpecified); }
    bool node_unreachable() const { return kind == Kind::Transport || kind == Kind::Auth || (kind == Kind::Rpc && code == kRpcInWarmup); }
    // A short label for metrics: node_down, auth, pruned, insufficient_funds, wallet, rpc, http, malformed.
    std::string_view Label() const;
    // The code base's kind: Stopped, NotFound (-5: no such block or transaction), else Upstream.
    ErrorKind error_kind() const;
    std::string ToString() const;
};

template <typename T>
using BtcResult = Result<T, BtcError>;

struct BitcoindRpcOptions {
    std::string host{"127.0.0.1"};
    uint16_t port{8332};
    std::filesystem::path cookie_file; // used when user is empty
    std::string user;
    std::string password;
    std::string wallet;                // empty: bitcoind's only loaded wallet ("/")
    uint32_t timeout_ms{30'000};
    uint32_t connect_timeout_ms{3'000};
    // Decoded answer bytes per call; a larger (or endless, or gzip-inflated) answer is
    // cut off there and refused, never retried. A block is at most 4 MB, so 8 MB of hex.
    size_t response_bytes_max{4u << 20};
    size_t block_response_bytes_max{10u << 20}; // getblock
    // Every exchange counted there as it ends, and watched while it hangs. Null: none.
    std::shared_ptr<UpstreamMonitor> monitor;
    // Every exchange (wallet paths included) goes through it, with no credentials: the
    // simulator's node (tests/sim/sim_btc.h). Null: libcurl.
    std::shared_ptr<HttpTransport> transport; // null: libcurl
};

struct BitcoindRpcStats {
    uint64_t calls{0};
    uint64_t errors{0};
    uint64_t latency_us_total{0};
    uint64_t wallet_loads{0}; // loadwallet after "not loaded" (-18)
};

class BitcoindRpc {
public:
    BitcoindRpc(BitcoindRpcOptions options, std::function<bool()> stopping = {});
    ~BitcoindRpc();
    BitcoindRpc(const BitcoindRpc&) = delete;
    BitcoindRpc& operator=(const BitcoindRpc&) = delete;

    // Positional parameters. (An initializer list, not a json: `json{x}` of one json
    // element is a copy of x under clang but an array under gcc.)
    BtcResult<nlohmann::json> Call(std::string_view method, std::initializer_list<nlohmann::json> params = {})
        LOCKS_EXCLUDED(m_mutex);
    // The same on the wallet's path (/wallet/<name>).
    BtcResult<nlohmann::json> WalletCall(std::string_view method, std::initializer_list<nlohmann::json> params = {})
        LOCKS_EXCLUDED(m_mutex);

    BitcoindRpcStats stats() const LOCKS_EXCLUDED(m_mutex);
    // What curl's progress callback sees of the transfer in flight.
    struct ProgressWatch {
        const std::function<bool()>* stopping{nullptr};
        UpstreamMonitor* monitor{nullptr};
        uint64_t token{0};
    };
    std::string endpoint() const { return m_endpoint; }

private:
    BtcResult<nlohmann::json> Send(const std::string& path, std::string_view method, const nlohmann::json& params)
        EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    BtcResult<nlohmann::json> SendUnwatched(const std::string& path, std::string_view method, const nlohmann::json& params)
        EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    // One POST through libcurl with these credentials ("user:password").
    HttpReply PostCurl(const std::string& url, const std::string& body, const std::string& credentials,
                       size_t answer_bytes_max) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    std::optional<std::string> Credentials(bool reload) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);

    const BitcoindRpcOptions m_options;
    const std::function<bool()> m_stopping;
    const std::string m_endpoint;
    mutable Mutex m_mutex;
    void* m_curl GUARDED_BY(m_mutex){nullptr}; // null with a transport
    std::string m_credentials GUARDED_BY(m_mutex);
    uint64_t m_next_id GUARDED_BY(m_mutex){1};
    BitcoindRpcStats m_stats GUARDED_BY(m_mutex);
    ProgressWatch m_watch GUARDED_BY(m_mutex);
};

// A member of a node's answer, when the answer is an object holding it with the JSON type
// T needs (string, bool, int64_t, uint64_t); none otherwise. A lying node's answer of the
// wrong shape must become an error, never an exception on the follower's thread.
template <typename T>
std::optional<T> AnswerMember(const nlohmann::json& answer, std::string_view name)
{
    if (!answer.is_object()) return std::nullopt;
    const auto it = answer.find(name);
    if (it == answer.end()) return std::nullopt;
    if constexpr (std::is_same_v<T, std::string>) {
        if (!it->is_string()) return std::nullopt;
    } else if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) return std::nullopt;
    } else if constexpr (std::is_same_v<T, uint64_t>) {
        if (!it->is_number_unsigned()) return std::nullopt;
    } else {
        static_assert(std::is_same_v<T, int64_t>, "AnswerMember: string, bool, int64_t or uint64_t");
        if (!it->is_number_integer()) return std::nullopt;
    }
    return it->get<T>();
}

// "host:port" or "[v6]:port" or "host" (port from the default).
bool ParseHostPort(std::string_view text, std::string& host, uint16_t& port);

} // namespace bitacora::btc
