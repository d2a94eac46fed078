// The anchorer (indexer/btc/anchorer.h) on a real ledger, against the simulated bitcoind
// through the real client, on a manual clock: a lingering anchor is fee-bumped with rates
// bitcoind accepts, it confirms and becomes final, and a node answering the wallet calls
// with the wrong JSON shapes gets an error counted, never an exception.
#include "common/clock.h"
#include "common/hex.h"
#include "indexer/btc/anchorer.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "ledger/ledger.h"
#include "tests/sim/sim_btc.h"
#include "tests/unit/ledger_testing.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <map>

using namespace bitacora;
using nlohmann::json;

namespace {

// Forwards to the simulated node, except that a listed method gets the given result.
class Tampering final : public HttpTransport {
public:
    explicit Tampering(std::shared_ptr<sim::SimBitcoind> node) : m_node(std::move(node)) {}
    HttpReply Post(const std::string& url, const std::string& body, size_t answer_bytes_max) override
    {
        const json request = json::parse(body);
        const auto it = results.find(request.value("method", ""));
        if (it == results.end()) return m_node->Post(url, body, answer_bytes_max);
        HttpReply reply;
        reply.outcome = HttpReply::Outcome::Ok;
        reply.status = 200;
        reply.body = json{{"jsonrpc", "2.0"}, {"id", request["id"]}, {"result", it->second}}.dump();
        return reply;
    }
    std::map<std::string, json> results;

private:
    std::shared_ptr<sim::SimBitcoind> m_node;
};

struct Fixture {
    ledger::testing::TempDir dir{"anchorer"};
    std::unique_ptr<ledger::Ledger> ledger;
    std::shared_ptr<sim::SimBitcoind> node;
    std::shared_ptr<Tampering> transport;
    std::unique_ptr<btc::BitcoindRpc> rpc;
    ManualClock clock;
    std::unique_ptr<btc::Anchorer> anchorer;

    explicit Fixture(double fee_rate)
    {
        auto opened = ledger::Ledger::Open(dir.path / "db", {});
        REQUIRE(opened);
        ledger = std::move(*opened);
        std::vector<ledger::Event> events;
        for (uint64_t i = 0; i < 12; ++i) events.push_back(ledger::testing::ReferenceEvent(i));
        REQUIRE(ledger->Append(events));
        sim::BtcConfig config;
        config.seed = 11;
        config.background_txs_max = 0;
        node = std::make_shared<sim::SimBitcoind>(config);
        transport = std::make_shared<Tampering>(node);
        btc::BitcoindRpcOptions rpc_options;
        rpc_options.cookie_file = "/nonexistent/.cookie";
        rpc_options.wallet = "anchor";
        rpc_options.transport = transport;
        rpc = std::make_unique<btc::BitcoindRpc>(rpc_options);
        btc::AnchorerOptions options;
        options.enabled = true;
        options.fee_rate_sat_vb = fee_rate;
        options.bump_after_blocks = 3;
        options.final_confirmations = 2;
        options.clock = &clock;
        anchorer = std::make_unique<btc::Anchorer>(*ledger, *rpc, options);
    }

    // Requests an anchor and runs the step that plans, signs and sends it.
    void AnchorNow()
    {
        anchorer->RequestNow();
        anchorer->Step(node->Height(), true);
        const auto status = anchorer->status();
        REQUIRE_MESSAGE(status.anchors_broadcast == 1, status.last_error);
    }

    // Mines one block and hands it to the anchorer as the follower would.
    void MineAndConnect()
    {
        const Hash256 hash = node->Mine(1).back();
        const uint64_t height = node->Height();
        const auto raw = rpc->Call("getblock", {btc::HashToDisplay(hash), 0});
        REQUIRE(raw);
        const auto bytes = HexDecode(raw->get<std::string>());
        REQUIRE(bytes);
        const auto block = btc::ParseBlock(*bytes);
        REQUIRE(block);
        anchorer->OnBlockConnected(height, hash, &*block, ledger::Cursor{"btc", height, hash});
        anchorer->Step(height, true);
    }
};

} // namespace

TEST_CASE("a lingering anchor at 1.1 sat/vB is bumped twice, then confirms and becomes final")
{
    Fixture f(1.1);
    f.AnchorNow();
    const uint64_t sent_at = f.node->Height();
    // Blocks pass without it (the follower reports tips; the node's blocks hold nothing new).
    f.anchorer->Step(sent_at + 3, true);
    auto status = f.anchorer->status();
    CHECK_MESSAGE(status.fee_bumps == 1, status.last_error);
    CHECK(status.errors.empty());
    f.anchorer->Step(sent_at + 6, true);
    status = f.anchorer->status();
    CHECK_MESSAGE(status.fee_bumps == 2, status.last_error);
    REQUIRE(status.active);
    CHECK(status.active->txids.size() == 3);
    // Only the last replacement is in the mempool; it confirms.
    f.MineAndConnect();
    status = f.anchorer->status();
    CHECK(status.anchors_confirmed == 1);
    const auto confirmed = f.node->Confirmed(status.active ? status.active->txids.back() : Hash256{});
    CHECK(confirmed.has_value());
    f.MineAndConnect();
    status = f.anchorer->status();
    CHECK_MESSAGE(status.anchors_final == 1, status.last_error);
}

TEST_CASE("wallet answers of the wrong shape are errors, not exceptions")
{
    Fixture f(2.0);
    f.transport->results["fundrawtransaction"] = json{{"hex", 7}};
    f.anchorer->RequestNow();
    CHECK_NOTHROW(f.anchorer->Step(f.node->Height(), true));
    CHECK(f.anchorer->status().anchors_broadcast == 0);
    CHECK_FALSE(f.anchorer->status().last_error.empty());

    f.transport->results.clear();
    f.transport->results["signrawtransactionwithwallet"] = json{{"hex", "00"}, {"complete", "yes"}};
    f.anchorer->RequestNow();
    CHECK_NOTHROW(f.anchorer->Step(f.node->Height(), true));
    CHECK(f.anchorer->status().anchors_broadcast == 0);

    f.transport->results.clear();
    f.clock.Advance(std::chrono::minutes(5));
    f.AnchorNow();
    const uint64_t sent_at = f.node->Height();
    f.transport->results["bumpfee"] = json{{"txid", json::array()}};
    CHECK_NOTHROW(f.anchorer->Step(sent_at + 3, true));
    CHECK(f.anchorer->status().fee_bumps == 0);
    f.transport->results.clear();
    // The bump goes through, but every gettransaction answer is garbage: the replacement
    // is not recorded (as after a crash right after bumpfee) ...
    f.transport->results["gettransaction"] = json{{"confirmations", "many"}, {"replaced_by_txid", 3}};
    f.clock.Advance(std::chrono::seconds(31)); // past the retry wait the bumpfee error set
    CHECK_NOTHROW(f.anchorer->Step(sent_at + 4, true));
    REQUIRE(f.anchorer->status().active);
    CHECK(f.anchorer->status().active->txids.size() == 1);
    // ... and an honest answer later names it: adopted, not bumped again.
    f.transport->results.clear();
    f.clock.Advance(std::chrono::seconds(31));
    f.anchorer->Step(sent_at + 5, true);
    const auto status = f.anchorer->status();
    REQUIRE(status.active);
    CHECK_MESSAGE(status.active->txids.size() == 2, status.last_error);
    CHECK(f.node->Height() == sent_at);
    f.MineAndConnect();
    CHECK(f.anchorer->status().anchors_confirmed == 1);
}
