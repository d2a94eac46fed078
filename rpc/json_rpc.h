// JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over a method table: single and
// batch requests, notifications (no id: no answer; a batch of only notifications is
// answered 204), positional or named params. It also takes what bitcoin-cli sends
// (../shared/fixtures/bitcoind/bitcoin-cli-request.json): "jsonrpc" 1.0 or absent, a
// string id, and numbers or booleans written as strings.
//
// Every malformed, oversized or hostile request gets a JSON-RPC error; a handler that
// throws anything but RpcException is answered -32603 and logged.
#pragma once

#include "common/result.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::rpc {

// Every error code of the API, in this one table (docs/api.md lists it). Ours keep out of
// the codes EIP-1474 and clients give meanings to (-32000 to -32007, the -32500s of
// ERC-4337, 4001 to 5760; viem retries -32005 and -32603), or reuse one with the same
// meaning: a client then neither misreports them nor retries what cannot succeed.
enum ErrorCode : int {
    kParseError = -32700,
    kInvalidRequest = -32600,    // also a batch over -rpcmaxbatch, as geth ("batch too large")
    kMethodNotFound = -32601,
    kInvalidParams = -32602,
    kInternalError = -32603,
    kNotFound = -32001,          // EIP-1474's "resource not found": no such order, event, tree size ...
    kAuthRequired = -32040,      // no credentials, or wrong ones (then with HTTP 401)
    kLimitExceeded = -32041,     // params size, answer size, request time: ask for less
    kNotAvailable = -32042,      // the feature is off (no checkpoint key, no follower)
    kConflict = -32043,          // an idempotency key reused for a different event
    kForbidden = -32044,         // a submitter key the operator did not configure
};

// The code of an error a lower layer reported by kind (common/result.h).
ErrorCode CodeOf(ErrorKind kind);

struct RpcException {
    int code;
    std::string message;
    nlohmann::json data = nullptr;
};

enum class ParamType { String, Unsigned, Bool, Object, Any };

struct ParamSpec {
    std::string name;
    ParamType type{ParamType::String};
    bool required{true};
    std::string help;
    nlohmann::json schema = nullptr; // JSON Schema for rpc_discover; null: the type's (rpc/schemas.h)
};

// The params of one call, in the order of the method's ParamSpecs; absent ones are null.
class Params {
public:
    explicit Params(std::vector<nlohmann::json> values, size_t answer_bytes_max = SIZE_MAX)
        : m_values(std::move(values)), m_answer_bytes_max(answer_bytes_max) {}
    bool Has(size_t i) const { return i < m_values.size() && !m_values[i].is_null(); }
    const nlohmann::json& operator[](size_t i) const { return m_values.at(i); }
    std::string String(size_t i) const { return m_values.at(i).get<std::string>(); }
    uint64_t Unsigned(size_t i) const { return m_values.at(i).get<uint64_t>(); }
    bool Bool(size_t i, bool fallback) const { return Has(i) ? m_values[i].get<bool>() : fallback; }
    // What this call's answer may still take of -rpcmaxresponse: a list stops early, with
    // its continuation marker, before its answer grows past it.
    size_t answer_bytes_max() const { return m_answer_bytes_max; }

private:
    std::vector<nlohmann::json> m_values;
    size_t m_answer_bytes_max;
};

enum class Access { Read, Write };

struct MethodSpec {
    std::string name;        // "escrow_getOrder"
    Access access{Access::Read};
    std::vector<ParamSpec> params;
    std::string summary;     // one line, for help and docs/api.md
    std::string result;      // what the result holds
    nlohmann::json result_schema = nullptr; // its JSON Schema, for rpc_discover (rpc/schemas.h)
    std::function<nlohmann::json(const Params&)> handler;
};

struct DispatchLimits {
    size_t batch_length_max{1000}; // geth's default, and the most viem's batch transport sends
    size_t params_bytes_max{64 * 1024};
    size_t answer_bytes_max{25'000'000};  // one HTTP answer, a whole batch included (geth's default)
    size_t json_depth_max{32};            // nesting of a request body, checked before it is parsed
    std::chrono::milliseconds request_time_max{10'000};
};

struct CallContext {
    bool authenticated{false};
    bool reads_open{false}; // read methods without credentials
};

struct DispatchResult {
    int http_status{200};
    std::string body; // empty with 204
    std::vector<std::string> methods; // the methods called, for metrics
};

class Dispatcher {
public:
    explicit Dispatcher(DispatchLimits limits = {}) : m_limits(limits) {}
    void Add(MethodSpec method);
    const std::vector<MethodSpec>& methods() const { return m_methods; }
    bool Has(std::string_view name) const { return m_index.find(name) != m_index.end(); }
    DispatchResult Handle(std::string_view body, const CallContext& context) const;

private:
    struct Call {
        std::chrono::steady_clock::time_point deadline;
        size_t body_bytes{0};
        size_t answer_bytes_left{0}; // of answer_bytes_max, for this call and the rest of its batch
        bool notification{false};
        std::string method_name;
    };
    // One call's answer, serialised; empty for a notification.
    std::string HandleOne(const nlohmann::json& request, const CallContext& context, Call& call) const;
    nlohmann::json Invoke(const nlohmann::json& request, const nlohmann::json& id, const CallContext& context,
                          Call& call) const;
    Params ParseParams(const MethodSpec& method, const nlohmann::json& params, size_t answer_bytes_max) const;

    DispatchLimits m_limits;
    std::vector<MethodSpec> m_methods;
    std::map<std::string, size_t, std::less<>> m_index;
};

nlohmann::json ErrorObject(int code, const std::string& message, const nlohmann::json& data = nullptr);

} // namespace bitacora::rpc
