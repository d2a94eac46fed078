// One HTTP POST as a JSON-RPC client sees it: the seam between the clients (the EVM
// client, the bitcoind client) and the network. Null in their options: libcurl. The
// simulator (tests/sim) answers through it, so that the real clients (retries, failover,
// Retry-After, answer caps) and the real parsers run against a simulated node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace bitacora {

struct HttpReply {
    enum class Outcome {
        Ok,        // an HTTP answer: status, body, Retry-After
        Transport, // refused, reset, timed out, a body cut short
        TooLarge,  // the body outgrew answer_bytes_max (the transfer was cut off there)
        Stopped,
    };
    Outcome outcome{Outcome::Ok};
    long status{200};
    std::string body;
    std::optional<uint64_t> retry_after_s;
    std::string error; // Transport: what failed
};

class HttpTransport {
public:
    virtual ~HttpTransport() = default;
    // `url`: the request's URL (an endpoint, with a path such as /wallet/<name>); `body`: a
    // JSON-RPC request or batch.
    virtual HttpReply Post(const std::string& url, const std::string& body, size_t answer_bytes_max) = 0;
};

} // namespace bitacora
