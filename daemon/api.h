// The -rpc* options and the glue between bitacorad's parts and the API server: the
// followers' state for bitacora_status and their metrics for GET /metrics.
#pragma once

#include "daemon/args.h"
#include "indexer/btc/anchorer.h"
#include "indexer/btc/follower.h"
#include "indexer/evm/follower.h"
#include "ledger/ledger.h"
#include "rpc/server.h"
#include "rpc/zmq_publisher.h"

#include <filesystem>
#include <memory>

namespace bitacora {

void RegisterRpcArgs(ArgsManager& args);
// The -rpc* checks that need several options: a bind beyond loopback needs -rpcallowip.
Status ValidateRpcArgs(const ArgsManager& args);

// nullptr with -noserver. An error names the option or the address that failed.
// What the API reports on and drives; any may be null (that part is off).
// -evmheadstall and -btcheadstall: how long each node's head may stand still (0: forever).
struct HeadStall {
    uint64_t evm_s{0};
    uint64_t btc_s{0};
};
struct ApiSources {
    const evm::EvmFollower* evm{nullptr};
    btc::BtcFollower* btc{nullptr};
    btc::Anchorer* anchorer{nullptr};
    // What each source's node did, as it happened (null: not watched).
    std::shared_ptr<const UpstreamMonitor> evm_upstream;
    std::shared_ptr<const UpstreamMonitor> btc_upstream;
    const rpc::ZmqPublisher* zmq{nullptr};
    // A source failing this long with no answer makes GET /health answer 503.
    std::chrono::milliseconds stall_after{std::chrono::seconds(15)};
    HeadStall head_stall{};
};

HeadStall HeadStallBounds(const ArgsManager& args);

// -upstreamhang and -upstreamstall (seconds).
std::chrono::milliseconds UpstreamHangAfter(const ArgsManager& args);
std::chrono::milliseconds UpstreamStallAfter(const ArgsManager& args);

Result<std::unique_ptr<rpc::RpcServer>> StartApi(const ArgsManager& args, uint16_t default_port,
                                                 const std::filesystem::path& netdir, ledger::Ledger& ledger,
                                                 ApiSources sources);

// nullptr without -zmqpubevent; the publisher listens to the ledger from now on.
Result<std::unique_ptr<rpc::ZmqPublisher>> StartZmq(const ArgsManager& args, ledger::Ledger& ledger);

nlohmann::json FollowerStatusJson(const evm::FollowerStatus& status);
std::string FollowerMetrics(const evm::FollowerStatus& status);
nlohmann::json BtcStatusJson(const btc::BtcFollowerStatus& follower, const btc::AnchorerStatus* anchorer);
std::string BtcMetrics(const btc::BtcFollowerStatus& follower, const btc::AnchorerStatus* anchorer);
// GET /health's view of each source, and everything /metrics says of the sources.
std::vector<rpc::SourceHealth> SourcesHealth(const ApiSources& sources);
std::string SourcesMetrics(const ApiSources& sources);

} // namespace bitacora
