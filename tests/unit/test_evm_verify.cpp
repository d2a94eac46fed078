// RLP, the Merkle-Patricia trie root, logsBloom, receipt encoding and the header hash,
// against published vectors and against real blocks and receipts captured from anvil
// (tests/fixtures/evm/, written by its capture.py); and the verdicts the follower uses.
#include "common/hex.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/rlp.h"
#include "indexer/evm/verify.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

using namespace bitacora;
using namespace bitacora::evm;
using nlohmann::json;

namespace {

Bytes Text(std::string_view text) { return Bytes(text.begin(), text.end()); }
std::string Hex(const Bytes& bytes) { return HexEncode(bytes); }

json Fixture(const std::string& name)
{
    const char* root = std::getenv("BITACORA_SOURCE_ROOT");
    REQUIRE_MESSAGE(root != nullptr, "BITACORA_SOURCE_ROOT is set by meson");
    std::ifstream file(std::string(root) + "/tests/fixtures/evm/" + name);
    REQUIRE_MESSAGE(file.good(), name);
    return json::parse(file);
}

Hash256 H(std::string_view hex)
{
    Hash256 out{};
    REQUIRE(HexDecodeExact(hex, out));
    return out;
}

std::vector<Receipt> Receipts(const json& block)
{
    auto receipts = ParseBlockReceipts(block["receipts"], 10'000);
    REQUIRE_MESSAGE(receipts, receipts.error());
    return std::move(receipts.value());
}

BlockHeader Header(const json& block)
{
    auto header = ParseBlockHeader(block["header"]);
    REQUIRE_MESSAGE(header, header.error());
    return *header;
}

} // namespace

TEST_CASE("RLP: the published examples")
{
    CHECK(Hex(rlp::EncodeString(Text("dog"))) == "83646f67");
    CHECK(Hex(rlp::EncodeString({})) == "80");
    CHECK(Hex(rlp::EncodeString(Bytes{0x00})) == "00");
    CHECK(Hex(rlp::EncodeString(Bytes{0x0f})) == "0f");
    CHECK(Hex(rlp::EncodeString(Bytes{0x80})) == "8180");
    CHECK(Hex(rlp::EncodeUint(0)) == "80");
    CHECK(Hex(rlp::EncodeUint(15)) == "0f");
    CHECK(Hex(rlp::EncodeUint(1024)) == "820400");
    CHECK(Hex(rlp::EncodeUint(UINT64_MAX)) == "88ffffffffffffffff");
    CHECK(Hex(rlp::EncodeList({})) == "c0");
    Bytes cat_dog;
    rlp::AppendString(cat_dog, Text("cat"));
    rlp::AppendString(cat_dog, Text("dog"));
    CHECK(Hex(rlp::EncodeList(cat_dog)) == "c88363617483646f67");
    // The set-theoretic representation of three: [ [], [[]], [ [], [[]] ] ].
    const Bytes empty = rlp::EncodeList({});
    const Bytes one = rlp::EncodeList(empty);
    Bytes two_payload = empty;
    two_payload.insert(two_payload.end(), one.begin(), one.end());
    Bytes three_payload = empty;
    three_payload.insert(three_payload.end(), one.begin(), one.end());
    const Bytes two = rlp::EncodeList(two_payload);
    three_payload.insert(three_payload.end(), two.begin(), two.end());
    CHECK(Hex(rlp::EncodeList(three_payload)) == "c7c0c1c0c3c0c1c0");
    const Bytes lorem = rlp::EncodeString(Text("Lorem ipsum dolor sit amet, consectetur adipisicing elit"));
    CHECK(Hex(lorem).substr(0, 6) == "b8384c");
    CHECK(lorem.size() == 2 + 56);
    // A 1024-byte string: length of length 2.
    CHECK(Hex(rlp::EncodeString(Bytes(1024, 0xaa))).substr(0, 6) == "b90400");
    CHECK(Hex(rlp::EncodeList(Bytes(60, 0x01))).substr(0, 4) == "f83c");
}

TEST_CASE("Merkle-Patricia trie root: published vectors")
{
    CHECK(HexEncode(rlp::TrieRoot({})) == "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421");
    CHECK(HexEncode(rlp::TrieRoot({{Text("doe"), Text("reindeer")}, {Text("dog"), Text("puppy")},
                                   {Text("dogglesworth"), Text("cat")}})) ==
          "8aad789dff2f538bca5d8ea56e8abe10f4c7ba3a5dea95fea4cd6e7c3a1168d3");
    // Any order of insertion gives the same root.
    CHECK(HexEncode(rlp::TrieRoot({{Text("dogglesworth"), Text("cat")}, {Text("dog"), Text("puppy")},
                                   {Text("doe"), Text("reindeer")}})) ==
          "8aad789dff2f538bca5d8ea56e8abe10f4c7ba3a5dea95fea4cd6e7c3a1168d3");
    CHECK(HexEncode(rlp::TrieRoot({{Text("A"), Text(std::string(50, 'a'))}})) ==
          "d23786fb4a010da3ce639d66d5e904a11dbc02746d1ce25029e53290cabf28ab");
}

TEST_CASE("logsBloom: every captured receipt's bloom is made of its logs, the header's of its receipts")
{
    for (const char* name : {"anvil-ethereum.json", "anvil-optimism.json"}) {
        const json fixture = Fixture(name);
        for (const auto& block : fixture["blocks"]) {
            const BlockHeader header = Header(block);
            Bloom all{};
            for (const Receipt& receipt : Receipts(block)) {
                CHECK(LogsBloom(receipt.logs) == receipt.logs_bloom);
                for (size_t i = 0; i < all.size(); ++i) all[i] |= receipt.logs_bloom[i];
                CHECK_FALSE(CheckLogsInBloom(header, receipt.logs));
            }
            CHECK(all == header.logs_bloom);
        }
    }
    // A hand-checked bit: keccak("") starts c5d2 4601 86f7: indices 0x5d2, 0x601, 0x6f7 (11 bits).
    Bloom bloom{};
    BloomAdd(bloom, Bytes{});
    size_t set = 0;
    for (uint8_t byte : bloom) set += static_cast<size_t>(__builtin_popcount(byte));
    CHECK(set == 3);
    CHECK((bloom[255 - 0x5d2 / 8] & (1 << (0x5d2 % 8))) != 0);
    CHECK((bloom[255 - 0x601 / 8] & (1 << (0x601 % 8))) != 0);
    CHECK((bloom[255 - 0x6f7 / 8] & (1 << (0x6f7 % 8))) != 0);
    CHECK(BloomContains(bloom, Bytes{}));
    CHECK_FALSE(BloomContains(bloom, Text("x")));
}

TEST_CASE("receipt encoding and receiptsRoot: captured legacy, EIP-2930, EIP-1559 and deposit receipts")
{
    size_t typed = 0, deposits = 0, blocks = 0;
    for (const char* name : {"anvil-ethereum.json", "anvil-optimism.json"}) {
        const json fixture = Fixture(name);
        for (const auto& block : fixture["blocks"]) {
            const BlockHeader header = Header(block);
            const auto receipts = Receipts(block);
            CHECK_MESSAGE(ReceiptsRoot(receipts) == header.receipts_root, name, " block ", header.number);
            for (const auto& receipt : receipts) {
                typed += receipt.type != 0 ? 1 : 0;
                if (receipt.type == 0x7e) {
                    ++deposits;
                    CHECK(receipt.deposit_nonce.has_value());
                    CHECK(receipt.deposit_receipt_version == 1);
                    // Without its nonce and version the deposit receipt is not the one committed to.
                    std::vector<Receipt> stripped = receipts;
                    for (auto& r : stripped) r.deposit_nonce.reset(), r.deposit_receipt_version.reset();
                    CHECK(ReceiptsRoot(stripped) != header.receipts_root);
                }
            }
            ++blocks;
        }
    }
    CHECK(blocks >= 8);
    CHECK(typed >= 6);
    CHECK(deposits >= 1);
    // A legacy receipt is an RLP list; a typed one is its type byte, then the list.
    Receipt legacy;
    legacy.status = true;
    legacy.cumulative_gas_used = 21'000;
    const Bytes encoded = EncodeReceipt(legacy);
    CHECK(Hex(encoded).substr(0, 14) == "f9010801825208"); // a 264-byte list: status 0x01, gas 0x5208, ...
    Receipt typed_receipt = legacy;
    typed_receipt.type = 2;
    const Bytes encoded_typed = EncodeReceipt(typed_receipt);
    CHECK(encoded_typed[0] == 0x02);
    CHECK(Bytes(encoded_typed.begin() + 1, encoded_typed.end()) == encoded);
}

TEST_CASE("header hash: every captured header's fields hash to its hash; a changed field does not")
{
    for (const char* name : {"anvil-ethereum.json", "anvil-optimism.json"}) {
        const json fixture = Fixture(name);
        for (const auto& block : fixture["blocks"]) {
            const BlockHeader header = Header(block);
            CHECK_MESSAGE(header.fields_hash == header.hash, name, " block ", header.number);
            CHECK_FALSE(CheckHeaderHash(header));
            for (const char* field : {"logsBloom", "receiptsRoot", "parentHash"}) {
                json forged = block["header"];
                std::string text = forged[field].get<std::string>();
                text[text.size() - 1] = text.back() == '1' ? '2' : '1';
                forged[field] = text;
                auto changed = ParseBlockHeader(forged);
                REQUIRE(changed);
                CHECK(CheckHeaderHash(*changed));
            }
            json missing = block["header"];
            missing.erase("requestsHash");
            auto without = ParseBlockHeader(missing);
            REQUIRE(without);
            CHECK(CheckHeaderHash(*without)); // a missing field is not the same header
        }
    }
    // The simdjson batch parser computes the same.
    const json fixture = Fixture("anvil-optimism.json");
    json batch = json::array();
    for (size_t i = 0; i < fixture["blocks"].size(); ++i) {
        batch.push_back({{"jsonrpc", "2.0"}, {"id", 7 + i}, {"result", fixture["blocks"][i]["header"]}});
    }
    AnswerParser parser;
    auto headers = parser.ParseHeaderBatch(batch.dump(), 7, fixture["blocks"].size());
    REQUIRE_MESSAGE(headers, headers.error());
    for (const auto& header : *headers) {
        CHECK(header.fields_hash == header.hash);
        CHECK(header == Header(fixture["blocks"][header.number]));
    }
}

TEST_CASE("header hash cache: the same text is a hit, a forged field after a hit is still caught, bounded")
{
    const json fixture = Fixture("anvil-optimism.json");
    const json& header_json = fixture["blocks"][1]["header"];
    const auto lookup = [](const json& object) {
        return [&object](std::string_view name) -> std::optional<std::string_view> {
            const auto it = object.find(name);
            if (it == object.end() || !it->is_string()) return std::nullopt;
            return std::string_view(it->get_ref<const std::string&>());
        };
    };
    HeaderHashCache cache(2);
    const Hash256 hash = H(header_json["hash"].get<std::string>());
    auto first = HeaderHashFromFields(lookup(header_json), &cache);
    REQUIRE(first);
    CHECK(*first == hash);
    auto again = HeaderHashFromFields(lookup(header_json), &cache);
    REQUIRE(again);
    CHECK(*again == hash);
    // The same block with one field changed (a lying node that answered honestly before).
    json forged = header_json;
    std::string root = forged["receiptsRoot"].get<std::string>();
    root.back() = root.back() == '1' ? '2' : '1';
    forged["receiptsRoot"] = root;
    auto forged_hash = HeaderHashFromFields(lookup(forged), &cache);
    REQUIRE(forged_hash);
    CHECK(*forged_hash != hash);
    json missing = header_json;
    missing.erase("requestsHash");
    auto without = HeaderHashFromFields(lookup(missing), &cache);
    REQUIRE(without);
    CHECK(*without != hash);
    // A malformed field is an error, cached or not.
    json malformed = header_json;
    malformed["stateRoot"] = "0xzz";
    CHECK_FALSE(HeaderHashFromFields(lookup(malformed), &cache));
    // Two entries: the first block was replaced by now and hashes the same again.
    auto replaced = HeaderHashFromFields(lookup(header_json), &cache);
    REQUIRE(replaced);
    CHECK(*replaced == hash);
    HeaderHashCache none(0);
    CHECK(HeaderHashFromFields(lookup(header_json), &none).value() == hash);
    CHECK_FALSE(none.Find(""));
}

TEST_CASE("CheckLogsInBloom and CheckReceipts refuse a forged topic and a dropped log")
{
    const json fixture = Fixture("anvil-optimism.json");
    const json& block = fixture["blocks"][2];
    const BlockHeader header = Header(block);
    const auto receipts = Receipts(block);
    std::vector<Log> logs;
    for (const auto& receipt : receipts) {
        for (Log log : receipt.logs) {
            log.tx_hash = receipt.tx_hash;
            logs.push_back(log);
        }
    }
    REQUIRE(logs.size() >= 3);
    const std::vector<Address> watched{logs[0].address};
    CHECK_FALSE(CheckLogsInBloom(header, logs));
    CHECK(BloomMayHoldAddress(header.logs_bloom, watched));
    CHECK_FALSE(CheckReceipts(header, receipts, logs, watched));

    std::vector<Log> forged = logs;
    forged[1].topics[0] = H("0x1111111111111111111111111111111111111111111111111111111111111111");
    const auto bloom_verdict = CheckLogsInBloom(header, forged);
    REQUIRE(bloom_verdict);
    CHECK(bloom_verdict->find("topics[0]") != std::string::npos);
    CHECK(CheckReceipts(header, receipts, forged, watched));

    std::vector<Log> dropped = logs;
    dropped.erase(dropped.begin() + 1);
    CHECK_FALSE(CheckLogsInBloom(header, dropped)); // the bloom cannot see it...
    const auto receipts_verdict = CheckReceipts(header, receipts, dropped, watched);
    REQUIRE(receipts_verdict); // ...the receipts do
    CHECK(receipts_verdict->find("eth_getLogs gave") != std::string::npos);

    std::vector<Receipt> lying = receipts;
    lying[0].logs[0].data[0] ^= 1;
    CHECK(CheckReceipts(header, lying, logs, watched)->find("root") != std::string::npos);
    // Another block's receipts (the empty block's) are not this block's.
    CHECK(CheckReceipts(header, Receipts(fixture["blocks"][3]), {}, watched));
}

TEST_CASE("JudgeQuorum: enough endpoints must give our digest")
{
    const Hash256 ours = H("0x2222222222222222222222222222222222222222222222222222222222222222");
    const Hash256 other = H("0x3333333333333333333333333333333333333333333333333333333333333333");
    std::vector<QuorumAnswer> answers{{"http://a:1", true, ours, ""}, {"http://b:2", true, other, ""},
                                      {"http://c:3", false, {}, "connection refused"}};
    auto verdict = JudgeQuorum(ours, answers, 2);
    CHECK_FALSE(verdict.agreed);
    CHECK(verdict.agreeing == 1);
    CHECK(verdict.detail.find("http://b:2: DIFFERS") != std::string::npos);
    CHECK(verdict.detail.find("http://c:3: no answer (connection refused)") != std::string::npos);
    answers[1].digest = ours;
    verdict = JudgeQuorum(ours, answers, 2);
    CHECK(verdict.agreed);
    CHECK(verdict.agreeing == 2);
}
