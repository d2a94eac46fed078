// The API server: HTTP (http_server.h), authentication (auth.h), the JSON-RPC method
// table (methods.h), GET /health for readiness and GET /metrics in Prometheus format.
#pragma once

#include "rpc/auth.h"
#include "rpc/health.h"
#include "rpc/http_server.h"
#include "rpc/json_rpc.h"
#include "rpc/methods.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace bitacora::rpc {

struct RpcServerOptions {
    HttpServerOptions http;
    DispatchLimits limits;
    bool reads_open{false};                // read methods without credentials
    std::filesystem::path cookie_path;     // written at start, removed at stop; empty: none
    std::vector<std::string> rpcauth;      // "<user>:<salt>$<hmac>"
    // Each followed source's state for GET /health (rpc/health.h); empty: none followed.
    std::function<std::vector<SourceHealth>()> sources_health;
};

class RpcServer {
public:
    // extra_metrics: Prometheus text lines of other components (the followers);
    // ready: what GET /health reports.
    static Result<std::unique_ptr<RpcServer>> Start(const RpcServerOptions& options, MethodContext methods,
                                                    std::function<std::string()> extra_metrics,
                                                    std::function<bool()> ready);
    ~RpcServer();
    void Stop();
    uint16_t port() const;

    struct Impl;

private:
    explicit RpcServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::rpc
