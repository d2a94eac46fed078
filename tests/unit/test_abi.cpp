#include "common/hex.h"
#include "indexer/evm/abi.h"
#include "indexer/evm/keccak.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

using namespace bitacora;
using namespace bitacora::evm;

namespace {

Bytes Hex(std::string_view text)
{
    std::string compact;
    for (const char c : text) {
        if (c != ' ' && c != '\n') compact.push_back(c);
    }
    auto bytes = HexDecode(compact);
    REQUIRE(bytes);
    return *bytes;
}

std::string Word(std::string_view hex_value)
{
    return std::string(64 - hex_value.size(), '0') + std::string(hex_value);
}

Hash256 Topic(std::string_view hex_value)
{
    Hash256 topic{};
    REQUIRE(HexDecodeExact(Word(hex_value), topic));
    return topic;
}

std::vector<AbiType> Types(std::initializer_list<const char*> names)
{
    std::vector<AbiType> types;
    for (const char* name : names) {
        auto type = AbiType::Parse(name);
        REQUIRE_MESSAGE(type, name);
        types.push_back(type.value());
    }
    return types;
}

} // namespace

TEST_CASE("type parsing and canonical names")
{
    CHECK(AbiType::Parse("uint")->Canonical() == "uint256");
    CHECK(AbiType::Parse("int")->Canonical() == "int256");
    CHECK(AbiType::Parse("byte")->Canonical() == "bytes1");
    CHECK(AbiType::Parse("(uint256, address)[]")->Canonical() == "(uint256,address)[]");
    CHECK(AbiType::Parse("uint8[2][]")->Canonical() == "uint8[2][]");
    CHECK(AbiType::Parse("uint8[2][]")->kind == AbiType::Kind::Array);
    CHECK(AbiType::Parse("string[3]")->IsDynamic());
    CHECK_FALSE(AbiType::Parse("uint256[3]")->IsDynamic());
    CHECK(AbiType::Parse("uint256[3]")->HeadSize() == 96);
    CHECK(AbiType::Parse("(uint256,bytes)")->HeadSize() == 32);
    for (const char* bad : {"uint7", "uint264", "uint0", "uint08", "bytes0", "bytes33", "int-8", "foo", "", "()",
                            "uint256[0]", "uint256[01]", "(uint256", "uint256)", "uint256[2", "address[]]",
                            "uint256[65537]", "uint256[65536][2]", "function"}) {
        CHECK_MESSAGE(!AbiType::Parse(bad), bad);
    }
    std::string deep = "uint8";
    for (int i = 0; i < 20; ++i) deep += "[]";
    CHECK_FALSE(AbiType::Parse(deep));
}

TEST_CASE("Solidity ABI specification example f(uint256,uint32[],bytes10,bytes)")
{
    CHECK(HexEncode(Keccak("f(uint256,uint32[],bytes10,bytes)")).substr(0, 8) == "8be65246");
    const Bytes data = Hex(
        "0000000000000000000000000000000000000000000000000000000000000123"
        "0000000000000000000000000000000000000000000000000000000000000080"
        "3132333435363738393000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000e0"
        "0000000000000000000000000000000000000000000000000000000000000002"
        "0000000000000000000000000000000000000000000000000000000000000456"
        "0000000000000000000000000000000000000000000000000000000000000789"
        "000000000000000000000000000000000000000000000000000000000000000d"
        "48656c6c6f2c20776f726c642100000000000000000000000000000000000000");
    const auto types = Types({"uint256", "uint32[]", "bytes10", "bytes"});
    const auto values = DecodeParameters(types, data);
    REQUIRE_MESSAGE(values, (values ? "" : values.error()));
    CHECK(values->at(0).ToJson() == "291");
    CHECK(values->at(1).ToJson() == nlohmann::json::array({"1110", "1929"}));
    CHECK(values->at(2).ToJson() == "0x31323334353637383930");
    CHECK(std::string(values->at(3).bytes.begin(), values->at(3).bytes.end()) == "Hello, world!");
}

TEST_CASE("Solidity ABI specification example g(uint256[][],string[])")
{
    CHECK(HexEncode(Keccak("g(uint256[][],string[])")).substr(0, 8) == "2289b18c");
    const Bytes data = Hex(
        "0000000000000000000000000000000000000000000000000000000000000040"
        "0000000000000000000000000000000000000000000000000000000000000140"
        "0000000000000000000000000000000000000000000000000000000000000002"
        "0000000000000000000000000000000000000000000000000000000000000040"
        "00000000000000000000000000000000000000000000000000000000000000a0"
        "0000000000000000000000000000000000000000000000000000000000000002"
        "0000000000000000000000000000000000000000000000000000000000000001"
        "0000000000000000000000000000000000000000000000000000000000000002"
        "0000000000000000000000000000000000000000000000000000000000000001"
        "0000000000000000000000000000000000000000000000000000000000000003"
        "0000000000000000000000000000000000000000000000000000000000000003"
        "0000000000000000000000000000000000000000000000000000000000000060"
        "00000000000000000000000000000000000000000000000000000000000000a0"
        "00000000000000000000000000000000000000000000000000000000000000e0"
        "0000000000000000000000000000000000000000000000000000000000000003"
        "6f6e650000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000003"
        "74776f0000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000005"
        "7468726565000000000000000000000000000000000000000000000000000000");
    const auto values = DecodeParameters(Types({"uint256[][]", "string[]"}), data);
    REQUIRE_MESSAGE(values, (values ? "" : values.error()));
    CHECK(values->at(0).ToJson() == nlohmann::json::parse(R"([["1","2"],["3"]])"));
    CHECK(values->at(1).ToJson() == nlohmann::json::parse(R"(["one","two","three"])"));
}

TEST_CASE("ERC-20 Transfer log with indexed addresses")
{
    auto event = EventAbi::Parse("event Transfer(address indexed from, address indexed to, uint256 value)");
    REQUIRE(event);
    CHECK(event->Signature() == "Transfer(address,address,uint256)");
    CHECK(HexEncode(event->Topic0()) == "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
    const std::vector<Hash256> topics{event->Topic0(), Topic("1111111111111111111111111111111111111111"),
                                      Topic("2222222222222222222222222222222222222222")};
    const Bytes data = Hex(Word("f4240")); // 1,000,000 = 1 USDC
    const auto values = DecodeLog(*event, topics, data);
    REQUIRE_MESSAGE(values, (values ? "" : values.error()));
    CHECK(values->at(0).ToJson() == "0x1111111111111111111111111111111111111111");
    CHECK(values->at(1).ToJson() == "0x2222222222222222222222222222222222222222");
    CHECK(values->at(2).number.ToDecimalScaled(6) == "1.000000");

    SUBCASE("wrong topic count") {
        CHECK_FALSE(DecodeLog(*event, std::span(topics).first(2), data));
    }
    SUBCASE("wrong topic0") {
        auto bad = topics;
        bad[0][0] ^= 1;
        CHECK_FALSE(DecodeLog(*event, bad, data));
    }
    SUBCASE("dirty address topic") {
        auto bad = topics;
        bad[1][0] = 1;
        const auto result = DecodeLog(*event, bad, data);
        REQUIRE_FALSE(result);
        CHECK(result.error().find("indexed parameter 0") != std::string::npos);
    }
    SUBCASE("short data") {
        CHECK_FALSE(DecodeLog(*event, topics, std::span<const uint8_t>(data).first(31)));
    }
}

TEST_CASE("indexed reference types arrive as topic hashes")
{
    auto event = EventAbi::Parse("Note(string indexed memo, uint64[] indexed ids, bytes32 indexed tag, string text)");
    REQUIRE(event);
    const Hash256 memo_hash = Keccak("hello");
    std::vector<Hash256> topics{event->Topic0(), memo_hash, Topic("ab"), Topic("cd")};
    const Bytes data = Hex(Word("20") + Word("2") + "6869" + std::string(60, '0'));
    const auto values = DecodeLog(*event, topics, data);
    REQUIRE_MESSAGE(values, (values ? "" : values.error()));
    CHECK(values->at(0).hashed_topic);
    CHECK(values->at(0).ToJson() == HexEncode0x(memo_hash));
    CHECK(values->at(1).hashed_topic);
    CHECK_FALSE(values->at(2).hashed_topic);
    CHECK(values->at(3).ToJson() == "hi");
}

TEST_CASE("value ranges are enforced")
{
    SUBCASE("uint8 above 255") {
        CHECK_FALSE(DecodeParameters(Types({"uint8"}), Hex(Word("100"))));
        CHECK(DecodeParameters(Types({"uint8"}), Hex(Word("ff"))));
    }
    SUBCASE("int8 sign extension") {
        CHECK(DecodeParameters(Types({"int8"}), Hex(std::string(62, 'f') + "80"))->at(0).ToJson() == "-128");
        CHECK(DecodeParameters(Types({"int8"}), Hex(Word("7f")))->at(0).ToJson() == "127");
        CHECK_FALSE(DecodeParameters(Types({"int8"}), Hex(Word("80"))));                     // 128 does not fit
        CHECK_FALSE(DecodeParameters(Types({"int8"}), Hex(std::string(62, 'f') + "7f"))); // -129 does not fit
        CHECK(DecodeParameters(Types({"int256"}), Hex(std::string(64, 'f')))->at(0).ToJson() == "-1");
    }
    SUBCASE("bool is 0 or 1") {
        CHECK(DecodeParameters(Types({"bool"}), Hex(Word("1")))->at(0).ToJson() == true);
        CHECK_FALSE(DecodeParameters(Types({"bool"}), Hex(Word("2"))));
    }
    SUBCASE("bytesN padding must be zero") {
        CHECK_FALSE(DecodeParameters(Types({"bytes2"}), Hex("aabbcc" + std::string(58, '0'))));
        CHECK(DecodeParameters(Types({"bytes2"}), Hex("aabb" + std::string(60, '0')))->at(0).ToJson() == "0xaabb");
    }
}

TEST_CASE("malformed encodings are decode errors")
{
    const auto bytes_type = Types({"bytes"});
    SUBCASE("offset out of range") {
        CHECK_FALSE(DecodeParameters(bytes_type, Hex(Word("40") + Word("0"))));
        CHECK_FALSE(DecodeParameters(bytes_type, Hex(std::string(64, 'f'))));
    }
    SUBCASE("length over the data") {
        CHECK_FALSE(DecodeParameters(bytes_type, Hex(Word("20") + Word("21") + Word("0"))));
        CHECK_FALSE(DecodeParameters(bytes_type, Hex(Word("20") + std::string(64, 'f'))));
    }
    SUBCASE("array length over the data") {
        CHECK_FALSE(DecodeParameters(Types({"uint256[]"}), Hex(Word("20") + Word("2") + Word("1"))));
        CHECK_FALSE(DecodeParameters(Types({"uint256[]"}), Hex(Word("20") + "ff" + std::string(62, '0'))));
    }
    SUBCASE("empty data") {
        CHECK_FALSE(DecodeParameters(Types({"uint256"}), Bytes{}));
        CHECK(DecodeParameters(std::vector<AbiType>{}, Bytes{})->empty());
    }
    SUBCASE("aliased offsets cannot multiply the work") {
        // 64 heads of a string[] all pointing at one 1-KiB string: output would be 64 KiB from 3 KiB.
        std::string hex = Word("20") + Word("40");
        for (int i = 0; i < 64; ++i) hex += Word("800");
        hex += Word("400") + std::string(2048, 'a');
        const auto result = DecodeParameters(Types({"string[]"}), Hex(hex));
        REQUIRE_FALSE(result);
        CHECK(result.error().find("more") != std::string::npos);
    }
}

TEST_CASE("events from a JSON ABI, tuples included")
{
    const auto abi = nlohmann::json::parse(R"([
      {"type":"function","name":"foo","inputs":[],"outputs":[]},
      {"type":"event","name":"OrderCreated","anonymous":false,"inputs":[
        {"name":"orderId","type":"uint256","indexed":true},
        {"name":"seller","type":"address","indexed":true},
        {"name":"terms","type":"tuple","indexed":false,"components":[
          {"name":"amount","type":"uint256"},{"name":"memo","type":"string"}]},
        {"name":"legs","type":"tuple[2][]","indexed":false,"components":[
          {"name":"a","type":"uint8"}]}
      ]}
    ])");
    const auto events = EventsFromAbiJson(abi);
    REQUIRE_MESSAGE(events, (events ? "" : events.error()));
    REQUIRE(events->size() == 1);
    const EventAbi& event = events->front();
    CHECK(event.Signature() == "OrderCreated(uint256,address,(uint256,string),(uint8)[2][])");
    CHECK(event.params[2].type.names == std::vector<std::string>{"amount", "memo"});

    const std::vector<Hash256> topics{event.Topic0(), Topic("7"), Topic("abcdef")};
    const Bytes data = Hex(Word("40") + Word("c0") +                  // heads: terms, legs
                           Word("5") + Word("40") + Word("2") + "6f6b" + std::string(60, '0') + // terms
                           Word("1") + Word("3") + Word("4"));       // legs: one pair (3, 4)
    const auto values = DecodeLog(event, topics, data);
    REQUIRE_MESSAGE(values, (values ? "" : values.error()));
    CHECK(values->at(0).ToJson() == "7");
    CHECK(values->at(1).ToJson() == "0x0000000000000000000000000000000000abcdef");
    CHECK(values->at(2).ToJson() == nlohmann::json::parse(R"(["5","ok"])"));
    CHECK(values->at(3).ToJson() == nlohmann::json::parse(R"([[["3"],["4"]]])"));

    CHECK_FALSE(EventsFromAbiJson(nlohmann::json::object()));
    CHECK_FALSE(EventAbi::FromJson(nlohmann::json::parse(R"({"type":"event","name":"X","inputs":[{"name":"t","type":"tuple"}]})")));
    CHECK_FALSE(EventAbi::Parse("E(uint256 indexed a, uint256 indexed b, uint256 indexed c, uint256 indexed d)"));
    CHECK(EventAbi::Parse("E(uint256 indexed a, uint256 indexed b, uint256 indexed c, uint256 indexed d) anonymous"));
}
