// Bitcoin block and transaction parsing against the real regtest captures
// (tests/fixtures/bitcoind/), plus the anchor payload and record encodings.
#include "common/hex.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/block.h"
#include "indexer/btc/zmq_subscriber.h"
#include "ledger/anchors.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

using namespace bitacora;
using nlohmann::json;

namespace {

std::filesystem::path Fixtures()
{
    const char* root = std::getenv("BITACORA_SOURCE_ROOT");
    REQUIRE_MESSAGE(root != nullptr, "BITACORA_SOURCE_ROOT must name the source tree");
    return std::filesystem::path(root) / "tests" / "fixtures" / "bitcoind";
}

std::string ReadFile(const std::filesystem::path& path)
{
    std::ifstream in(path);
    REQUIRE_MESSAGE(in, "cannot read " << path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

Bytes AnchorBlockBytes()
{
    std::string hex = ReadFile(Fixtures() / "blocks" / "anchor_block.hex");
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
    const auto bytes = HexDecode(hex);
    REQUIRE(bytes);
    return *bytes;
}

std::vector<json> RpcCaptures()
{
    std::vector<json> out;
    std::ifstream in(Fixtures() / "rpc.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    REQUIRE(out.size() > 50);
    return out;
}

} // namespace

TEST_CASE("the real anchor block parses: txids, Merkle root, OP_RETURN payload")
{
    const Bytes bytes = AnchorBlockBytes();
    const json verbose = json::parse(ReadFile(Fixtures() / "blocks" / "anchor_block.verbose2.json"));
    auto block = btc::ParseBlock(bytes);
    REQUIRE_MESSAGE(block, (block ? "" : block.error()));
    CHECK(btc::HashToDisplay(block->header.hash) == verbose["hash"]);
    CHECK(btc::HashToDisplay(block->header.merkle_root) == verbose["merkleroot"]);
    CHECK(btc::HashToDisplay(block->header.prev_hash) == verbose["previousblockhash"]);
    CHECK(block->header.nonce == verbose["nonce"].get<uint32_t>());
    CHECK(block->header.time == verbose["time"].get<uint32_t>());
    REQUIRE(block->txs.size() == verbose["tx"].size());
    for (size_t i = 0; i < block->txs.size(); ++i) {
        const auto& tx = block->txs[i];
        const auto& expected = verbose["tx"][i];
        CHECK(btc::HashToDisplay(tx.txid) == expected["txid"]);
        CHECK(tx.has_witness);
        CHECK(tx.serialized_size == expected["size"].get<size_t>());
        CHECK(tx.outputs.size() == expected["vout"].size());
        // wtxid: the whole serialization hashed
        const auto full = btc::ParseTransaction(*HexDecode(expected["hex"].get<std::string>()));
        REQUIRE(full);
        CHECK(full->txid == tx.txid);
        CHECK(btc::HashToDisplay(Sha256d(*HexDecode(expected["hex"].get<std::string>()))) == expected["hash"]);
    }
    // The anchor transaction's OP_RETURN holds the capture's example payload: "BTCR" 01 size root.
    const auto& anchor_tx = block->txs[1];
    const auto data = btc::OpReturnData(anchor_tx.outputs[1].script);
    REQUIRE(data);
    const auto commitment = ledger::ParseAnchorPayload(*data);
    REQUIRE(commitment);
    CHECK(commitment->tree_size == 5);
    CHECK(HexEncode(commitment->root) == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    CHECK(ledger::AnchorPayload(commitment->tree_size, commitment->root) == Bytes(data->begin(), data->end()));
    // The branch of every transaction leads to the header's root.
    std::vector<Hash256> txids;
    for (const auto& tx : block->txs) txids.push_back(tx.txid);
    for (size_t i = 0; i < txids.size(); ++i) {
        CHECK(btc::RootFromBranch(txids[i], i, btc::MerkleBranch(txids, i)) == block->header.merkle_root);
    }
}

TEST_CASE("blocks and transactions in the captures (getblock 0, ZMQ rawblock and rawtx) parse")
{
    size_t blocks = 0, txs = 0;
    for (const auto& call : RpcCaptures()) {
        if (call["request"].is_object() && call["request"]["method"] == "getblock" && call["response"].is_object() &&
            call["response"].contains("result") && call["response"]["result"].is_string()) {
            auto block = btc::ParseBlock(*HexDecode(call["response"]["result"].get<std::string>()));
            REQUIRE_MESSAGE(block, (block ? "" : block.error()));
            CHECK(btc::HashToDisplay(block->header.hash) == call["request"]["params"][0]);
            ++blocks;
        }
    }
    std::ifstream in(Fixtures() / "zmq.jsonl");
    std::string line;
    size_t zmq_blocks = 0;
    while (std::getline(in, line) && (zmq_blocks < 200 || txs < 200)) {
        const json m = json::parse(line);
        const auto body = HexDecode(m["body_hex"].get<std::string>());
        REQUIRE(body);
        if (m["topic"] == "rawblock" && zmq_blocks < 200) {
            auto block = btc::ParseBlock(*body);
            REQUIRE_MESSAGE(block, (block ? "" : block.error()));
            ++zmq_blocks;
        } else if (m["topic"] == "rawtx" && txs < 200) {
            auto tx = btc::ParseTransaction(*body);
            REQUIRE_MESSAGE(tx, (tx ? "" : tx.error()));
            ++txs;
        }
    }
    CHECK(blocks >= 2);
    CHECK(zmq_blocks >= 100);
    CHECK(txs >= 100);
}

TEST_CASE("hashblock and sequence bodies in the captures name the blocks rawblock carries")
{
    std::ifstream in(Fixtures() / "zmq.jsonl");
    std::string line;
    std::set<std::string> raw_hashes, announced;
    while (std::getline(in, line)) {
        const json m = json::parse(line);
        const auto body = *HexDecode(m["body_hex"].get<std::string>());
        if (m["topic"] == "rawblock") {
            raw_hashes.insert(btc::HashToDisplay(btc::ParseHeader(body)->hash));
        } else if (m["topic"] == "sequence" && body.size() == 33 && body[32] == 'C') {
            // display order on the wire
            announced.insert(HexEncode(std::span<const uint8_t>(body).first(32)));
        }
    }
    REQUIRE(announced.size() > 100);
    for (const auto& hash : announced) CHECK(raw_hashes.count(hash) == 1);
}

TEST_CASE("the parser refuses truncated and inflated input at every length")
{
    const Bytes bytes = AnchorBlockBytes();
    for (size_t n = 0; n < bytes.size(); ++n) {
        CHECK_FALSE(btc::ParseBlock(std::span<const uint8_t>(bytes).first(n)));
    }
    Bytes longer = bytes;
    longer.push_back(0);
    CHECK_FALSE(btc::ParseBlock(longer));
    // A flipped byte of a transaction's lock time breaks the Merkle root (a witness byte
    // would not: witnesses are committed in the coinbase, not in the header).
    Bytes flipped = bytes;
    flipped[bytes.size() - 2] ^= 1;
    CHECK_FALSE(btc::ParseBlock(flipped));
    // A transaction count no block of this size can hold.
    Bytes inflated(bytes.begin(), bytes.begin() + 80);
    for (uint8_t b : {0xfe, 0xff, 0xff, 0xff, 0x7f}) inflated.push_back(b);
    CHECK_FALSE(btc::ParseBlock(inflated));
}

TEST_CASE("Merkle branches for odd and even widths")
{
    for (size_t width = 1; width <= 17; ++width) {
        std::vector<Hash256> leaves(width);
        for (size_t i = 0; i < width; ++i) leaves[i] = Sha256(std::vector<uint8_t>{static_cast<uint8_t>(i)});
        const Hash256 root = btc::MerkleRoot(leaves);
        for (size_t i = 0; i < width; ++i) {
            CHECK(btc::RootFromBranch(leaves[i], i, btc::MerkleBranch(leaves, i)) == root);
            const auto branch = btc::MerkleBranch(leaves, i);
            if (!branch.empty() && branch[0] != leaves[i]) CHECK(btc::RootFromBranch(leaves[i], i ^ 1, branch) != root);
        }
    }
}

TEST_CASE("OP_RETURN data and anchor payloads")
{
    const Bytes one = *HexDecode("6a03010203");
    CHECK(btc::OpReturnData(one)->size() == 3);
    CHECK_FALSE(btc::OpReturnData(*HexDecode("6a0301020304")));
    CHECK_FALSE(btc::OpReturnData(*HexDecode("0014aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));
    const Hash256 root = Sha256(std::vector<uint8_t>{1});
    const Bytes payload = ledger::AnchorPayload(1234, root);
    CHECK(payload.size() == ledger::kAnchorPayloadBytes);
    CHECK(ledger::ParseAnchorPayload(payload)->tree_size == 1234);
    Bytes wrong = payload;
    wrong[4] = 2;
    CHECK_FALSE(ledger::ParseAnchorPayload(wrong));
    CHECK_FALSE(ledger::ParseAnchorPayload(std::span<const uint8_t>(payload).first(44)));
}

TEST_CASE("anchor records round-trip and reject corruption")
{
    ledger::AnchorRecord r;
    r.id = 7;
    r.state = ledger::AnchorState::Confirmed;
    r.tree_size = 99;
    r.root = Sha256(std::vector<uint8_t>{9});
    r.signed_tx = {1, 2, 3};
    r.txids = {Sha256(std::vector<uint8_t>{1}), Sha256(std::vector<uint8_t>{2})};
    r.fee_bumps = 1;
    r.note = "x";
    ledger::AnchorProofMaterial p;
    p.block_height = 102;
    p.tx = {4, 5};
    p.branch = {Sha256(std::vector<uint8_t>{3})};
    r.proof = p;
    const Bytes encoded = ledger::EncodeAnchorRecord(r);
    auto decoded = ledger::DecodeAnchorRecord(encoded);
    REQUIRE(decoded);
    CHECK(*decoded == r);
    for (size_t n = 0; n < encoded.size(); ++n) {
        CHECK_FALSE(ledger::DecodeAnchorRecord(std::span<const uint8_t>(encoded).first(n)));
    }
}

TEST_CASE("the ledger keeps anchor records atomically with their events and finds the covering anchor")
{
    ledger::testing::TempDir dir("btc-anchors");
    auto opened = ledger::Ledger::Open(dir.path / "db", {});
    REQUIRE(opened);
    auto& l = **opened;
    std::vector<ledger::Event> events;
    for (int i = 0; i < 10; ++i) {
        events.push_back(ledger::testing::ReferenceEvent(static_cast<uint64_t>(i)));
    }
    REQUIRE(l.Append(events, {}));
    ledger::AnchorRecord a;
    a.id = 1;
    a.tree_size = 4;
    a.root = *l.RootAt(4);
    REQUIRE(l.PutAnchor(a, {}));
    CHECK_FALSE(l.AnchorCovering(0)); // planned, not proven
    a.state = ledger::AnchorState::Confirmed;
    a.proof = ledger::AnchorProofMaterial{};
    ledger::AnchorEvent confirmed;
    confirmed.state = 2;
    confirmed.anchored_size = 4;
    REQUIRE(l.PutAnchor(a, {ledger::Event{std::nullopt, confirmed}}, {ledger::Cursor{"btc", 102, {}}}));
    CHECK(l.size() == 11);
    CHECK(l.GetCursor("btc")->block_number == 102);
    CHECK(l.AnchorCovering(3)->id == 1);
    CHECK_FALSE(l.AnchorCovering(4));
    ledger::AnchorRecord b = a;
    b.id = 2;
    b.tree_size = 11;
    REQUIRE(l.PutAnchor(b, {}));
    CHECK(l.AnchorCovering(4)->id == 2);
    CHECK(l.AnchorCovering(0)->id == 1);
    CHECK(l.LatestAnchor()->id == 2);
    CHECK(l.ListAnchors(0, 10).size() == 2);
    CHECK(l.ListAnchors(1, 10).front().id == 2);
    // Back to broadcast (a reorg took the block): no longer proven.
    a.state = ledger::AnchorState::Broadcast;
    a.proof.reset();
    REQUIRE(l.PutAnchor(a, {}));
    CHECK(l.AnchorCovering(0)->id == 2);
    // Only anchor events go in with a record.
    CHECK_FALSE(l.PutAnchor(a, {events[0]}));
    CHECK(l.GetTotals(false).anchor_events == 1);
}

TEST_CASE("bitcoind error mapping follows the captured answers")
{
    for (const auto& call : RpcCaptures()) {
        if (!call["response"].is_object() || !call["response"].contains("error") || call["response"]["error"].is_null()) continue;
        btc::BtcError e{btc::BtcError::Kind::Rpc, call["response"]["error"]["code"].get<int>(), 200,
                        call["response"]["error"]["message"].get<std::string>()};
        const std::string note = call["note"].is_string() ? call["note"].get<std::string>() : "";
        INFO(note << ": " << e.ToString());
        if (note == "pruned block") CHECK(e.pruned());
        if (note.find("insufficient funds") != std::string::npos) CHECK(e.insufficient_funds());
        if (note == "no wallet loaded") CHECK(e.wallet_missing());
        if (note == "unknown block hash") CHECK(e.not_found());
    }
    std::string host;
    uint16_t port = 8332;
    CHECK((btc::ParseHostPort("127.0.0.1:18443", host, port) && host == "127.0.0.1" && port == 18443));
    CHECK((btc::ParseHostPort("[::1]:1", host, port) && host == "::1" && port == 1));
    CHECK_FALSE(btc::ParseHostPort("host:0", host, port));
    CHECK_FALSE(btc::ParseHostPort("host:99999", host, port));
    CHECK(btc::ChooseZmqSubscriptions({{"pubhashblock", "tcp://a:1"}, {"pubsequence", "tcp://b:2"}}).front().topic ==
          "sequence");
    CHECK(btc::ChooseZmqSubscriptions({{"pubhashblock", "tcp://a:1"}}).front().endpoint == "tcp://a:1");
    CHECK(btc::ChooseZmqSubscriptions({{"pubrawtx", "tcp://a:1"}}).empty());
}
