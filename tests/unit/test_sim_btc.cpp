// The simulated bitcoind (tests/sim/sim_btc.h): deterministic, its blocks parse with the
// daemon's own parser, the real client talks to it through the HttpTransport seam, and
// it answers as the captured node did (key order included) through an anchor's life:
// fund, sign, send, mine, bump, reorg, restart, prune, faults.
#include "common/hex.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "tests/sim/sim_btc.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

using namespace bitacora;
using nlohmann::json;
using sim::BtcConfig;
using sim::SimBitcoind;

namespace {

constexpr const char* kUrl = "http://127.0.0.1:18443";

std::shared_ptr<SimBitcoind> Node(uint64_t seed, BtcConfig config = {})
{
    config.seed = seed;
    return std::make_shared<SimBitcoind>(config);
}

// The real client; no cookie file exists: with a transport no credentials are read.
std::unique_ptr<btc::BitcoindRpc> Client(const std::shared_ptr<SimBitcoind>& node, std::string wallet = "anchor")
{
    btc::BitcoindRpcOptions options;
    options.cookie_file = "/nonexistent/.cookie";
    options.wallet = std::move(wallet);
    options.transport = node;
    return std::make_unique<btc::BitcoindRpc>(options);
}

json Ok(const btc::BtcResult<json>& result)
{
    REQUIRE_MESSAGE(result.ok(), result.error().ToString());
    return *result;
}

btc::BtcError Err(const btc::BtcResult<json>& result)
{
    REQUIRE_MESSAGE(!result.ok(), result->dump());
    return result.error();
}

// A JSON-RPC 2.0 request straight to the node, as the client would send it.
std::string Raw(SimBitcoind& node, const std::string& method, const json& params, const std::string& path = "/")
{
    const json request{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}};
    const HttpReply reply = node.Post(std::string(kUrl) + path, request.dump(), 64u << 20);
    REQUIRE(reply.outcome == HttpReply::Outcome::Ok);
    return reply.body;
}

Bytes Payload(uint8_t fill)
{
    Bytes payload{'B', 'T', 'C', 'R', 0x01, 0, 0, 0, 0, 0, 0, 0, 5};
    payload.resize(45, fill);
    return payload;
}

// createrawtransaction -> fundrawtransaction -> signrawtransactionwithwallet, as the anchorer does.
Bytes SignedAnchor(btc::BitcoindRpc& rpc, const Bytes& payload, double fee_rate)
{
    const json raw = Ok(rpc.Call("createrawtransaction", {json::array(), json::array({{{"data", HexEncode(payload)}}})}));
    const json funded = Ok(rpc.WalletCall("fundrawtransaction", {raw, {{"replaceable", true}, {"fee_rate", fee_rate}}}));
    const json signed_tx = Ok(rpc.WalletCall("signrawtransactionwithwallet", {funded["hex"]}));
    REQUIRE(signed_tx["complete"].get<bool>());
    const auto bytes = HexDecode(signed_tx["hex"].get<std::string>());
    REQUIRE(bytes);
    return *bytes;
}

std::string TxidOf(const Bytes& tx)
{
    const auto parsed = btc::ParseTransaction(tx);
    REQUIRE(parsed);
    return btc::HashToDisplay(parsed->txid);
}

// The key order of a captured answer (nlohmann::json sorts keys: the line is read ordered).
std::vector<std::string> CapturedKeys(const std::string& method, const std::string& note = "",
                                      const std::string& with_key = "")
{
    const char* root = std::getenv("BITACORA_SOURCE_ROOT");
    REQUIRE_MESSAGE(root != nullptr, "BITACORA_SOURCE_ROOT must name the source tree");
    std::ifstream in(std::filesystem::path(root) / "tests" / "fixtures" / "bitcoind" / "rpc.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        const auto call = nlohmann::ordered_json::parse(line);
        if (!call["request"].is_object() || call["request"]["method"] != method) continue;
        if (!note.empty() && call["note"] != note) continue;
        if (!with_key.empty() && !call["response"]["result"].contains(with_key)) continue;
        std::vector<std::string> keys;
        for (const auto& [key, _] : call["response"]["result"].items()) keys.push_back(key);
        return keys;
    }
    FAIL("no capture of " << method);
    return {};
}

std::vector<std::string> OrderedKeys(const std::string& body)
{
    const auto answer = nlohmann::ordered_json::parse(body);
    std::vector<std::string> keys;
    for (const auto& [key, _] : answer["result"].items()) keys.push_back(key);
    return keys;
}

} // namespace

TEST_CASE("the genesis block is regtest's, and headers and blocks answer as the captured node")
{
    auto node = Node(1);
    auto rpc = Client(node);
    CHECK(Ok(rpc->Call("getblockhash", {0})) == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206");
    CHECK(Ok(rpc->Call("getblockheader", {"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206", false})) ==
          "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3"
          "888a51323a9fb8aa4b1e5e4adae5494dffff7f2002000000");
    CHECK(Ok(rpc->Call("getzmqnotifications")) == json::array());
    const json info = Ok(rpc->Call("getblockchaininfo"));
    CHECK(info["chain"] == "regtest");
    CHECK(info["blocks"] == node->Height());
    CHECK(info["bestblockhash"] == btc::HashToDisplay(node->CanonicalHash(node->Height())));
    CHECK(OrderedKeys(Raw(*node, "getblockchaininfo", json::array())) == CapturedKeys("getblockchaininfo"));
    const std::string tip = info["bestblockhash"];
    CHECK(OrderedKeys(Raw(*node, "getblockheader", {tip, true})) == CapturedKeys("getblockheader", "", "previousblockhash"));
    auto block_keys = OrderedKeys(Raw(*node, "getblock", {tip, 1}));
    CHECK(block_keys == CapturedKeys("getblock", "anchor block verbosity 1"));
    // bitcoind's errors, as captured.
    CHECK(Raw(*node, "getblockhash", {99999}) ==
          R"({"jsonrpc":"2.0","error":{"code":-8,"message":"Block height out of range"},"id":1})"
          "\n");
    CHECK(Raw(*node, "getblock", {"zz"}).find("blockhash must be of length 64 (not 2, for 'zz')") != std::string::npos);
    CHECK(Raw(*node, "getblockhash", {"notanumber"}).find(
              R"(Wrong type passed:\n{\n    \"Position 1 (height)\": \"JSON value of type string is not of expected type number\"\n})") !=
          std::string::npos);
    CHECK(Raw(*node, "nosuchmethod", json::array()).find(R"({"code":-32601,"message":"Method not found"})") != std::string::npos);
    const auto unknown = Err(rpc->Call("getblock", {std::string(64, '0')}));
    CHECK(unknown.not_found());
}

TEST_CASE("the captured requests that do not depend on the chain get the captured answers, byte for byte")
{
    auto node = Node(2);
    const char* root = std::getenv("BITACORA_SOURCE_ROOT");
    REQUIRE(root != nullptr);
    std::ifstream in(std::filesystem::path(root) / "tests" / "fixtures" / "bitcoind" / "rpc.jsonl");
    using ojson = nlohmann::ordered_json;
    // What only the chain decides (its height, its tip) is left out of the comparison.
    const auto blank = [](ojson answer, const ojson& request) {
        const std::string method = request.value("method", "");
        if ((method == "getblockcount" || method == "getbestblockhash") && answer.contains("result")) answer["result"] = nullptr;
        return answer;
    };
    std::string line;
    int compared = 0;
    while (std::getline(in, line)) {
        const auto call = ojson::parse(line);
        const auto& request = call["request"];
        const bool batch = request.is_array();
        const std::string method = batch ? "" : request.value("method", "");
        const bool wanted = batch || method == "createrawtransaction" ||
                            (call["phase"] == "errors" && method != "getnewaddress" && call["http_status"] != 401 &&
                             call["note"] != "bad verbosity");
        if (!wanted) continue;
        INFO(request.dump());
        const HttpReply reply = node->Post(std::string(kUrl) + call["path"].get<std::string>(), request.dump(), 1u << 20);
        REQUIRE(reply.outcome == HttpReply::Outcome::Ok);
        CHECK(reply.status == call["http_status"].get<long>());
        if (call["response"].is_null()) {
            CHECK(reply.body.empty());
            continue;
        }
        ojson ours = ojson::parse(reply.body);
        ojson theirs = call["response"];
        if (batch) {
            REQUIRE(ours.size() == theirs.size());
            for (size_t i = 0; i < ours.size(); ++i) {
                ours[i] = blank(ours[i], request[i]);
                theirs[i] = blank(theirs[i], request[i]);
            }
        } else {
            ours = blank(ours, request);
            theirs = blank(theirs, request);
        }
        CHECK(ours.dump() == theirs.dump());
        ++compared;
    }
    CHECK(compared >= 11);
}

TEST_CASE("same seed, same answers; another seed, another chain")
{
    const auto run = [](uint64_t seed) {
        BtcConfig config = BtcConfig::FromSeed(seed, 5.0); // faults in the transcript too
        auto node = std::make_shared<SimBitcoind>(config);
        auto rpc = Client(node);
        std::string transcript;
        for (int round = 0; round < 6; ++round) {
            const auto raw = rpc->Call("createrawtransaction",
                                       {json::array(), json::array({{{"data", HexEncode(Payload(static_cast<uint8_t>(round)))}}})});
            auto funded = raw ? rpc->WalletCall("fundrawtransaction", {*raw, {{"fee_rate", 3 + round}}}) : raw;
            auto signed_tx = funded ? rpc->WalletCall("signrawtransactionwithwallet", {(*funded)["hex"]}) : funded;
            auto sent = signed_tx ? rpc->Call("sendrawtransaction", {(*signed_tx)["hex"]}) : signed_tx;
            for (const auto* r : std::array<const btc::BtcResult<json>*, 4>{&raw, &funded, &signed_tx, &sent}) {
                transcript += r->ok() ? (*r)->dump() : r->error().ToString();
            }
            node->Mine(3);
            if (round == 3) node->Reorg(2, round % 2 == 0);
            const auto best = rpc->Call("getbestblockhash");
            transcript += best ? best->dump() : best.error().ToString();
            if (best) {
                const auto block = rpc->Call("getblock", {*best, 0});
                transcript += block ? block->dump() : block.error().ToString();
            }
        }
        return std::make_pair(transcript, node->stats().ToString());
    };
    const auto a = run(42);
    const auto b = run(42);
    CHECK(a.first == b.first);
    CHECK(a.second == b.second);
    CHECK(a.first.size() > 5'000);
    CHECK(run(43).first != a.first);
    MESSAGE("seed 42: " << a.second);
}

TEST_CASE("the daemon's parser reads every block the simulator serves, Merkle roots and all")
{
    BtcConfig config;
    config.background_txs_max = 6;
    auto node = Node(7, config);
    auto rpc = Client(node);
    const auto mine_start = std::chrono::steady_clock::now();
    constexpr uint32_t kBlocks = 400;
    node->Mine(kBlocks);
    const double mine_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - mine_start).count();
    const auto serve_start = std::chrono::steady_clock::now();
    size_t txs = 0;
    for (uint64_t height = 0; height <= node->Height(); ++height) {
        const json hash = Ok(rpc->Call("getblockhash", {height}));
        const json hex = Ok(rpc->Call("getblock", {hash, 0}));
        const auto bytes = HexDecode(hex.get<std::string>());
        REQUIRE(bytes);
        const auto block = btc::ParseBlock(*bytes); // checks the Merkle root
        REQUIRE_MESSAGE(block, block.error());
        CHECK(btc::HashToDisplay(block->header.hash) == hash);
        CHECK(block->header.bits == 0x207fffff);
        CHECK(block->header.hash == node->CanonicalHash(height));
        if (height > 0) CHECK(btc::HashToDisplay(block->header.prev_hash) == Ok(rpc->Call("getblockhash", {height - 1})));
        for (size_t pos = 0; pos < block->txs.size(); ++pos) {
            const auto at = node->Confirmed(block->txs[pos].txid);
            REQUIRE(at);
            CHECK(at->height == height);
            CHECK(at->position == pos);
        }
        txs += block->txs.size();
    }
    const double serve_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - serve_start).count();
    MESSAGE("mined " << kBlocks << " blocks in " << mine_s << " s (" << kBlocks / mine_s << " blocks/s); served and parsed "
                     << node->Height() + 1 << " blocks (" << txs << " transactions) in " << serve_s << " s ("
                     << (node->Height() + 1) / serve_s << " blocks/s)");
    // Every block: the coinbase and other users' transactions, some with OP_RETURNs.
    CHECK(txs > node->Height() + 1);
    CHECK(!node->ConfirmedPayloads().empty());
}

TEST_CASE("an anchor's life through the real client: fund, sign, send, confirm, bump")
{
    auto node = Node(11);
    auto rpc = Client(node);
    const Bytes payload = Payload(0xab);
    const Bytes signed_tx = SignedAnchor(*rpc, payload, 5);
    const auto parsed = btc::ParseTransaction(signed_tx);
    REQUIRE(parsed);
    CHECK(parsed->has_witness);
    bool has_payload = false;
    for (const auto& out : parsed->outputs) {
        const auto data = btc::OpReturnData(out.script);
        has_payload = has_payload || (data && Bytes(data->begin(), data->end()) == payload);
    }
    CHECK(has_payload);
    const std::string txid = TxidOf(signed_tx);
    CHECK(Ok(rpc->Call("sendrawtransaction", {HexEncode(signed_tx)})) == txid);
    CHECK(Ok(rpc->Call("sendrawtransaction", {HexEncode(signed_tx)})) == txid); // again: in the mempool already
    const json entry = Ok(rpc->Call("getmempoolentry", {txid}));
    CHECK(OrderedKeys(Raw(*node, "getmempoolentry", {txid})) == CapturedKeys("getmempoolentry"));
    // One P2WPKH coin, taproot change and the 45-byte payload: the captured anchor's 178 vB, 890 sat at 5 sat/vB.
    CHECK(entry["vsize"] == 178);
    CHECK(Raw(*node, "getmempoolentry", {txid}).find(R"("fees":{"base":0.00000890,)") != std::string::npos);
    const json pending = Ok(rpc->WalletCall("gettransaction", {txid}));
    CHECK(pending["confirmations"] == 0);
    CHECK(pending["trusted"] == true);
    CHECK(OrderedKeys(Raw(*node, "gettransaction", {txid}, "/wallet/anchor")) == CapturedKeys("gettransaction", "unconfirmed"));
    CHECK(Raw(*node, "gettransaction", {txid}, "/wallet/anchor").find(R"("amount":0.00000000,"fee":-0.)") != std::string::npos);

    const auto mined = node->Mine(1);
    const json confirmed = Ok(rpc->WalletCall("gettransaction", {txid}));
    CHECK(confirmed["confirmations"] == 1);
    CHECK(confirmed["blockhash"] == btc::HashToDisplay(mined[0]));
    CHECK(OrderedKeys(Raw(*node, "gettransaction", {txid}, "/wallet/anchor")) == CapturedKeys("gettransaction", "confirmed"));
    const auto at = node->Confirmed(parsed->txid);
    REQUIRE(at);
    CHECK(at->block_hash == mined[0]);
    CHECK(at->position >= 1);
    const auto payloads = node->ConfirmedPayloads();
    CHECK(std::any_of(payloads.begin(), payloads.end(), [&](const sim::BtcPayload& p) { return p.data == payload && p.txid == parsed->txid; }));
    CHECK(Err(rpc->Call("getmempoolentry", {txid})).not_found());

    // A second anchor, bumped: a new txid, the old one out of the mempool and replaced.
    const Bytes second = SignedAnchor(*rpc, Payload(0xcd), 2);
    const std::string old_txid = Ok(rpc->Call("sendrawtransaction", {HexEncode(second)}));
    const json bumped = Ok(rpc->WalletCall("bumpfee", {old_txid, {{"fee_rate", 3.0}}}));
    const std::string new_txid = bumped["txid"];
    CHECK(new_txid != old_txid);
    CHECK(Err(rpc->Call("getmempoolentry", {old_txid})).not_found());
    Ok(rpc->Call("getmempoolentry", {new_txid}));
    const json old_tx = Ok(rpc->WalletCall("gettransaction", {old_txid}));
    CHECK(old_tx["replaced_by_txid"] == new_txid);
    CHECK(old_tx["walletconflicts"] == json::array({new_txid}));
    CHECK(Ok(rpc->WalletCall("gettransaction", {new_txid}))["replaces_txid"] == old_txid);
    const auto again = Err(rpc->WalletCall("bumpfee", {old_txid, {{"fee_rate", 9}}}));
    CHECK(again.code == -4);
    CHECK(again.message.find("already bumped by transaction " + new_txid) != std::string::npos);
    const auto low = Err(rpc->WalletCall("bumpfee", {new_txid, {{"fee_rate", 3.0}}}));
    CHECK(low.code == -8);
    CHECK(low.message.find("Insufficient total fee") != std::string::npos);
    node->Mine(1);
    CHECK(Ok(rpc->WalletCall("gettransaction", {new_txid}))["confirmations"] == 1);
    CHECK(Ok(rpc->WalletCall("gettransaction", {old_txid}))["confirmations"] == -1); // conflicted, as bitcoind says
    const auto stale = Err(rpc->Call("sendrawtransaction", {HexEncode(second)}));
    CHECK(stale.code == btc::kRpcVerifyError);
    CHECK(stale.message == "bad-txns-inputs-missingorspent");
    // Mined: its inputs are spent (feebumper looks its coins up first).
    const auto mined_bump = Err(rpc->WalletCall("bumpfee", {new_txid}));
    CHECK(mined_bump.code == btc::kRpcMiscError);
    CHECK(mined_bump.message.find("is already spent") != std::string::npos);
}

TEST_CASE("a reorg drops the anchor's block and its transaction; resent, it confirms again")
{
    auto node = Node(12);
    auto rpc = Client(node);
    const Bytes anchor = SignedAnchor(*rpc, Payload(0x11), 4);
    const std::string txid = Ok(rpc->Call("sendrawtransaction", {HexEncode(anchor)}));
    const Hash256 block = node->Mine(1)[0];
    const uint64_t height = node->Height();
    node->Mine(2);
    const auto report = node->Reorg(3, /*keep_mempool_txs=*/false);
    CHECK(report.fork_height == height);
    CHECK(report.disconnected == 3);
    CHECK(report.connected == 4);
    CHECK(report.txs_dropped >= 1);
    CHECK(node->Height() == height + 3);
    CHECK(node->CanonicalHash(height) != block);
    const auto parsed = btc::ParseTransaction(anchor);
    CHECK_FALSE(node->Confirmed(parsed->txid));
    CHECK_FALSE(node->InMempool(parsed->txid));
    CHECK(Ok(rpc->Call("getblockheader", {btc::HashToDisplay(block), true}))["confirmations"] == -1);
    const json tx = Ok(rpc->WalletCall("gettransaction", {txid}));
    CHECK(tx["confirmations"] == 0);
    CHECK(tx["trusted"] == false);
    CHECK_FALSE(tx.contains("blockhash"));
    CHECK(Err(rpc->Call("getmempoolentry", {txid})).not_found());
    const auto payloads = node->ConfirmedPayloads();
    CHECK(std::none_of(payloads.begin(), payloads.end(), [&](const sim::BtcPayload& p) { return p.txid == parsed->txid; }));
    // The daemon resends it; it confirms in the new chain.
    CHECK(Ok(rpc->Call("sendrawtransaction", {HexEncode(anchor)})) == txid);
    node->Mine(1);
    CHECK(Ok(rpc->WalletCall("gettransaction", {txid}))["confirmations"] == 1);

    // Kept: reorged-out transactions go back to the mempool.
    const Bytes second = SignedAnchor(*rpc, Payload(0x22), 4);
    Ok(rpc->Call("sendrawtransaction", {HexEncode(second)}));
    node->Mine(1);
    const auto kept = node->Reorg(1, /*keep_mempool_txs=*/true, /*new_blocks=*/2);
    CHECK(kept.txs_returned >= 1);
    const auto second_id = btc::ParseTransaction(second)->txid;
    CHECK((node->InMempool(second_id) || node->Confirmed(second_id).has_value()));
}

TEST_CASE("a restart forgets the mempool and unloads the wallet: -18, then loadwallet works")
{
    BtcConfig config;
    config.restart_down_requests_max = 3;
    config.restart_warmup_requests_max = 3;
    auto node = Node(13, config);
    auto rpc = Client(node);
    const Bytes anchor = SignedAnchor(*rpc, Payload(0x33), 4);
    const std::string txid = Ok(rpc->Call("sendrawtransaction", {HexEncode(anchor)}));
    node->Restart(/*forget_mempool=*/true);
    CHECK_FALSE(node->WalletLoaded());
    CHECK(node->MempoolSize() == 0);
    // Refused while it starts, then warming up, then up.
    int refused = 0, warming = 0;
    for (int i = 0; i < 10; ++i) {
        const auto info = rpc->Call("getblockchaininfo");
        if (info) break;
        CHECK(info.error().node_unreachable());
        ++(info.error().kind == btc::BtcError::Kind::Transport ? refused : warming);
        if (info.error().kind == btc::BtcError::Kind::Rpc) CHECK(info.error().code == btc::kRpcInWarmup);
    }
    MESSAGE("after the restart: " << refused << " refused, " << warming << " warming up");
    CHECK(Raw(*node, "gettransaction", {txid}, "/wallet/anchor").find(
              R"({"code":-18,"message":"Requested wallet does not exist or is not loaded"})") != std::string::npos);
    CHECK(Raw(*node, "gettransaction", {txid}).find("No wallet is loaded. Load a wallet using loadwallet") != std::string::npos);
    CHECK(Ok(rpc->Call("listwallets")) == json::array());
    // The client loads it after -18 and asks again; the wallet resubmits its transaction.
    const json tx = Ok(rpc->WalletCall("gettransaction", {txid}));
    CHECK(tx["confirmations"] == 0);
    CHECK(rpc->stats().wallet_loads == 1);
    CHECK(node->WalletLoaded());
    CHECK(node->InMempool(btc::ParseTransaction(anchor)->txid));
    const auto twice = Err(rpc->Call("loadwallet", {"anchor"}));
    CHECK(twice.code == btc::kRpcWalletAlreadyLoaded);
    CHECK(twice.message == "Wallet \"anchor\" is already loaded.");
    CHECK(Err(rpc->Call("loadwallet", {"other"})).code == btc::kRpcWalletNotFound);
    // Kept across a restart (mempool.dat): still there.
    node->Restart(/*forget_mempool=*/false);
    node->SetQuiet(true);
    for (int i = 0; i < 10 && !rpc->Call("getblockcount"); ++i) {
    }
    CHECK(node->InMempool(btc::ParseTransaction(anchor)->txid));
}

TEST_CASE("faults, pruning and answer caps map to BtcError as curl's exchanges do")
{
    auto node = Node(14);
    auto rpc = Client(node);
    sim::BtcFaults faults;
    faults.transport = 1;
    node->SetFaults(faults);
    CHECK(Err(rpc->Call("getblockcount")).kind == btc::BtcError::Kind::Transport);
    faults = {};
    faults.http_500 = 1;
    node->SetFaults(faults);
    const auto http = Err(rpc->Call("getblockcount"));
    CHECK(http.kind == btc::BtcError::Kind::Http);
    CHECK(http.http_status == 500);
    faults = {};
    faults.warmup = 1;
    node->SetFaults(faults);
    const auto warm = Err(rpc->Call("getblockcount"));
    CHECK(warm.code == btc::kRpcInWarmup);
    CHECK(warm.message == "Loading block index…");
    CHECK(warm.node_unreachable());
    faults = {};
    faults.truncated = 1;
    node->SetFaults(faults);
    std::set<btc::BtcError::Kind> kinds;
    for (int i = 0; i < 20; ++i) kinds.insert(Err(rpc->Call("getblockchaininfo")).kind);
    CHECK(kinds == std::set<btc::BtcError::Kind>{btc::BtcError::Kind::Transport, btc::BtcError::Kind::Malformed});
    faults = {};
    faults.insufficient_funds = 1;
    node->SetFaults(faults);
    const json raw = Ok(rpc->Call("createrawtransaction", {json::array(), json::array({{{"data", "00"}}})}));
    CHECK(Err(rpc->WalletCall("fundrawtransaction", {raw, {{"fee_rate", 2}}})).insufficient_funds());
    node->SetFaults({});
    CHECK(node->stats().faults() == 1 + 1 + 1 + 20 + 1);

    // Pruned blocks: getblock -1, the header still served.
    node->Prune(50);
    CHECK(node->PruneHeight() == 50);
    const json hash = Ok(rpc->Call("getblockhash", {10}));
    const auto pruned = Err(rpc->Call("getblock", {hash, 0}));
    CHECK(pruned.pruned());
    CHECK(pruned.message == "Block not available (pruned data)");
    CHECK(Ok(rpc->Call("getblockheader", {hash, false})).get<std::string>().size() == 160);
    CHECK(Ok(rpc->Call("getblockchaininfo"))["pruneheight"] == 50);
    Ok(rpc->Call("getblock", {Ok(rpc->Call("getblockhash", {50})), 0}));

    // An answer over the cap: cut off and refused.
    btc::BitcoindRpcOptions small;
    small.transport = node;
    small.block_response_bytes_max = 100;
    btc::BitcoindRpc capped(small);
    const auto big = Err(capped.Call("getblock", {Ok(rpc->Call("getbestblockhash")), 0}));
    CHECK(big.kind == btc::BtcError::Kind::Malformed);
    CHECK(big.message.find("larger than 100 bytes") != std::string::npos);
}

TEST_CASE("a wallet name that needs escaping reaches the node's wallet path")
{
    BtcConfig config;
    config.wallet = "anchor wallet/1";
    auto node = Node(15, config);
    auto rpc = Client(node, config.wallet);
    CHECK(Err(rpc->WalletCall("gettransaction", {std::string(64, '1')})).message == "Invalid or non-wallet transaction id");
    CHECK(Ok(rpc->Call("listwallets")) == json::array({config.wallet}));
    auto wrong = Client(node, "other");
    const auto missing = Err(wrong->WalletCall("gettransaction", {std::string(64, '1')}));
    CHECK(missing.wallet_missing()); // -18, and loadwallet "other" fails too: the original error, with why
    CHECK(missing.message.find("loadwallet \"other\" failed") != std::string::npos);
}
