// The HTTP front of the JSON-RPC API, after Bitcoin Core's src/httpserver.cpp: one
// libevent thread accepts connections and reads requests, a bounded work queue hands
// them to worker threads, and a full queue is answered 503 at once. Every request gets
// exactly one answer, also when the client went away meanwhile (then it is dropped),
// and Stop() ends in order: no new connections, the queue drains, workers exit, the
// event loop exits. Every resource a client can hold is bounded: connections from the
// moment they are accepted, the time a request may take to arrive (absolute, not reset
// by each byte), the bytes of answers it does not read.
#pragma once

#include "common/result.h"
#include "rpc/subnet.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bitacora::rpc {

struct HttpRequest {
    std::string method; // "GET", "POST", ...
    std::string path;   // without the query
    std::string authorization;
    std::string body;
    std::string peer;   // "127.0.0.1:51234"
};

struct HttpResponse {
    int status{200};
    std::string content_type{"application/json"};
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpServerOptions {
    std::vector<std::string> bind_addresses{"127.0.0.1", "::1"};
    uint16_t port{0};                    // 0: a free port (tests); see bound_port()
    size_t worker_threads{4};
    size_t queue_depth_max{64};          // requests waiting for a worker; more are answered 503
    size_t body_bytes_max{1u << 20};     // larger bodies are answered 413 by libevent
    size_t header_bytes_max{8192};
    // A whole request (headers and body) must arrive within this many seconds of the
    // connection's accept, or of its previous answer; idle connections close after it too.
    int timeout_s{30};
    // Every accepted connection counts, from its accept to its close; at the limit the
    // listener pauses (new ones wait in the kernel's backlog) and resumes below it.
    size_t connections_max{256};
    // Answers handed to the kernel's sockets but not yet written (clients that do not
    // read); past it new requests are answered 503 until they drain.
    size_t unsent_bytes_max{256u << 20};
    // Clients answered besides loopback (-rpcallowip); any other is answered 403.
    std::vector<Subnet> allowed_clients;
};

struct HttpServerStats {
    uint64_t requests{0};
    uint64_t rejected_queue_full{0};
    uint64_t rejected_connections{0};
    uint64_t dropped_replies{0}; // the client left before its answer was ready
    uint64_t rejected_headers{0};   // ambiguous framing: two Content-Lengths, "+N", with Transfer-Encoding
    uint64_t timed_out_connections{0}; // closed because a request did not arrive whole in time
    uint64_t rejected_unsent_bytes{0}; // answered 503 while too many answer bytes were unsent
    uint64_t accept_errors{0};      // accept() failures (e.g. out of file descriptors); the listener pauses
    uint64_t listener_pauses{0};
    uint64_t rejected_clients{0};   // answered 403: not loopback and not in -rpcallowip
    size_t queue_depth{0};
    size_t connections{0};
    size_t unsent_bytes{0};
};

class HttpServer {
public:
    // Runs on a worker thread; must not throw (a throw is answered 500).
    using Handler = std::function<HttpResponse(const HttpRequest&)>;

    static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options, Handler handler);
    ~HttpServer(); // Stop()
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    void Stop();
    uint16_t bound_port() const;
    HttpServerStats stats() const;

private:
    struct Impl;
    explicit HttpServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::rpc
