// The EVM side's input handling: provider range-limit messages, strict block and log
// parsing, log decoding into ledger events, and the JSON-RPC client against a scripted
// HTTP server on loopback (retries, Retry-After, failover, truncated bodies, batches).
#include "common/logging.h"
#include "common/upstream_monitor.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/json_rpc_client.h"
#include "indexer/evm/keccak.h"
#include "indexer/evm/log_decoder.h"
#include "indexer/evm/platform_events.h"
#include "indexer/evm/range_limit.h"

#include <doctest/doctest.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <future>
#include <thread>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::evm;
using nlohmann::json;

TEST_CASE("every provider phrase of the fixture gives the advice it documents")
{
    struct Case {
        const char* message;
        RangeAdvice::Kind kind;
        uint64_t blocks;
    };
    using K = RangeAdvice::Kind;
    const Case cases[] = {
        {"Log response size exceeded. ... this block range should work: [0x10, 0x2f]", K::Blocks, 32},
        {"query returned more than 10000 results. Try with this block range [0x100, 0x1ff].", K::Blocks, 256},
        {"block range too large", K::Blocks, 2000},
        {"no backend is currently healthy to serve traffic", K::Halve, 0},
        {"backend response too large", K::Halve, 0},
        {"Block range is too large", K::Halve, 0},
        {"please limit the query to at most 1000 blocks", K::Blocks, 999},
        {"eth_getLogs is limited to a 10,000 range", K::Blocks, 10000},
        {"eth_getLogs and eth_newFilter are limited to a 10.000 range", K::Blocks, 10000},
        {"range is limited to 5000 block", K::Blocks, 5000},
        {"response size should not greater than 10000000 bytes", K::Halve, 0},
        {"query returned more than 10000 results", K::Halve, 0},
        {"query exceeds max results 20000, retry with the range 1-2", K::Halve, 0},
        {"block range is too wide", K::Blocks, 3000},
        {"maximum [from, to] blocks distance: 2500", K::Blocks, 2500},
        {"logs matched by query exceeds limit of 10000", K::Halve, 0},
        {"requested too many blocks from 0 to 5000, maximum is set to 2048", K::Blocks, 2047},
        {"Max range: 3500", K::Blocks, 3499},
        {"Maximum allowed number of requested blocks is 1000", K::Blocks, 1000},
        {"Block range limit exceeded.", K::Blocks, 100},
        {"exceeds the range allowed for your plan (5000 > 500).", K::Blocks, 500},
        {"maximum block range: 50000", K::Blocks, 50000},
        {"query exceeds max block range 1000", K::Blocks, 1000},
        {"block range is too wide (maximum 1024)", K::Blocks, 1024},
        {"up to a 2000 block range", K::Blocks, 2000},
        {"query must be smaller than size 1024", K::Blocks, 1024},
        {"block range greater than 10000 max", K::Blocks, 10000},
        {"block range exceeds 1000", K::Blocks, 1000},
        {"eth_getLogs range is too large, max is 10k blocks", K::Blocks, 10000},
    };
    for (const auto& c : cases) {
        const RangeAdvice advice = AdviseLogRange(c.message, 5000);
        CHECK_MESSAGE(advice.kind == c.kind, c.message);
        if (c.kind == K::Blocks) CHECK_MESSAGE(advice.blocks == c.blocks, c.message);
    }
    // Chainstack's limit depends on the plan: 10,000 on paid plans.
    CHECK(AdviseLogRange("Block range limit exceeded.", 20000).blocks == 10000);
    // Anything else is not a range error: back off and ask again, never skip.
    CHECK(AdviseLogRange("header not found", 100).kind == K::NotRangeError);
    CHECK(AdviseLogRange("execution reverted", 100).kind == K::NotRangeError);
    // A phrase without its number still shrinks.
    CHECK(AdviseLogRange("Max range: lots", 100).kind == K::Halve);
}

TEST_CASE("quantities, hashes and addresses are parsed strictly")
{
    CHECK(*ParseQuantity("0x0") == 0);
    CHECK(*ParseQuantity("0x1f") == 31);
    CHECK(*ParseQuantity("0xffffffffffffffff") == UINT64_MAX);
    CHECK_FALSE(ParseQuantity("0x10000000000000000"));
    CHECK_FALSE(ParseQuantity("0x"));
    CHECK_FALSE(ParseQuantity("12"));
    CHECK_FALSE(ParseQuantity("0xg"));
    CHECK_FALSE(ParseQuantity(12));
    CHECK(FormatQuantity(255) == "0xff");
    CHECK_FALSE(ParseHash("0x1234"));
    CHECK(ParseHash("0x" + std::string(64, 'a')));
    CHECK_FALSE(ParseAddress("0x" + std::string(38, 'a')));
    CHECK(ParseAddress("0x" + std::string(40, 'A')));
}

namespace {

json SampleLog()
{
    return {{"address", "0x" + std::string(40, '1')},
            {"topics", json::array({"0x" + std::string(64, 'a')})},
            {"data", "0x0102"},
            {"blockNumber", "0x10"},
            {"blockHash", "0x" + std::string(64, 'b')},
            {"transactionHash", "0x" + std::string(64, 'c')},
            {"transactionIndex", "0x0"},
            {"logIndex", "0x3"},
            {"removed", false}};
}

} // namespace

TEST_CASE("a log with any field missing or malformed is refused")
{
    REQUIRE(ParseLog(SampleLog()));
    CHECK(ParseLog(SampleLog())->log_index == 3);
    for (const char* field : {"address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex"}) {
        json missing = SampleLog();
        missing.erase(field);
        CHECK_MESSAGE(!ParseLog(missing), field);
        json wrong = SampleLog();
        wrong[field] = "0xzz";
        CHECK_MESSAGE(!ParseLog(wrong), field);
    }
    json five_topics = SampleLog();
    five_topics["topics"] = json::array({"0x" + std::string(64, 'a'), "0x" + std::string(64, 'a'), "0x" + std::string(64, 'a'),
                                         "0x" + std::string(64, 'a'), "0x" + std::string(64, 'a')});
    CHECK_FALSE(ParseLog(five_topics));
    json odd_data = SampleLog();
    odd_data["data"] = "0x123";
    CHECK_FALSE(ParseLog(odd_data));
    const auto too_many = ParseLogs(json::array({SampleLog(), SampleLog()}), 1);
    REQUIRE_FALSE(too_many);
    CHECK(too_many.error_kind() == ErrorKind::TooLarge); // the follower halves its range on this kind
    CHECK_FALSE(ParseLogs(json::object(), 10));
    CHECK_FALSE(ParseBlockHeader(nullptr));
    CHECK_FALSE(ParseBlockHeader(json{{"number", "0x1"}, {"hash", "0x" + std::string(64, '1')}}));
}

TEST_CASE("eth_getLogs answers and header batches read with simdjson, every malformation refused")
{
    AnswerParser parser;
    const json log = SampleLog();
    const std::string good = json{{"jsonrpc", "2.0"}, {"id", 7}, {"result", json::array({log, log})}}.dump();
    auto answer = parser.ParseGetLogs(good, 7, 10);
    REQUIRE(answer);
    REQUIRE(answer->logs.size() == 2);
    const auto expected = ParseLog(log);
    CHECK(answer->logs[0].log_index == expected->log_index);
    CHECK(answer->logs[0].block_hash == expected->block_hash);
    CHECK(answer->logs[0].topics == expected->topics);
    CHECK(answer->logs[0].data == expected->data);

    CHECK_FALSE(parser.ParseGetLogs(good, 8, 10));                        // another request's answer
    const auto over = parser.ParseGetLogs(good, 7, 1);
    REQUIRE_FALSE(over);
    CHECK(over.error_kind() == ErrorKind::TooLarge); // over the limit
    CHECK_FALSE(parser.ParseGetLogs(good.substr(0, good.size() / 2), 7, 10)); // cut short
    CHECK_FALSE(parser.ParseGetLogs("", 7, 10));
    CHECK_FALSE(parser.ParseGetLogs(R"({"jsonrpc":"2.0","id":7})", 7, 10));
    for (const char* field : {"address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex"}) {
        json broken = log;
        broken[field] = "0xzz";
        CHECK_MESSAGE(!parser.ParseGetLogs(json{{"jsonrpc", "2.0"}, {"id", 7}, {"result", json::array({broken})}}.dump(), 7, 10), field);
        broken.erase(field);
        CHECK_MESSAGE(!parser.ParseGetLogs(json{{"jsonrpc", "2.0"}, {"id", 7}, {"result", json::array({broken})}}.dump(), 7, 10), field);
    }
    auto error = parser.ParseGetLogs(
        R"({"jsonrpc":"2.0","id":7,"error":{"code":-32005,"message":"query returned more than 10000 results","data":{"limit":10000}}})", 7, 10);
    REQUIRE(error);
    CHECK(error->is_error);
    CHECK(error->error_code == -32005);
    CHECK(error->error_message.starts_with("query returned more than 10000 results"));

    // A batch of eth_getLogs by block hash: answers in id order, an error answer kept as one.
    const json one = {{"jsonrpc", "2.0"}, {"id", 21}, {"result", json::array({log})}};
    const json gone = {{"jsonrpc", "2.0"}, {"id", 22}, {"error", {{"code", -32000}, {"message", "unknown block"}}}};
    const json none = {{"jsonrpc", "2.0"}, {"id", 20}, {"result", json::array()}};
    auto batch = parser.ParseGetLogsBatch(json::array({one, gone, none}).dump(), 20, 3, 10);
    REQUIRE(batch);
    CHECK((*batch)[0].logs.empty());
    CHECK((*batch)[1].logs.size() == 1);
    CHECK((*batch)[2].is_error);
    CHECK((*batch)[2].error_message == "unknown block");
    CHECK_FALSE(parser.ParseGetLogsBatch(json::array({one, none}).dump(), 20, 3, 10));      // short
    CHECK_FALSE(parser.ParseGetLogsBatch(json::array({one, one, none}).dump(), 20, 3, 10)); // repeated id
    CHECK_FALSE(parser.ParseGetLogsBatch(gone.dump(), 22, 1, 10));                        // one object for a batch
    const auto batch_over = parser.ParseGetLogsBatch(json::array({one}).dump(), 21, 1, 0);
    REQUIRE_FALSE(batch_over);
    CHECK(batch_over.error_kind() == ErrorKind::TooLarge);

    const std::string hash = "0x" + std::string(64, '1');
    auto header = [&](int id, int number) {
        return json{{"jsonrpc", "2.0"}, {"id", id},
                    {"result", {{"number", FormatQuantity(number)}, {"hash", hash}, {"parentHash", hash}, {"timestamp", "0x5"},
                                {"transactions", json::array({hash, hash})}}}};
    };
    auto headers = parser.ParseHeaderBatch(json::array({header(11, 2), header(10, 1)}).dump(), 10, 2);
    REQUIRE(headers);
    CHECK((*headers)[0].number == 1); // in id order, whatever the answer's order
    CHECK((*headers)[1].number == 2);
    CHECK_FALSE(parser.ParseHeaderBatch(json::array({header(10, 1)}).dump(), 10, 2));                 // short
    CHECK_FALSE(parser.ParseHeaderBatch(json::array({header(10, 1), header(10, 1)}).dump(), 10, 2));  // repeated id
    CHECK_FALSE(parser.ParseHeaderBatch(json::array({header(10, 1), json{{"id", 11}, {"result", nullptr}}}).dump(), 10, 2));
    // A refused call is the node failing (retried as such); a malformed answer is not.
    const auto refused = parser.ParseHeaderBatch(
        json::array({header(10, 1), json{{"id", 11}, {"error", {{"code", -32005}, {"message", "rate limited"}}}}}).dump(), 10, 2);
    REQUIRE_FALSE(refused);
    CHECK(refused.error_kind() == ErrorKind::Upstream);
    const auto cut = parser.ParseHeaderBatch(json::array({header(10, 1), header(11, 2)}).dump().substr(0, 40), 10, 2);
    REQUIRE_FALSE(cut);
    CHECK(cut.error_kind() != ErrorKind::Upstream);
}

TEST_CASE("platform logs decode into ledger events; anything else is kept raw")
{
    Address escrow{};
    escrow.fill(0xe5);
    Address vault{};
    vault.fill(0x7a);
    const LogDecoder decoder(31337, escrow, vault);

    Log log;
    log.address = escrow;
    log.block_number = 9;
    log.log_index = 2;
    log.topics.push_back(Keccak(std::string_view("ReputationChanged(address,uint8,uint8)")));
    Hash256 seller{};
    seller[31] = 0x44;
    log.topics.push_back(seller);
    log.data.assign(64, 0);
    log.data[31] = 50;
    log.data[63] = 51;
    auto decoded = decoder.Decode(log);
    REQUIRE(decoded);
    CHECK_FALSE(decoded->raw);
    const auto* body = std::get_if<ledger::ReputationChanged>(&decoded->event.body);
    REQUIRE(body != nullptr);
    CHECK(body->previous == 50);
    CHECK(body->current == 51);
    CHECK(body->seller[19] == 0x44);
    CHECK(decoded->event.origin->chain_id == 31337);
    CHECK(decoded->event.origin->log_index == 2);

    // The same event at the vault's address is not a vault event: raw.
    log.address = vault;
    decoded = decoder.Decode(log);
    REQUIRE(decoded);
    CHECK(decoded->raw);
    CHECK(std::get<ledger::RawEvmLog>(decoded->event.body).topics == log.topics);

    // A known event whose data does not decode (dirty bits in a uint8) is kept raw too.
    log.address = escrow;
    log.data[30] = 1;
    decoded = decoder.Decode(log);
    REQUIRE(decoded);
    CHECK(decoded->raw);

    // An address we did not ask for is an error, not an event.
    log.address.fill(0x01);
    CHECK_FALSE(decoder.Decode(log));
}

TEST_CASE("the decoder's fast path accepts exactly the logs the ABI decoder accepts")
{
    Address escrow{};
    escrow.fill(0xe5);
    Address vault{};
    vault.fill(0x7a);
    const LogDecoder decoder(1, escrow, vault);
    uint64_t state = 88172645463325252ull;
    auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    size_t decoded = 0;
    size_t raw = 0;
    for (const auto& event : PlatformEvents()) {
        for (int round = 0; round < 200; ++round) {
            Log log;
            log.address = event.contract == PlatformContract::Escrow ? escrow : vault;
            log.topics.push_back(event.abi.Topic0());
            for (const auto& param : event.abi.params) {
                Hash256 word{};
                for (auto& b : word) b = static_cast<uint8_t>(next());
                // Mostly clean words of the parameter's type, sometimes dirty ones.
                if (next() % 4 != 0) {
                    const size_t keep = param.type.kind == AbiType::Kind::Address ? 20
                                        : param.type.kind == AbiType::Kind::Bool ? 1
                                        : param.type.kind == AbiType::Kind::Uint ? param.type.size / 8
                                                                                 : 32;
                    std::fill(word.begin(), word.end() - static_cast<std::ptrdiff_t>(keep), 0);
                    if (param.type.kind == AbiType::Kind::Bool) word[31] &= 1;
                }
                if (param.indexed) log.topics.push_back(word);
                else log.data.insert(log.data.end(), word.begin(), word.end());
            }
            const bool abi_ok = DecodeLog(event.abi, log.topics, log.data).ok();
            const auto result = decoder.Decode(log);
            REQUIRE(result);
            const bool has_ledger_form = event.abi.name != "RoleAdminChanged";
            CHECK_MESSAGE(result->raw == (!abi_ok || !has_ledger_form), event.abi.name);
            (result->raw ? raw : decoded) += 1;
        }
    }
    CHECK(decoded > 1000);
    CHECK(raw > 500);
}

namespace {

// A loopback HTTP server that answers each request with the next scripted response.
class ScriptedServer {
public:
    struct Response {
        int status{200};
        std::string body;
        std::string extra_headers;
        bool truncate{false};
        int delay_ms{0};
        int stall_ms{0}; // after half the body, wait this long before the rest (a hung node)
    };

    ScriptedServer()
    {
        m_fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        socklen_t len = sizeof(addr);
        ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len);
        m_port = ntohs(addr.sin_port);
        REQUIRE(::listen(m_fd, 16) == 0);
        m_thread = std::thread([this] { Serve(); });
    }
    ~ScriptedServer()
    {
        m_stop = true;
        ::shutdown(m_fd, SHUT_RDWR);
        ::close(m_fd);
        m_thread.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port) + "/v2/secret-key"; }
    void Push(Response response)
    {
        std::lock_guard lock(m_mutex);
        m_script.push_back(std::move(response));
    }
    // Answers requests with {"result": <request id echo>} once the script is used up.
    int requests() const { return m_requests.load(); }
    std::string last_body() const
    {
        std::lock_guard lock(m_mutex);
        return m_last_body;
    }

private:
    void Serve()
    {
        while (!m_stop) {
            const int client = ::accept(m_fd, nullptr, nullptr);
            if (client < 0) return;
            std::thread([this, client] { Handle(client); }).detach();
        }
    }

    void Handle(int client)
    {
        std::string buffer;
        char chunk[65536];
        for (;;) {
            // One request: headers, then Content-Length bytes.
            size_t header_end;
            while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
                const ssize_t n = ::recv(client, chunk, sizeof(chunk), 0);
                if (n <= 0) {
                    ::close(client);
                    return;
                }
                buffer.append(chunk, static_cast<size_t>(n));
            }
            const auto cl = buffer.find("Content-Length: ");
            const size_t length = cl == std::string::npos ? 0 : std::stoul(buffer.substr(cl + 16));
            while (buffer.size() < header_end + 4 + length) {
                const ssize_t n = ::recv(client, chunk, sizeof(chunk), 0);
                if (n <= 0) {
                    ::close(client);
                    return;
                }
                buffer.append(chunk, static_cast<size_t>(n));
            }
            const std::string body = buffer.substr(header_end + 4, length);
            buffer.erase(0, header_end + 4 + length);
            ++m_requests;
            Response response;
            {
                std::lock_guard lock(m_mutex);
                m_last_body = body;
                if (!m_script.empty()) {
                    response = m_script.front();
                    m_script.pop_front();
                } else {
                    const json request = json::parse(body);
                    response.body = json{{"jsonrpc", "2.0"}, {"id", request["id"]}, {"result", "ok"}}.dump();
                }
            }
            if (response.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(response.delay_ms));
            std::string out = "HTTP/1.1 " + std::to_string(response.status) + " X\r\nContent-Type: application/json\r\n" +
                              response.extra_headers + "Content-Length: " + std::to_string(response.body.size()) + "\r\n\r\n";
            if (response.stall_ms > 0) {
                out += response.body.substr(0, response.body.size() / 2);
                ::send(client, out.data(), out.size(), MSG_NOSIGNAL);
                std::this_thread::sleep_for(std::chrono::milliseconds(response.stall_ms));
                out = response.body.substr(response.body.size() / 2);
            } else {
                out += response.truncate ? response.body.substr(0, response.body.size() / 2) : response.body;
            }
            ::send(client, out.data(), out.size(), MSG_NOSIGNAL);
            if (response.truncate) {
                ::close(client);
                return;
            }
        }
    }

    int m_fd{-1};
    uint16_t m_port{0};
    std::thread m_thread;
    std::atomic<bool> m_stop{false};
    std::atomic<int> m_requests{0};
    mutable std::mutex m_mutex;
    std::deque<Response> m_script;
    std::string m_last_body;
};

RpcClientOptions FastOptions(std::vector<std::string> urls)
{
    RpcClientOptions options;
    options.urls = std::move(urls);
    options.timeout_ms = 500;
    options.backoff_initial_ms = 10;
    options.backoff_max_ms = 50;
    options.attempts_max = 5;
    return options;
}

std::string Answer(int id, const json& result)
{
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", result}}.dump();
}

} // namespace

TEST_CASE("the client retries transport errors, bad bodies and 5xx, and returns JSON-RPC errors as they are")
{
    ScriptedServer server;
    server.Push({.status = 500, .body = "oops"});
    server.Push({.body = "not json"});
    server.Push({.body = Answer(1, "0x1"), .truncate = true});
    server.Push({.body = Answer(99, "0x1")}); // an answer to another request
    server.Push({.body = Answer(1, "0x7a69")});
    JsonRpcClient client(FastOptions({server.url()}), nullptr);
    auto result = client.Call("eth_chainId");
    REQUIRE(result);
    CHECK(result.value() == "0x7a69");
    CHECK(client.stats().retries == 4);
    CHECK(server.last_body().find("\"method\":\"eth_chainId\"") != std::string::npos);

    server.Push({.body = json{{"jsonrpc", "2.0"}, {"id", 2}, {"error", {{"code", -32005}, {"message", "query returned more than 10000 results"}}}}.dump()});
    auto error = client.Call("eth_getLogs", json::array({json::object()}));
    REQUIRE_FALSE(error);
    CHECK(error.error().kind == RpcError::Kind::Rpc);
    CHECK(error.error().code == -32005);
    CHECK(error.error().message == "query returned more than 10000 results");
    // Credentials and paths never reach logs.
    CHECK(error.error().endpoint.find("secret") == std::string::npos);
    CHECK(RedactUrl("https://user:pw@host.example:8545/v2/KEY?x=1") == "https://host.example:8545");
}

namespace {

std::string Gzip(const std::string& text)
{
    z_stream stream{};
    REQUIRE(deflateInit2(&stream, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK); // 16: gzip framing
    std::string out(deflateBound(&stream, text.size()), '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    stream.avail_in = static_cast<uInt>(text.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

} // namespace

TEST_CASE("hostile answers: deep nesting, oversized and gzip-inflated bodies, a transfer hung at shutdown")
{
    ScriptedServer server;
    const std::string deep = std::string(200'000, '[') + std::string(200'000, ']');
    // An id, an error and an error's data nested 200,000 deep killed the daemon at eth_chainId.
    server.Push({.body = R"({"jsonrpc":"2.0","id":)" + deep + R"(,"result":"0x1"})"});
    server.Push({.body = R"({"jsonrpc":"2.0","id":1,"error":)" + deep + "}"});
    server.Push({.body = R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x","data":)" + deep + "}}"});
    server.Push({.body = Answer(1, "0x2105")});
    JsonRpcClient client(FastOptions({server.url()}), nullptr);
    auto chain = client.Call("eth_chainId");
    REQUIRE(chain);
    CHECK(chain.value() == "0x2105");
    CHECK(client.stats().malformed == 3);

    // Too large: cut off at the cap, and not asked again (the caller asks for less).
    RpcClientOptions small = FastOptions({server.url()});
    small.response_bytes_max = 1 << 20;
    small.logs_response_bytes_max = 2 << 20;
    JsonRpcClient capped(small, nullptr);
    const int before = server.requests();
    server.Push({.body = Answer(1, std::string(3 << 20, 'a'))});
    auto big = capped.CallRaw("eth_getLogs", json::array());
    REQUIRE_FALSE(big);
    CHECK(big.error().kind == RpcError::Kind::TooLarge);
    CHECK(server.requests() == before + 1);
    // The cap counts inflated bytes: 64 MiB of zeros is 64 KiB of gzip.
    server.Push({.body = Gzip(Answer(2, std::string(64 << 20, '0'))), .extra_headers = "Content-Encoding: gzip\r\n"});
    auto bomb = capped.Call("eth_blockNumber");
    REQUIRE_FALSE(bomb);
    CHECK(bomb.error().kind == RpcError::Kind::TooLarge);

    // An endpoint that sends too much does not hold the client: the next one is asked.
    ScriptedServer honest;
    RpcClientOptions two = small;
    two.urls = {server.url(), honest.url()};
    JsonRpcClient failover(two, nullptr);
    const int lying_before = server.requests();
    server.Push({.body = Answer(1, std::string(3 << 20, 'a'))});
    honest.Push({.body = Answer(1, json::array())});
    auto served = failover.CallRaw("eth_getLogs", json::array());
    REQUIRE(served);
    CHECK(server.requests() == lying_before + 1);
    CHECK(honest.requests() == 1);

    // A transfer in flight ends when the daemon stops, not when the node finishes.
    StopSignal stop;
    RpcClientOptions slow = FastOptions({server.url()});
    slow.timeout_ms = 60'000;
    JsonRpcClient stoppable(slow, &stop);
    server.Push({.body = Answer(1, std::string(1 << 16, 'a')), .stall_ms = 20'000});
    auto stopper = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        stop.Stop();
    });
    const auto started = std::chrono::steady_clock::now();
    auto stopped = stoppable.Call("eth_blockNumber");
    stopper.get();
    REQUIRE_FALSE(stopped);
    CHECK(stopped.error().kind == RpcError::Kind::Stopped);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
}

TEST_CASE("HTTP 429 waits for Retry-After; JSON-RPC rate-limit messages count as rate limits")
{
    ScriptedServer server;
    server.Push({.status = 429, .body = "{}", .extra_headers = "Retry-After: 1\r\n"});
    JsonRpcClient client(FastOptions({server.url()}), nullptr);
    const auto started = std::chrono::steady_clock::now();
    REQUIRE(client.Call("eth_blockNumber"));
    CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(900));
    CHECK(client.stats().rate_limited == 1);
    CHECK(IsRateLimitMessage("Your app has exceeded its compute units per second capacity"));
    CHECK(IsRateLimitMessage("rate limit exceeded"));
    CHECK_FALSE(IsRateLimitMessage("execution reverted"));
}

TEST_CASE("a failing endpoint fails over to the next, and a stop request ends the waiting")
{
    ScriptedServer good;
    JsonRpcClient client(FastOptions({"http://127.0.0.1:1/", good.url()}), nullptr); // port 1: refused
    REQUIRE(client.Call("eth_blockNumber"));
    CHECK(client.stats().failovers >= 1);
    CHECK(client.current_endpoint() == RedactUrl(good.url()));

    StopSignal stop;
    RpcClientOptions options = FastOptions({"http://127.0.0.1:1/"});
    options.attempts_max = 1000;
    options.backoff_initial_ms = 200;
    options.backoff_max_ms = 200;
    JsonRpcClient stopping(options, &stop);
    std::thread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        stop.Stop();
    });
    auto result = stopping.Call("eth_blockNumber");
    stopper.join();
    REQUIRE_FALSE(result);
    CHECK(result.error().kind == RpcError::Kind::Stopped);
}

TEST_CASE("batch answers are matched by id in any order; a short or repeated batch is retried")
{
    ScriptedServer server;
    server.Push({.body = json::array({json::parse(Answer(1, "a"))}).dump()}); // short
    server.Push({.body = json::array({json::parse(Answer(1, "a")), json::parse(Answer(1, "b")), json::parse(Answer(2, "c"))})
                             .dump()}); // a repeated id
    server.Push({.body = json::array({json::parse(Answer(3, "c")), json::parse(Answer(1, "a")),
                                      json{{"jsonrpc", "2.0"}, {"id", 2}, {"error", {{"code", -32000}, {"message", "unknown block"}}}}})
                             .dump()}); // out of order, one error
    JsonRpcClient client(FastOptions({server.url()}), nullptr);
    const std::vector<RpcRequest> requests{{"a", json::array()}, {"b", json::array()}, {"c", json::array()}};
    auto answers = client.Batch(requests);
    REQUIRE(answers);
    REQUIRE(answers->size() == 3);
    CHECK((*answers)[0].value() == "a");
    CHECK_FALSE((*answers)[1]);
    CHECK((*answers)[1].error().message == "unknown block");
    CHECK((*answers)[2].value() == "c");
    CHECK(server.requests() == 3);
    CHECK(client.stats().malformed == 2);
}

TEST_CASE("an upstream monitor counts each failed exchange as it happens and logs a hung request while it hangs")
{
    using namespace std::chrono_literals;
    // Refused connections: counted per endpoint during the call, not after it (the
    // follower published its client's totals only after a step, so a node down at start
    // showed zero errors for as long as it stayed down).
    auto monitor = std::make_shared<UpstreamMonitor>("evm", 500ms);
    RpcClientOptions refused = FastOptions({"http://127.0.0.1:1/key"});
    refused.attempts_max = 40;
    refused.monitor = monitor;
    JsonRpcClient client(refused, nullptr);
    auto call = std::async(std::launch::async, [&] { return client.Call("eth_chainId"); });
    uint64_t seen_during_call = 0;
    for (int i = 0; i < 200 && seen_during_call == 0; ++i) {
        std::this_thread::sleep_for(10ms);
        const auto s = monitor->snapshot();
        if (!s.endpoints.empty() && s.endpoints[0].errors.contains("transport")) seen_during_call = s.endpoints[0].errors.at("transport");
    }
    CHECK(call.wait_for(0s) == std::future_status::timeout); // still retrying
    CHECK(seen_during_call > 0);
    REQUIRE_FALSE(call.get());
    auto s = monitor->snapshot();
    REQUIRE(s.endpoints.size() == 1);
    CHECK(s.endpoints[0].endpoint == "http://127.0.0.1:1"); // redacted: no key
    CHECK(s.endpoints[0].errors.at("transport") == 40);
    CHECK(s.endpoints[0].requests == 40);
    CHECK(s.failures_in_row == 40);
    CHECK_FALSE(s.last_answer);
    const auto now = UpstreamMonitor::Clock::now();
    CHECK(JudgeUpstream(s, now, 500ms, 60s).state == UpstreamVerdict::State::Failing);
    CHECK(JudgeUpstream(s, now + 61s, 500ms, 60s).state == UpstreamVerdict::State::Stalled);
    CHECK(JudgeUpstream(s, now, 500ms, 60s).reason.find("transport error") != std::string::npos);

    // A node that sends half an answer, then nothing: logged once while it hangs.
    std::vector<std::string> lines;
    std::mutex lines_mutex;
    log::GetLogger().SetCallbackForTesting([&](std::string_view line) {
        std::lock_guard lock(lines_mutex);
        lines.emplace_back(line);
    });
    auto logged = [&](std::string_view what) {
        std::lock_guard lock(lines_mutex);
        return std::count_if(lines.begin(), lines.end(), [&](const auto& l) { return l.find(what) != std::string::npos; });
    };
    ScriptedServer server;
    server.Push({.body = Answer(1, std::string(1 << 12, 'a')), .stall_ms = 2'500});
    auto hung_monitor = std::make_shared<UpstreamMonitor>("evm", 500ms);
    RpcClientOptions slow = FastOptions({server.url()});
    slow.timeout_ms = 10'000;
    slow.monitor = hung_monitor;
    JsonRpcClient slow_client(slow, nullptr);
    auto slow_call = std::async(std::launch::async, [&] { return slow_client.Call("eth_getLogs"); });
    std::this_thread::sleep_for(1'800ms);
    CHECK(slow_call.wait_for(0s) == std::future_status::timeout);
    CHECK(logged("eth_getLogs has had no complete answer") == 1);
    const auto hanging = hung_monitor->snapshot();
    CHECK(hanging.in_flight == 1);
    REQUIRE(hanging.endpoints.size() == 1);
    CHECK(hanging.endpoints[0].hung == 1);
    const auto verdict = JudgeUpstream(hanging, UpstreamMonitor::Clock::now(), 500ms, 60s);
    CHECK(verdict.state == UpstreamVerdict::State::Failing);
    CHECK(verdict.reason.find("eth_getLogs to") != std::string::npos);
    CHECK(JudgeUpstream(hanging, UpstreamMonitor::Clock::now() + 61s, 500ms, 60s).state == UpstreamVerdict::State::Stalled);
    CHECK(slow_call.get());
    CHECK(logged("eth_getLogs has had no complete answer") == 1); // once, not once a second
    CHECK(logged("eth_getLogs ended after") == 1);
    log::GetLogger().SetCallbackForTesting(nullptr);
    const auto after = hung_monitor->snapshot();
    CHECK(after.in_flight == 0);
    CHECK(JudgeUpstream(after, UpstreamMonitor::Clock::now(), 500ms, 60s).state == UpstreamVerdict::State::Ok);
    CHECK(after.endpoints[0].duration_seconds_sum > 2.0);
}
