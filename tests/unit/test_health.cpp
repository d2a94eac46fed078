// GET /health's rule (rpc/health.h) and the upstream verdicts it is made from
// (common/upstream_monitor.h): which source fails, and when a failure turns the answer
// from 200 degraded into 503 unavailable.
#include "common/upstream_monitor.h"
#include "rpc/health.h"

#include <doctest/doctest.h>

using namespace bitacora;
using namespace bitacora::rpc;
using namespace std::chrono_literals;

namespace {

SourceHealth Source(std::string name, std::string state, UpstreamVerdict::State upstream, std::string reason = "")
{
    return {.name = std::move(name), .state = std::move(state), .failed = false, .error = "old error",
            .upstream = UpstreamVerdict{.state = upstream, .failing_s = 1, .last_answer_s = -1, .reason = std::move(reason)}};
}

} // namespace

TEST_CASE("health: ready, degraded while a source fails, unavailable once it stalls, fails or the ledger does")
{
    using V = UpstreamVerdict::State;
    const ledger::LedgerHealth ok;
    auto ready = DecideHealth(ok, {Source("evm", "following", V::Ok), Source("btc", "synced", V::Ok)});
    CHECK(ready.http_status == 200);
    CHECK(ready.body["status"] == "ready");
    CHECK(ready.body["sources"]["evm"]["healthy"] == true);
    CHECK(ready.body["sources"]["evm"]["error"] == ""); // a healthy source shows no stale error
    CHECK(ready.body["failing"].empty());

    auto degraded = DecideHealth(ok, {Source("evm", "starting", V::Failing, "transport error from http://x:1"),
                                      Source("btc", "synced", V::Ok)});
    CHECK(degraded.http_status == 200);
    CHECK(degraded.body["status"] == "degraded");
    CHECK(degraded.body["failing"] == nlohmann::json::array({"evm"}));
    CHECK(degraded.body["sources"]["evm"]["state"] == "starting");
    CHECK(degraded.body["sources"]["evm"]["upstream"] == "failing");
    CHECK(degraded.body["sources"]["evm"]["error"] == "transport error from http://x:1");
    CHECK(degraded.body["sources"]["btc"]["healthy"] == true);

    auto stalled = DecideHealth(ok, {Source("evm", "following", V::Ok), Source("btc", "node_down", V::Stalled, "refused")});
    CHECK(stalled.http_status == 503);
    CHECK(stalled.body["status"] == "unavailable");
    CHECK(stalled.body["failing"] == nlohmann::json::array({"btc"}));

    SourceHealth failed = Source("evm", "failed", V::Ok);
    failed.failed = true;
    failed.error = "reorg below the final block";
    auto stopped = DecideHealth(ok, {failed});
    CHECK(stopped.http_status == 503);
    CHECK(stopped.body["sources"]["evm"]["error"] == "reorg below the final block");

    const ledger::LedgerHealth read_only{ledger::LedgerHealth::State::ReadOnly, "No space left on device"};
    auto disk = DecideHealth(read_only, {Source("evm", "following", V::Ok)});
    CHECK(disk.http_status == 503);
    CHECK(disk.body["ledger"]["state"] == "read-only");
    CHECK(disk.body["ledger"]["reason"] == "No space left on device");
    CHECK(disk.body["failing"].empty());

    // No source followed: the ledger alone decides.
    CHECK(DecideHealth(ok, {}).http_status == 200);
}

TEST_CASE("health: a node that answers with the same head past its bound degrades its source; 0 never does")
{
    using V = UpstreamVerdict::State;
    const ledger::LedgerHealth ok;
    SourceHealth evm = Source("evm", "following", V::Ok);
    evm.head_stall_s = 600;
    evm.head_age_s = 599;
    auto young = DecideHealth(ok, {evm});
    CHECK(young.body["status"] == "ready");
    CHECK(young.body["sources"]["evm"]["headAgeSeconds"] == 599);

    evm.head_age_s = 600;
    auto frozen = DecideHealth(ok, {evm, Source("btc", "synced", V::Ok)});
    CHECK(frozen.http_status == 200);
    CHECK(frozen.body["status"] == "degraded");
    CHECK(frozen.body["failing"] == nlohmann::json::array({"evm"}));
    CHECK(frozen.body["sources"]["evm"]["error"] == "the node's head has not advanced for 600 s (the bound is 600 s)");

    // A failing upstream is the more telling reason, and a stalled one still makes it 503.
    SourceHealth down = Source("evm", "following", V::Stalled, "refused");
    down.head_stall_s = 600;
    down.head_age_s = 4000;
    auto stalled = DecideHealth(ok, {down});
    CHECK(stalled.http_status == 503);
    CHECK(stalled.body["sources"]["evm"]["error"] == "refused");

    evm.head_stall_s = 0; // a chain that makes blocks on demand (anvil, regtest)
    evm.head_age_s = 1'000'000;
    CHECK(DecideHealth(ok, {evm}).body["status"] == "ready");
    evm.head_age_s.reset(); // no head seen yet: nothing to judge
    evm.head_stall_s = 600;
    CHECK(DecideHealth(ok, {evm}).body["status"] == "ready");
}

TEST_CASE("upstream verdicts: an answer ends a failure, a hung request counts from its start, idle is ok")
{
    UpstreamMonitor monitor("btc", 1s);
    const auto t0 = UpstreamMonitor::Clock::now();
    CHECK(JudgeUpstream(monitor.snapshot(), t0 + 1h, 1s, 15s).state == UpstreamVerdict::State::Ok); // idle, never asked

    const uint64_t a = monitor.Begin("http://127.0.0.1:8332", "getbestblockhash");
    monitor.End(a, "transport", "connection refused", false);
    auto s = monitor.snapshot();
    CHECK(JudgeUpstream(s, t0 + 2s, 1s, 15s).state == UpstreamVerdict::State::Failing);
    CHECK(JudgeUpstream(s, t0 + 20s, 1s, 15s).state == UpstreamVerdict::State::Stalled);
    CHECK(s.endpoints.at(0).errors.at("transport") == 1);

    // A JSON-RPC error is an answer: the node is alive.
    const uint64_t b = monitor.Begin("http://127.0.0.1:8332", "getblock");
    monitor.End(b, "rpc", "Block not found", true);
    s = monitor.snapshot();
    CHECK(JudgeUpstream(s, t0 + 20s, 1s, 15s).state == UpstreamVerdict::State::Ok);
    CHECK(s.endpoints.at(0).errors.at("rpc") == 1);
    CHECK(s.endpoints.at(0).requests == 2);

    // A request in flight: ok until hang_after, failing after, stalled past the bound
    // unless something else answered within it.
    const uint64_t c = monitor.Begin("http://127.0.0.1:8332", "getblock");
    s = monitor.snapshot();
    const auto started = *s.oldest_in_flight;
    CHECK(JudgeUpstream(s, started + 500ms, 1s, 15s).state == UpstreamVerdict::State::Ok);
    CHECK(JudgeUpstream(s, started + 2s, 1s, 15s).state == UpstreamVerdict::State::Failing);
    CHECK(JudgeUpstream(s, started + 2s, 1s, 15s).reason.find("getblock to http://127.0.0.1:8332") != std::string::npos);
    CHECK(JudgeUpstream(s, started + 16s, 1s, 15s).state == UpstreamVerdict::State::Stalled);
    monitor.End(c, "", "", true);
    CHECK(monitor.snapshot().in_flight == 0);
    CHECK(JudgeUpstream(monitor.snapshot(), started + 16s, 1s, 15s).state == UpstreamVerdict::State::Ok);

    // An answer refused after it arrived (not JSON-RPC) makes the source fail too.
    monitor.Refused("http://127.0.0.1:8332", "malformed", "not JSON");
    CHECK(JudgeUpstream(monitor.snapshot(), UpstreamMonitor::Clock::now(), 1s, 15s).state == UpstreamVerdict::State::Failing);
}

TEST_CASE("upstream monitor: endpoint labels and requests in flight are bounded")
{
    UpstreamMonitor monitor("evm", 1s);
    for (size_t i = 0; i < UpstreamMonitor::kEndpointsMax * 2; ++i) {
        monitor.End(monitor.Begin("http://host-" + std::to_string(i), "eth_chainId"), "", "", true);
    }
    CHECK(monitor.snapshot().endpoints.size() == UpstreamMonitor::kEndpointsMax);
    CHECK(monitor.snapshot().endpoints.back().endpoint == "other");
    std::vector<uint64_t> tokens;
    for (size_t i = 0; i < UpstreamMonitor::kInFlightMax + 10; ++i) tokens.push_back(monitor.Begin("http://host-0", "x"));
    CHECK(monitor.snapshot().in_flight == UpstreamMonitor::kInFlightMax);
    for (const auto token : tokens) monitor.End(token, "", "", true);
    CHECK(monitor.snapshot().in_flight == 0);
}
