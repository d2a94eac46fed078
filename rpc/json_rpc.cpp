#include "rpc/json_rpc.h"

#include "common/json_bounds.h"
#include "common/logging.h"

#include <fmt/format.h>

#include <charconv>

namespace bitacora::rpc {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string_view TypeName(ParamType type)
{
    switch (type) {
    case ParamType::String: return "a string";
    case ParamType::Unsigned: return "an unsigned integer";
    case ParamType::Bool: return "a boolean";
    case ParamType::Object: return "an object";
    case ParamType::Any: return "any value";
    }
    return "?";
}

// bitcoin-cli sends every argument it cannot tell apart as a string: "7", "true".
std::optional<json> Coerce(const json& value, ParamType type)
{
    switch (type) {
    case ParamType::Any: return value;
    case ParamType::String:
        if (value.is_string()) return value;
        if (value.is_number_unsigned()) return json(std::to_string(value.get<uint64_t>())); // ids as numbers
        return std::nullopt;
    case ParamType::Unsigned: {
        if (value.is_number_unsigned()) return value;
        if (!value.is_string()) return std::nullopt;
        const auto& text = value.get_ref<const std::string&>();
        uint64_t number = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
        if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
        return json(number);
    }
    case ParamType::Bool:
        if (value.is_boolean()) return value;
        if (value == "true" || value == "1") return json(true);
        if (value == "false" || value == "0") return json(false);
        return std::nullopt;
    case ParamType::Object:
        if (value.is_object()) return value;
        if (value.is_string()) {
            BoundedJson parsed = ParseJsonBounded(value.get_ref<const std::string&>());
            if (parsed.ok() && parsed.value.is_object()) return std::move(parsed.value);
        }
        return std::nullopt;
    }
    return std::nullopt;
}

json Response(const json& id, json result)
{
    // Not an initializer list: its elements are const and would deep-copy the result.
    json response = json::object();
    response["jsonrpc"] = "2.0";
    response["id"] = id;
    response["result"] = std::move(result);
    return response;
}

json ErrorResponse(const json& id, int code, const std::string& message, const json& data = nullptr)
{
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", ErrorObject(code, message, data)}};
}

// geth's answer to a batch over its limit (rpc/handler.go, respondWithBatchTooLarge): one
// error in a one-element array, with the id of the batch's first call, since JSON-RPC has
// no error for a whole batch. viem gives it to every call of the batch.
std::string BatchTooLarge(const json& batch, size_t batch_length_max)
{
    json id = nullptr;
    for (const auto& item : batch) {
        if (!item.is_object()) continue;
        const auto method = item.find("method");
        const auto item_id = item.find("id");
        if (method == item.end() || !method->is_string() || item_id == item.end()) continue;
        if (item_id->is_string() || item_id->is_number_integer()) id = *item_id;
        break;
    }
    const json response = ErrorResponse(id, kInvalidRequest, "batch too large", {{"batchLengthMax", batch_length_max}});
    return json::array({response}).dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

ErrorCode CodeOf(ErrorKind kind)
{
    switch (kind) {
    case ErrorKind::Other: return kInternalError;
    case ErrorKind::Invalid: return kInvalidParams;
    case ErrorKind::Conflict: return kConflict;
    case ErrorKind::TooLarge: return kLimitExceeded;
    case ErrorKind::NotFound: return kNotFound;
    case ErrorKind::ReadOnly:
    case ErrorKind::Stopped: return kNotAvailable;
    case ErrorKind::Io:
    case ErrorKind::Corrupt:
    case ErrorKind::Upstream: return kInternalError;
    }
    return kInternalError;
}

json ErrorObject(int code, const std::string& message, const json& data)
{
    json error = {{"code", code}, {"message", message}};
    if (!data.is_null()) error["data"] = data;
    return error;
}

void Dispatcher::Add(MethodSpec method)
{
    m_index[method.name] = m_methods.size();
    m_methods.push_back(std::move(method));
}

Params Dispatcher::ParseParams(const MethodSpec& method, const json& params, size_t answer_bytes_max) const
{
    std::vector<json> values(method.params.size());
    if (params.is_null()) {
        // Absent params: every parameter is absent.
    } else if (params.is_array()) {
        if (params.size() > method.params.size()) {
            throw RpcException{kInvalidParams, fmt::format("{} takes at most {} params, got {}", method.name,
                                                           method.params.size(), params.size())};
        }
        for (size_t i = 0; i < params.size(); ++i) values[i] = params[i];
    } else if (params.is_object()) {
        for (const auto& [key, value] : params.items()) {
            size_t i = 0;
            while (i < method.params.size() && method.params[i].name != key) ++i;
            if (i == method.params.size()) throw RpcException{kInvalidParams, fmt::format("unknown param '{}'", key)};
            values[i] = value;
        }
    } else {
        throw RpcException{kInvalidParams, "params must be an array or an object"};
    }
    for (size_t i = 0; i < method.params.size(); ++i) {
        const ParamSpec& spec = method.params[i];
        if (values[i].is_null()) {
            if (spec.required) throw RpcException{kInvalidParams, fmt::format("missing param '{}'", spec.name)};
            continue;
        }
        auto coerced = Coerce(values[i], spec.type);
        if (!coerced) {
            throw RpcException{kInvalidParams, fmt::format("param '{}' must be {}", spec.name, TypeName(spec.type))};
        }
        values[i] = std::move(*coerced);
    }
    return Params(std::move(values), answer_bytes_max);
}

json Dispatcher::Invoke(const json& request, const json& id, const CallContext& context, Call& call) const
{
    if (auto version = request.find("jsonrpc"); version != request.end() && *version != "2.0" && *version != "1.0") {
        return ErrorResponse(id, kInvalidRequest, "jsonrpc must be \"2.0\"");
    }
    const auto method_it = request.find("method");
    if (method_it == request.end() || !method_it->is_string()) {
        return ErrorResponse(id, kInvalidRequest, "method must be a string");
    }
    call.method_name = method_it->get<std::string>();
    const auto found = m_index.find(call.method_name);
    if (found == m_index.end()) {
        if (call.method_name.size() > 64) call.method_name.resize(64);
        return ErrorResponse(id, kMethodNotFound, fmt::format("method '{}' not found", call.method_name));
    }
    const MethodSpec& method = m_methods[found->second];
    if (method.access == Access::Write && !context.authenticated) {
        return ErrorResponse(id, kAuthRequired, fmt::format("{} needs authentication", method.name));
    }
    if (method.access == Access::Read && !context.authenticated && !context.reads_open) {
        return ErrorResponse(id, kAuthRequired, fmt::format("{} needs authentication", method.name));
    }
    if (Clock::now() > call.deadline) {
        return ErrorResponse(id, kLimitExceeded, "request time limit exceeded before this call");
    }
    static const json kNoParams;
    const auto params_it = request.find("params");
    const json& params = params_it != request.end() ? *params_it : kNoParams;
    // Params cannot be larger than the body they came in: measure only big bodies (the
    // body's nesting is bounded, so dump() cannot recurse deeply).
    if (call.body_bytes > m_limits.params_bytes_max && params.dump().size() > m_limits.params_bytes_max) {
        return ErrorResponse(id, kLimitExceeded, fmt::format("params larger than {} bytes", m_limits.params_bytes_max));
    }
    try {
        const Params parsed = ParseParams(method, params, call.answer_bytes_left);
        return Response(id, method.handler(parsed));
    } catch (const RpcException& e) {
        return ErrorResponse(id, e.code, e.message, e.data);
    } catch (const std::exception& e) {
        LogError("RPC method {} failed: {}", method.name, e.what());
        return ErrorResponse(id, kInternalError, "internal error");
    }
}

std::string Dispatcher::HandleOne(const json& request, const CallContext& context, Call& call) const
{
    call.notification = false;
    if (!request.is_object()) return ErrorResponse(nullptr, kInvalidRequest, "a request must be an object").dump();
    const auto id_it = request.find("id");
    // The id's type is checked before it is copied: a hostile id can be a whole document.
    if (id_it != request.end() && !id_it->is_null() && !id_it->is_string() && !id_it->is_number_integer()) {
        return ErrorResponse(nullptr, kInvalidRequest, "id must be a string, an integer or null").dump();
    }
    call.notification = id_it == request.end();
    const json id = call.notification ? json(nullptr) : *id_it;
    const json response = Invoke(request, id, context, call);
    if (call.notification) return {};
    std::string text = response.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > call.answer_bytes_left) {
        text = ErrorResponse(id, kLimitExceeded,
                             fmt::format("answer larger than the {} bytes left of -rpcmaxresponse ({}); ask for less",
                                         call.answer_bytes_left, m_limits.answer_bytes_max))
                   .dump(-1, ' ', false, json::error_handler_t::replace);
    }
    call.answer_bytes_left -= std::min(call.answer_bytes_left, text.size());
    return text;
}

DispatchResult Dispatcher::Handle(std::string_view body, const CallContext& context) const
{
    DispatchResult out;
    const BoundedJson parsed = ParseJsonBounded(body, m_limits.json_depth_max);
    if (parsed.status == JsonParseStatus::TooDeep) {
        out.body = ErrorResponse(nullptr, kInvalidRequest,
                                 fmt::format("request nests deeper than {} levels", m_limits.json_depth_max))
                       .dump();
        return out;
    }
    if (!parsed.ok()) {
        out.body = ErrorResponse(nullptr, kParseError, "request is not valid JSON").dump();
        return out;
    }
    const json& request = parsed.value;
    Call call{.deadline = Clock::now() + m_limits.request_time_max,
              .body_bytes = body.size(),
              .answer_bytes_left = m_limits.answer_bytes_max};
    if (!request.is_array()) {
        out.body = HandleOne(request, context, call);
        out.methods.push_back(std::move(call.method_name));
        if (call.notification) out.http_status = 204;
        return out;
    }
    if (request.empty()) {
        out.body = ErrorResponse(nullptr, kInvalidRequest, "empty batch").dump();
        return out;
    }
    if (request.size() > m_limits.batch_length_max) {
        out.body = BatchTooLarge(request, m_limits.batch_length_max);
        return out;
    }
    // Answers are joined as text: each was measured against the batch's byte budget.
    out.body.assign(1, '[');
    for (const auto& item : request) {
        call.method_name.clear();
        std::string answer = HandleOne(item, context, call);
        out.methods.push_back(std::move(call.method_name));
        if (call.notification) continue;
        if (out.body.size() > 1) out.body.push_back(',');
        out.body.append(answer);
    }
    if (out.body.size() == 1) {
        out.body.clear();
        out.http_status = 204;
        return out;
    }
    out.body.push_back(']');
    return out;
}

} // namespace bitacora::rpc
