// The simulator's EVM chain and provider (tests/sim/sim_evm.h): deterministic from a seed,
// reorgs that keep their orphans, headers and logs that pass the follower's own checks and
// decode into ledger events, answers the real parsers and client read, every eth_getLogs
// limit phrase of the fixture, the faults, and how fast it all goes.
#include "tests/sim/sim_evm.h"

#include "common/clock.h"
#include "indexer/evm/chain.h"
#include "indexer/evm/json_rpc_client.h"
#include "indexer/evm/log_decoder.h"
#include "indexer/evm/range_limit.h"
#include "indexer/evm/verify.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <time.h>

using namespace bitacora;
using namespace bitacora::evm;
using namespace bitacora::sim;
using nlohmann::json;

namespace {

// Under the sanitizers (an unoptimised build) everything runs ~50x slower: smaller runs.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
constexpr uint64_t kScale = kSanitized ? 10 : 1;

Address Addr(uint8_t last)
{
    Address a{};
    a[0] = 0xe5;
    a[19] = last;
    return a;
}

const Address kEscrow = Addr(1);
const Address kVault = Addr(2);

ChainConfig Config(uint64_t seed, bool receipts = true)
{
    ChainConfig config = ChainConfig::FromSeed(seed, kEscrow, kVault);
    config.receipts = receipts;
    return config;
}

std::string Request(uint64_t id, std::string_view method, const json& params)
{
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}}.dump();
}

json LogsFilter(uint64_t from, uint64_t to)
{
    return json::array({json{{"fromBlock", FormatQuantity(from)}, {"toBlock", FormatQuantity(to)},
                             {"address", json::array({FormatAddress(kEscrow), FormatAddress(kVault)})}}});
}

// The answer to one call, parsed; the test fails on anything but a 200 with JSON.
json Call(SimProvider& provider, std::string_view method, const json& params, size_t cap = 64u << 20)
{
    const HttpReply reply = provider.Post("http://sim:8545", Request(7, method, params), cap);
    REQUIRE(reply.outcome == HttpReply::Outcome::Ok);
    REQUIRE(reply.status == 200);
    json answer = json::parse(reply.body);
    REQUIRE(answer["id"] == 7);
    return answer;
}

std::vector<Address> Watched() { return {kEscrow, kVault}; }

std::vector<Log> WatchedLogs(const SimBlock& block)
{
    std::vector<Log> out;
    for (const auto& log : block.logs) {
        if (log.address == kEscrow || log.address == kVault) out.push_back(log);
    }
    return out;
}

// The follower's checks of one block as a node would answer it.
void CheckBlock(const SimBlock& block)
{
    auto header = ParseBlockHeader(json::parse(block.json));
    REQUIRE_MESSAGE(header, header.error());
    CHECK(*header == SimChain::Header(block));
    CHECK_MESSAGE(!CheckHeaderHash(*header), block.number);
    std::string logs_text = "[";
    for (size_t i = 0; i < block.logs.size(); ++i) logs_text += (i > 0 ? "," : "") + std::string(block.LogJson(i));
    auto logs = ParseLogs(json::parse(logs_text + "]"), 100);
    REQUIRE_MESSAGE(logs, logs.error());
    REQUIRE(logs->size() == block.logs.size());
    for (size_t i = 0; i < logs->size(); ++i) {
        CHECK((*logs)[i].log_index == i);
        CHECK((*logs)[i].block_hash == block.hash);
        CHECK((*logs)[i].data == block.logs[i].data);
        CHECK((*logs)[i].topics == block.logs[i].topics);
    }
    CHECK(!CheckLogsInBloom(*header, *logs));
    auto receipts = ParseBlockReceipts(json::parse(SimChain::ReceiptsJson(block)), 100);
    REQUIRE_MESSAGE(receipts, receipts.error());
    const auto watched = Watched();
    const auto watched_logs = WatchedLogs(block);
    const auto why = CheckReceipts(*header, *receipts, watched_logs, watched);
    CHECK_MESSAGE(!why, (why ? *why : ""));
}

} // namespace

TEST_CASE("a seed makes the same chain and the same answers; another seed another chain")
{
    auto run = [](uint64_t seed) {
        SimChain chain(Config(seed));
        chain.Mine(200);
        chain.RandomReorg(6);
        chain.Mine(50);
        chain.Reorg(3, 2);
        std::vector<std::string> out;
        for (uint64_t n = 0; n <= chain.Head(); ++n) out.push_back(chain.BlockByNumber(n)->json);
        for (const auto& hash : chain.Orphans()) out.push_back(chain.BlockByHash(hash)->json);
        SimProvider provider(chain, ProviderConfig::FromSeed(seed, 2.0));
        for (uint64_t i = 0; i < 300; ++i) {
            const uint64_t n = i % (chain.Head() + 1);
            out.push_back(provider.Post("u", Request(i, "eth_getBlockByNumber", json::array({FormatQuantity(n), false})), 1u << 20).body);
            out.push_back(provider.Post("u", Request(i, "eth_getLogs", LogsFilter(n, std::min(chain.Head(), n + 9))), 1u << 20).body);
        }
        out.push_back(provider.stats().ToString());
        return out;
    };
    const auto a = run(42);
    CHECK(a == run(42));
    const auto b = run(43);
    CHECK(a.size() >= 250);
    CHECK(a[1] != b[1]);
}

TEST_CASE("blocks chain, are 2 s apart, carry 0-5 logs in logIndex order, and the tags keep their order")
{
    SimChain chain(Config(7));
    chain.Mine(2'000);
    size_t empty = 0;
    size_t logs = 0;
    uint64_t finalized = 0;
    for (uint64_t n = 1; n <= chain.Head(); ++n) {
        const SimBlock& block = *chain.BlockByNumber(n);
        CHECK(block.parent_hash == chain.CanonicalHash(n - 1));
        CHECK(block.timestamp == chain.BlockByNumber(n - 1)->timestamp + 2);
        CHECK(block.logs.size() <= 5);
        CHECK(block.txs.at(0).type == 0x7e);
        empty += block.logs.empty() ? 1 : 0;
        logs += block.logs.size();
        for (size_t i = 0; i < block.logs.size(); ++i) CHECK(block.logs[i].log_index == i);
    }
    CHECK(empty > 50);
    CHECK(logs > 1'000);
    CHECK(chain.FinalizedNumber() <= chain.SafeNumber());
    CHECK(chain.SafeNumber() <= chain.Head());
    CHECK(chain.FinalizedNumber() + 200 > chain.Head());
    // Finality only moves forward as blocks come.
    SimChain again(Config(8));
    for (int i = 0; i < 500; ++i) {
        again.Mine(1);
        CHECK(again.FinalizedNumber() >= finalized);
        finalized = again.FinalizedNumber();
    }
    CHECK(finalized > 0);
}

TEST_CASE("a reorg replaces the blocks from its fork on and keeps the old ones as orphans")
{
    SimChain chain(Config(11));
    chain.Mine(300);
    std::vector<Hash256> before;
    for (uint64_t n = 0; n <= chain.Head(); ++n) before.push_back(chain.CanonicalHash(n));
    const uint64_t finalized = chain.FinalizedNumber();
    const ReorgReport report = chain.Reorg(8, +2);
    REQUIRE(report.fork == 300 - 8 + 1);
    CHECK(report.orphaned == 8);
    CHECK(report.added == 10);
    CHECK(!report.below_final);
    CHECK(chain.Head() == 302);
    for (uint64_t n = 0; n < report.fork; ++n) CHECK(chain.CanonicalHash(n) == before[n]);
    for (uint64_t n = report.fork; n <= 300; ++n) {
        CHECK(chain.CanonicalHash(n) != before[n]);
        CHECK(!chain.IsCanonical(before[n]));
        const SimBlock* orphan = chain.BlockByHash(before[n]);
        REQUIRE(orphan != nullptr);
        CHECK(orphan->number == n);
        CheckBlock(*orphan);
    }
    CHECK(chain.OrphanCount() == 8);
    CHECK(chain.Orphans().front() == before[report.fork]);
    CHECK(chain.BlockByNumber(report.fork)->parent_hash == before[report.fork - 1]);
    CHECK(chain.FinalizedNumber() == finalized);

    // Shorter than before; a reorg never reaches the final block unless told to.
    const ReorgReport shorter = chain.Reorg(5, -3);
    CHECK(shorter.added == 2);
    CHECK(chain.Head() == 299);
    const ReorgReport capped = chain.Reorg(10'000);
    CHECK(capped.fork == chain.FinalizedNumber() + 1);
    CHECK(!chain.FinalityViolated());

    // Below final: the follower must stop on it.
    const uint64_t final_before = chain.FinalizedNumber();
    const Hash256 final_hash = chain.CanonicalHash(final_before);
    const ReorgReport deep = chain.RandomReorg(5, /*below_final=*/true);
    CHECK(deep.below_final);
    CHECK(deep.fork <= final_before);
    CHECK(chain.FinalityViolated());
    CHECK(chain.FinalizedHighWater() >= final_before);
    CHECK(!chain.IsCanonical(final_hash));
}

TEST_CASE("headers hash to their hash, logs are in their bloom, receipts match their root, logs decode")
{
    SimChain chain(Config(5));
    chain.Mine(400);
    chain.RandomReorg(10);
    chain.Mine(100);
    for (uint64_t n = 0; n <= chain.Head(); ++n) CheckBlock(*chain.BlockByNumber(n));

    const LogDecoder decoder(chain.config().chain_id, kEscrow, kVault);
    std::set<std::string> names;
    size_t raw = 0;
    const auto logs = chain.LogsOfCanonicalBlocks(0, chain.Head());
    REQUIRE(logs.size() > 200);
    // The checks' tail of the same logs: counted whole, copied from the 150th on.
    const auto tail = chain.CanonicalLogsFrom(0, chain.Head(), 150);
    CHECK(tail.count == logs.size());
    REQUIRE(tail.tail.size() == logs.size() - 150);
    CHECK(tail.tail.front().tx_hash == logs[150].tx_hash);
    CHECK(tail.tail.back().tx_hash == logs.back().tx_hash);
    for (const Log& log : logs) {
        auto decoded = decoder.Decode(log);
        REQUIRE_MESSAGE(decoded, decoded.error());
        raw += decoded->raw ? 1 : 0;
        names.insert(std::string(ledger::EventKindName(decoded->event.kind())));
    }
    MESSAGE("event types: ", fmt::format("{}", fmt::join(names, " ")), "; raw: ", raw, " of ", logs.size());
    CHECK(raw < logs.size() / 10);
    for (const char* name : {"order_created", "payment_confirmed", "order_released", "vault_deposit", "vault_transfer"}) {
        CHECK_MESSAGE(names.count(name) == 1, name);
    }
}

TEST_CASE("the provider answers eth_getLogs ranges, header batches, by-hash queries and the tags")
{
    SimChain chain(Config(3));
    chain.Mine(500);
    chain.Reorg(4);
    ProviderConfig config;
    config.seed = 3;
    SimProvider provider(chain, config);

    // A range: the same logs as the reference, in order, through both parsers.
    const json answer = Call(provider, "eth_getLogs", LogsFilter(10, 400));
    auto logs = ParseLogs(answer["result"], 100'000);
    REQUIRE_MESSAGE(logs, logs.error());
    const auto expected = chain.LogsOfCanonicalBlocks(10, 400);
    REQUIRE(logs->size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        CHECK((*logs)[i].block_hash == expected[i].block_hash);
        CHECK((*logs)[i].log_index == expected[i].log_index);
        CHECK((*logs)[i].topics == expected[i].topics);
    }
    AnswerParser parser;
    const HttpReply raw = provider.Post("u", Request(9, "eth_getLogs", LogsFilter(10, 400)), 64u << 20);
    auto fast = parser.ParseGetLogs(raw.body, 9, 100'000);
    REQUIRE_MESSAGE(fast, fast.error());
    CHECK(fast->logs.size() == expected.size());

    // A batch of headers, possibly out of order, read as the follower reads it.
    json batch = json::array();
    for (uint64_t i = 0; i < 100; ++i) {
        batch.push_back({{"jsonrpc", "2.0"}, {"id", 1'000 + i}, {"method", "eth_getBlockByNumber"},
                         {"params", json::array({FormatQuantity(300 + i), false})}});
    }
    const HttpReply headers_reply = provider.Post("u", batch.dump(), 64u << 20);
    auto headers = parser.ParseHeaderBatch(headers_reply.body, 1'000, 100);
    REQUIRE_MESSAGE(headers, headers.error());
    for (uint64_t i = 0; i < 100; ++i) {
        CHECK((*headers)[i].hash == chain.CanonicalHash(300 + i));
        CHECK(!CheckHeaderHash((*headers)[i]));
    }
    for (const auto& item : json::parse(headers_reply.body)) CHECK(ParseBlockHeader(item["result"]));

    // Tags, past the head, by hash (EIP-234), receipts, and what it does not serve.
    CHECK(Call(provider, "eth_getBlockByNumber", json::array({"latest", false}))["result"]["hash"] ==
          HexEncode0x(chain.HeadBlock().hash));
    CHECK(Call(provider, "eth_getBlockByNumber", json::array({"finalized", false}))["result"]["number"] ==
          FormatQuantity(chain.FinalizedNumber()));
    CHECK(Call(provider, "eth_getBlockByNumber", json::array({"safe", false}))["result"]["number"] ==
          FormatQuantity(chain.SafeNumber()));
    CHECK(Call(provider, "eth_getBlockByNumber", json::array({FormatQuantity(chain.Head() + 1), false}))["result"].is_null());
    CHECK(Call(provider, "eth_getLogs", LogsFilter(1, chain.Head() + 1))["error"]["code"] == -32602);
    CHECK(Call(provider, "eth_chainId", json::array())["result"] == "0x2105");
    const Hash256 orphan = chain.Orphans().at(0);
    const SimBlock& orphan_block = *chain.BlockByHash(orphan);
    const json by_hash = Call(provider, "eth_getLogs", json::array({json{{"blockHash", HexEncode0x(orphan)},
                                                                         {"address", FormatAddress(kEscrow)}}}));
    REQUIRE(by_hash.contains("result"));
    size_t escrow_logs = 0;
    for (const auto& log : orphan_block.logs) escrow_logs += log.address == kEscrow ? 1 : 0;
    CHECK(by_hash["result"].size() == escrow_logs);
    CHECK(Call(provider, "eth_getBlockByHash", json::array({HexEncode0x(orphan), false}))["result"]["hash"] == HexEncode0x(orphan));
    auto receipts = ParseBlockReceipts(Call(provider, "eth_getBlockReceipts", json::array({"0x10"}))["result"], 100);
    CHECK(receipts);
    CHECK(Call(provider, "eth_call", json::array())["error"]["code"] == -32601);

    ProviderConfig strict = config;
    strict.orphans_by_hash = false;
    strict.receipts = false;
    SimProvider canonical_only(chain, strict);
    CHECK(Call(canonical_only, "eth_getBlockByHash", json::array({HexEncode0x(orphan), false}))["result"].is_null());
    CHECK(Call(canonical_only, "eth_getLogs", json::array({json{{"blockHash", HexEncode0x(orphan)}}}))["error"]["message"] ==
          "unknown block");
    CHECK(Call(canonical_only, "eth_getBlockReceipts", json::array({"0x10"}))["error"]["code"] == -32601);
}

TEST_CASE("every limit phrase of the fixture fires past its limit, and its advice leads to an answer")
{
    // Past Merkle's fixed 10k blocks (past Ankr's 3k only, under the sanitizers).
    const uint64_t head = kSanitized ? 3'300 : 12'000;
    SimChain chain(Config(9));
    chain.Mine(head);
    for (size_t k = 1; k < kLogLimitCount; ++k) {
        const auto limit = static_cast<LogLimit>(k);
        CAPTURE(LogLimitName(limit));
        ProviderConfig config;
        config.log_limit = limit;
        config.log_limit_value = LogLimitUnit(limit) == LimitUnit::Blocks ? 150 : LogLimitUnit(limit) == LimitUnit::Results ? 40 : 30'000;
        SimProvider provider(chain, config);
        uint64_t from = 100;
        uint64_t blocks = head - 200;
        if (provider.LogLimitValue() >= blocks) {
            MESSAGE(LogLimitName(limit), ": its ", provider.LogLimitValue(), " blocks are past this chain (sanitizer build)");
            continue;
        }
        const json first = Call(provider, "eth_getLogs", LogsFilter(from, from + blocks - 1));
        REQUIRE(first.contains("error"));
        std::string message = first["error"]["message"].get<std::string>();
        std::transform(message.begin(), message.end(), message.begin(), [](unsigned char c) { return std::tolower(c); });
        CHECK_MESSAGE(message.find(LogLimitPhrase(limit)) != std::string::npos, message);
        // What the follower does with it, until the provider answers.
        int rounds = 0;
        json answer = first;
        for (; answer.contains("error") && rounds < 40; ++rounds) {
            const RangeAdvice advice = AdviseLogRange(answer["error"]["message"].get<std::string>(), blocks);
            REQUIRE_MESSAGE(advice.kind != RangeAdvice::Kind::NotRangeError, answer.dump());
            blocks = advice.kind == RangeAdvice::Kind::Blocks ? std::min(blocks, advice.blocks) : std::max<uint64_t>(1, blocks / 2);
            answer = Call(provider, "eth_getLogs", LogsFilter(from, from + blocks - 1));
        }
        REQUIRE_MESSAGE(answer.contains("result"), answer.dump());
        CHECK(answer["result"].size() == chain.LogsOfCanonicalBlocks(from, from + blocks - 1).size());
        if (LogLimitUnit(limit) == LimitUnit::Blocks) CHECK(blocks <= provider.LogLimitValue());
        CHECK(provider.stats().limit_errors == static_cast<uint64_t>(rounds));
        MESSAGE(LogLimitName(limit), ": ", rounds, " refusals, then ", blocks, " blocks");
    }
}

TEST_CASE("each fault fires as configured, is what it claims to be, and quiet turns them off")
{
    SimChain chain(Config(21));
    chain.Mine(200);
    auto one = [&](FaultConfig faults, std::string_view method, const json& params, size_t cap = 1u << 20) {
        ProviderConfig config;
        config.faults = faults;
        SimProvider provider(chain, config);
        return provider.Post("u", Request(5, method, params), cap);
    };
    const json by_number = json::array({"0x50", false});
    CHECK(one({.transport = 1}, "eth_chainId", json::array()).outcome == HttpReply::Outcome::Transport);
    CHECK(one({.http_500 = 1}, "eth_chainId", json::array()).status >= 500);
    const HttpReply limited = one({.rate_limit = 1}, "eth_chainId", json::array());
    CHECK(limited.status == 429);
    CHECK(limited.retry_after_s.value_or(0) >= 1);
    CHECK(json::parse(one({.truncated = 1}, "eth_getBlockByNumber", by_number).body, nullptr, false).is_discarded());
    CHECK(one({.too_large = 1}, "eth_chainId", json::array()).outcome == HttpReply::Outcome::TooLarge);
    CHECK(one({}, "eth_getBlockByNumber", by_number, 100).outcome == HttpReply::Outcome::TooLarge);
    CHECK(json::parse(one({.rpc_error = 1}, "eth_getBlockByNumber", by_number).body).contains("error"));
    CHECK(json::parse(one({.wrong_id = 1}, "eth_chainId", json::array()).body)["id"] != 5);
    auto lie = ParseBlockHeader(json::parse(one({.lie_header_hash = 1}, "eth_getBlockByNumber", by_number).body)["result"]);
    REQUIRE(lie);
    CHECK(CheckHeaderHash(*lie));
    auto other = ParseBlockHeader(json::parse(one({.lie_header_height = 1}, "eth_getBlockByNumber", by_number).body)["result"]);
    REQUIRE(other);
    CHECK(other->number != 0x50);
    CHECK(!CheckHeaderHash(*other));
    auto logs = ParseLogs(json::parse(one({.lie_log_block_hash = 1}, "eth_getLogs", LogsFilter(1, 150)).body)["result"], 10'000);
    REQUIRE(logs);
    REQUIRE(!logs->empty());
    CHECK(std::any_of(logs->begin(), logs->end(), [&](const Log& log) { return log.block_hash != chain.CanonicalHash(log.block_number); }));

    // Many requests with every fault at 10%: each fires; quiet: none does.
    FaultConfig all{.transport = 0.1, .http_500 = 0.1, .rate_limit = 0.1, .truncated = 0.1, .too_large = 0.1, .rpc_error = 0.1,
                    .wrong_id = 0.1, .lie_header_hash = 0.1, .lie_log_block_hash = 0.1, .lie_header_height = 0.1};
    ManualClock clock;
    ProviderConfig config;
    config.faults = all;
    config.latency_ms = 5;
    SimProvider provider(chain, config, &clock);
    for (uint64_t i = 0; i < 2'000; ++i) {
        const uint64_t n = i % 190;
        provider.Post("u", Request(i, i % 2 ? "eth_getLogs" : "eth_getBlockByNumber",
                                   i % 2 ? LogsFilter(n, n + 9) : json::array({FormatQuantity(n), false})), 1u << 20);
    }
    const ProviderStats& s = provider.stats();
    MESSAGE(s.ToString());
    for (uint64_t fired : {s.transport, s.timeouts, s.http_500, s.rate_limited, s.truncated, s.too_large, s.rpc_errors,
                           s.wrong_ids, s.lie_header_hash, s.lie_log_block_hash, s.lie_header_height}) {
        CHECK(fired > 0);
    }
    CHECK(clock.elapsed() >= std::chrono::milliseconds(2'000 * 5));
    const uint64_t faults = s.faults();
    provider.SetQuiet(true);
    for (uint64_t i = 0; i < 500; ++i) {
        const HttpReply reply = provider.Post("u", Request(i, "eth_getBlockByNumber", json::array({FormatQuantity(i % 190), false})), 1u << 20);
        REQUIRE(reply.outcome == HttpReply::Outcome::Ok);
        auto header = ParseBlockHeader(json::parse(reply.body)["result"]);
        REQUIRE(header);
        CHECK(!CheckHeaderHash(*header));
        CHECK(header->number == i % 190);
    }
    CHECK(provider.stats().faults() == faults);
}

TEST_CASE("the real JSON-RPC client, through the provider's faults, gets true answers or detectably wrong ones")
{
    SimChain chain(Config(31));
    chain.Mine(300);
    ManualClock clock;
    ProviderConfig config = ProviderConfig::FromSeed(31, 1.0);
    auto provider = std::make_shared<SimProvider>(chain, config, &clock);
    RpcClientOptions options;
    options.urls = {"http://sim-node:8545"};
    options.transport = provider;
    options.clock = &clock;
    options.jitter_seed = 31;
    JsonRpcClient client(options, nullptr);
    size_t ok = 0;
    size_t caught = 0;
    size_t failed = 0;
    for (uint64_t n = 0; n < 300; ++n) {
        auto block = client.Call("eth_getBlockByNumber", json::array({FormatQuantity(n), false}));
        if (!block) {
            ++failed;
            continue;
        }
        auto header = ParseBlockHeader(*block);
        REQUIRE(header);
        if (header->number != n || CheckHeaderHash(*header)) {
            ++caught;
            continue;
        }
        CHECK(header->hash == chain.CanonicalHash(n));
        ++ok;
    }
    MESSAGE("ok ", ok, ", lies caught ", caught, ", failed after retries ", failed, "; ", provider->stats().ToString(),
            "; virtual time ", clock.elapsed().count(), " ms");
    CHECK(ok > 250);
    CHECK(client.stats().retries > 0);
}

namespace {

// CPU seconds of this thread: the machine is shared, and wall time counts the others' work.
double CpuSeconds()
{
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

} // namespace

TEST_CASE("speed: blocks generated per second and eth_getBlockByNumber answers served per second")
{
    // 20 seeds of 1,000 blocks and 10 reorgs each, without and with receipts.
    auto generate = [](bool receipts, uint64_t& blocks) {
        const double started = CpuSeconds();
        for (uint64_t seed = 1; seed <= 20 / kScale; ++seed) {
            SimChain chain(Config(seed, receipts));
            chain.Mine(1'000);
            for (int i = 0; i < 10; ++i) {
                chain.RandomReorg(8);
                chain.Mine(10);
            }
            blocks += chain.blocks_generated();
        }
        return CpuSeconds() - started;
    };
    uint64_t blocks = 0;
    const double gen_s = generate(false, blocks);
    uint64_t receipt_blocks = 0;
    const double receipts_s = generate(true, receipt_blocks);

    SimChain chain(Config(99));
    chain.Mine(1'000);
    SimProvider provider(chain, ProviderConfig{.seed = 99});
    json batch = json::array();
    for (uint64_t i = 0; i < 100; ++i) {
        batch.push_back({{"jsonrpc", "2.0"}, {"id", 1 + i}, {"method", "eth_getBlockByNumber"},
                         {"params", json::array({FormatQuantity(i), false})}});
    }
    const std::string batch_body = batch.dump();
    const double served_started = CpuSeconds();
    uint64_t answers = 0;
    for (uint64_t round = 0; round < 200 / kScale; ++round) {
        answers += 100;
        CHECK(provider.Post("u", batch_body, 64u << 20).outcome == HttpReply::Outcome::Ok);
    }
    const double batch_s = CpuSeconds() - served_started;
    const double single_started = CpuSeconds();
    const uint64_t singles = 20'000 / kScale;
    for (uint64_t i = 0; i < singles; ++i) {
        provider.Post("u", Request(i, "eth_getBlockByNumber", json::array({FormatQuantity(i % 1'000), false})), 1u << 20);
    }
    const double single_s = CpuSeconds() - single_started;
    const double logs_started = CpuSeconds();
    const uint64_t ranges = 2'000 / kScale;
    for (uint64_t i = 0; i < ranges; ++i) provider.Post("u", Request(i, "eth_getLogs", LogsFilter(i % 900, i % 900 + 99)), 64u << 20);
    const double logs_s = CpuSeconds() - logs_started;
    std::printf("sim_evm speed (per CPU second%s): %.0f blocks/s generated (%llu blocks: seeds of 1000 and 10 reorgs), %.0f/s with receipts; "
                "eth_getBlockByNumber %.0f answers/s in batches of 100, %.0f/s single; eth_getLogs of 100 blocks %.0f/s\n",
                kSanitized ? ", sanitizer build" : "", static_cast<double>(blocks) / gen_s, static_cast<unsigned long long>(blocks),
                static_cast<double>(receipt_blocks) / receipts_s, static_cast<double>(answers) / batch_s,
                static_cast<double>(singles) / single_s, static_cast<double>(ranges) / logs_s);
    CHECK(blocks > 20'000 / kScale);
}
