#include "indexer/evm/follower.h"

#include "common/json_bounds.h"
#include "common/logging.h"
#include "common/mutation.h"
#include "common/sync.h"
#include "indexer/evm/catch_up.h"
#include "indexer/evm/keccak.h"
#include "indexer/evm/log_decoder.h"
#include "indexer/evm/pending_chain.h"
#include "indexer/evm/verify.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unistd.h>

namespace bitacora::evm {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kLatencySamplesMax = 10'000;
constexpr uint32_t kRetryDelayMsMax = 30'000;
constexpr uint32_t kFetchFailuresMax = 8;
constexpr uint64_t kRangeSoftCeilingSuccesses = 50;
constexpr uint32_t kFetchRetryDelayMsMax = 3'200;
constexpr uint64_t kCatchUpLogBlocksMin = 100; // shorter catch-ups (finality moving on) log at debug level
constexpr uint32_t kRefusalsMax = 8;          // failed verifications of one block before the follower stops
constexpr size_t kRefusedBlocksMax = 1'000;   // blocks whose refusals are remembered
constexpr uint32_t kDistrustMs = 2'000;       // a lying endpoint is passed over for this long
constexpr size_t kReceiptsBatchMax = 10;      // eth_getBlockReceipts per HTTP batch: answers run to MBs
constexpr uint32_t kQuorumAttemptsMax = 2;    // per endpoint and quorum check

// Our view of one unfinalized block, mirrored in the ledger's pending overlay.
struct BlockRef {
    uint64_t number{0};
    Hash256 hash{};
    Hash256 events_digest{};
    uint64_t events{0};
};

// One catch-up range, checked and decoded, on its way to the database.
struct FetchedRange {
    uint64_t from{0};
    uint64_t to{0};
    std::vector<ledger::Event> events;
    std::map<uint64_t, Hash256> block_hashes; // every block with logs, plus `from` and `to`
    Hash256 parent_hash{};                     // of block `from`: checked against the cursor
    uint64_t raw_logs{0};
};

// What the data dir remembers of the chain it indexed (<netdir>/evm-chain.json).
struct ChainIdentity {
    uint64_t chain_id{0};
    uint64_t start_block{0};
    std::optional<Hash256> start_hash; // once the start block is final
};

constexpr size_t kIdentityFileBytesMax = 64 * 1024; // a few numbers and a hash

std::optional<ChainIdentity> ReadIdentity(const fs::path& path, std::string& error)
{
    if (!std::ifstream(path)) return std::nullopt;
    const json j = ReadJsonFileBounded(path.string(), kIdentityFileBytesMax).value;
    ChainIdentity identity;
    if (!j.is_object() || !j.contains("chainId") || !j["chainId"].is_number_unsigned() || !j.contains("startBlock") ||
        !j["startBlock"].is_number_unsigned()) {
        error = fmt::format("{} is not a valid chain identity file", path.string());
        return std::nullopt;
    }
    identity.chain_id = j["chainId"].get<uint64_t>();
    identity.start_block = j["startBlock"].get<uint64_t>();
    if (j.contains("startBlockHash")) {
        auto hash = ParseHash(j["startBlockHash"]);
        if (!hash) {
            error = fmt::format("{}: startBlockHash {}", path.string(), hash.error());
            return std::nullopt;
        }
        identity.start_hash = *hash;
    }
    return identity;
}

// Written to a temporary file, fsynced and renamed: a crash leaves the old or the new.
Status WriteIdentity(const fs::path& path, const ChainIdentity& identity)
{
    json j = {{"chainId", identity.chain_id}, {"startBlock", identity.start_block}};
    if (identity.start_hash) j["startBlockHash"] = HexEncode0x(*identity.start_hash);
    const std::string text = j.dump(2) + "\n";
    const fs::path tmp = path.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Error{fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno))};
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
        return Error{fmt::format("cannot write {}: {}", path.string(), std::strerror(errno))};
    }
    return {};
}

json BlockTag(uint64_t number) { return FormatQuantity(number); }

Bytes Selector(std::string_view signature)
{
    const Hash256 hash = Keccak(signature);
    return Bytes(hash.begin(), hash.begin() + 4);
}

// What a quorum compares: the range's last block hash, then every event of the range in
// order (each names its block, block hash, transaction and log index).
Hash256 QuorumDigest(const Hash256& last_hash, std::span<const ledger::Event> events)
{
    Sha256Hasher hasher;
    hasher.Update(last_hash);
    for (const auto& event : events) hasher.Update(Sha256(ledger::EncodeEvent(event)));
    return hasher.Finalize();
}

double Seconds(Clock::time_point since)
{
    return std::chrono::duration<double>(Clock::now() - since).count();
}

// The p-quantile of the samples (reordered in place): a selection, not a sort, since a
// status is taken at every /metrics scrape and every simulated step.
double Percentile(std::vector<double>& samples, double p)
{
    if (samples.empty()) return 0;
    const size_t index = std::min(samples.size() - 1, static_cast<size_t>(p * static_cast<double>(samples.size())));
    std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(index), samples.end());
    return samples[index];
}

} // namespace

std::string_view VerifyModeName(VerifyMode mode)
{
    switch (mode) {
    case VerifyMode::None: return "none";
    case VerifyMode::Bloom: return "bloom";
    case VerifyMode::Receipts: return "receipts";
    case VerifyMode::Quorum: return "quorum";
    }
    return "?";
}

std::optional<VerifyMode> ParseVerifyMode(std::string_view name)
{
    for (VerifyMode mode : {VerifyMode::None, VerifyMode::Bloom, VerifyMode::Receipts, VerifyMode::Quorum}) {
        if (VerifyModeName(mode) == name) return mode;
    }
    return std::nullopt;
}

std::string_view FollowerStateName(FollowerStatus::State state)
{
    switch (state) {
    case FollowerStatus::State::Starting: return "starting";
    case FollowerStatus::State::CatchingUp: return "catching-up";
    case FollowerStatus::State::Following: return "following";
    case FollowerStatus::State::Failed: return "failed";
    case FollowerStatus::State::Stopped: return "stopped";
    }
    return "?";
}

struct EvmFollower::Impl {
    // A failure that needs an operator: the follower stops.
    struct Fatal {
        std::string message;
    };
    // What a step of the main loop asks for next.
    enum class Next { Now, Poll, Retry };

    FollowerOptions options;
    ledger::Ledger& ledger;
    std::function<void(const std::string&)> on_fatal;
    LogDecoder decoder;
    StopSignal stop;
    bitacora::TimeSource* clock; // waits and the reconciliation interval; catch-up timings use steady_clock
    bool identified{false};
    bool failed{false};
    std::thread thread;

    // Follower thread only.
    std::unique_ptr<JsonRpcClient> client;
    AnswerParser parser;
    std::deque<BlockRef> unfinal;       // mirrors ledger.GetPending(kCursorSource)
    std::optional<ledger::Cursor> cursor;
    ChainIdentity identity;
    uint32_t retry_delay_ms{0};
    Clock::time_point last_reconcile{};
    uint64_t last_reconciled_block{UINT64_MAX}; // the final block of the last check made
    std::optional<Address> usdc;
    Mutex range_mutex; // the catch-up's fetchers share the adaptive range
    RangeSizer range_sizer GUARDED_BY(range_mutex);
    std::string last_report;
    RpcClientStats fetcher_rpc; // added in when a catch-up's fetcher finishes
    std::atomic<bool> target_disputed{false}; // set by the fetcher

    mutable Mutex status_mutex;
    FollowerStatus status GUARDED_BY(status_mutex);
    std::vector<double> latency_ms GUARDED_BY(status_mutex); // ring of the last kLatencySamplesMax
    size_t latency_next GUARDED_BY(status_mutex){0};
    // Answers about a block that failed -evmverify since the block last passed: one bad
    // answer is retried, a block that no endpoint answers truthfully stops the follower.
    // By (block, whether its header was refused): a header that later hashes right clears
    // its header refusals only, so that a tag's header fetched at every poll does not pile
    // up one-in-a-thousand glitches until the follower stops, while refused logs still do.
    std::map<std::pair<uint64_t, bool>, uint32_t> refusals GUARDED_BY(status_mutex);
    std::string last_refusal GUARDED_BY(status_mutex);

    Impl(FollowerOptions o, ledger::Ledger& l, std::function<void(const std::string&)> f)
        : options(std::move(o)), ledger(l), on_fatal(std::move(f)),
          decoder(options.chain_id, options.escrow, options.vault),
          clock(options.clock != nullptr ? options.clock : &SystemClock()),
          range_sizer(options.range_blocks_initial, options.range_blocks_max, options.logs_per_request_target,
                kRangeSoftCeilingSuccesses)
    {
    }

    bool Stopping() const { return stop.stopped(); }

    bool Sleep(uint64_t ms) { return clock->SleepFor(std::chrono::milliseconds(ms), stop); }

    template <typename F>
    void UpdateStatus(F f)
    {
        LOCK(status_mutex);
        f(status);
    }

    void NoteInconsistent(const std::string& what)
    {
        LogWarning("EVM node gave an inconsistent answer: {}; asking again", what);
        UpdateStatus([&](FollowerStatus& s) {
            ++s.inconsistent_answers;
            s.error = what;
        });
    }

    // An answer that failed verification: refused, and its endpoint passed over for a while.
    void NoteRefused(JsonRpcClient& rpc, uint64_t block, const std::string& what, bool header = false)
    {
        rpc.DistrustCurrent(kDistrustMs);
        uint32_t count = 0;
        {
            LOCK(status_mutex);
            const std::pair<uint64_t, bool> key{block, header};
            if (refusals.size() >= kRefusedBlocksMax && !refusals.contains(key)) refusals.erase(refusals.begin());
            count = ++refusals[key];
            if (count >= kRefusalsMax) last_refusal = fmt::format("{}: {}", rpc.current_endpoint(), what);
            ++status.verify_refusals;
            status.error = what;
        }
        LogWarning("EVM node {} failed -evmverify={}: {}; refused ({} time{} for block {}), asking again",
                   rpc.current_endpoint(), VerifyModeName(options.verify), what, count, count == 1 ? "" : "s", block);
    }

    // Blocks from..to passed: earlier refusals about them were passing faults.
    void NotePassed(uint64_t from, uint64_t to)
    {
        LOCK(status_mutex);
        refusals.erase(refusals.lower_bound({from, false}), refusals.upper_bound({to, true}));
    }

    // These headers hashed right: earlier header refusals of theirs were passing faults.
    void NoteHeadersPassed(std::span<const uint64_t> numbers)
    {
        LOCK(status_mutex);
        if (refusals.empty()) return;
        for (const uint64_t number : numbers) refusals.erase({number, true});
    }

    // No endpoint answers a block truthfully: stop rather than append what none vouches for.
    void ThrowIfNoHonestEndpoint()
    {
        LOCK(status_mutex);
        for (const auto& [key, count] : refusals) {
            if (count < kRefusalsMax) continue;
            const uint64_t block = key.first;
            throw Fatal{fmt::format("no -evmrpc endpoint gave answers that pass -evmverify={} for block {} ({} refused; "
                                    "the last: {}). Nothing unverified was appended; check the node(s) or add an honest "
                                    "endpoint",
                                    VerifyModeName(options.verify), block, count, last_refusal)};
        }
    }

    std::array<Address, 2> Watched() const { return {options.escrow, options.vault}; }

    // The client options, with this follower's clock (the simulator's, under simulation).
    RpcClientOptions RpcOptions() const
    {
        RpcClientOptions rpc = options.rpc;
        if (rpc.clock == nullptr) rpc.clock = clock;
        return rpc;
    }

    std::unique_ptr<JsonRpcClient> NewClient()
    {
        return std::make_unique<JsonRpcClient>(RpcOptions(), &stop);
    }

    // --- node access (follower thread) ---

    // A call that must succeed: transient failures surface as std::nullopt after the
    // client's own retries; the caller backs off and starts its step again.
    std::optional<json> CallOrNote(JsonRpcClient& rpc, std::string_view method, json params)
    {
        auto result = rpc.Call(method, std::move(params));
        if (!result) {
            if (result.error().kind != RpcError::Kind::Stopped) {
                LogWarning("EVM RPC {} failed: {}", method, result.error().ToString());
                UpdateStatus([&](FollowerStatus& s) { s.error = result.error().ToString(); });
            }
            return std::nullopt;
        }
        return std::move(result.value());
    }

    // A header batch that failed: a call the node refused (a rate limit, a block it does not
    // have yet) is a failure to retry; a malformed answer is an inconsistent one.
    void NoteHeadersFailed(const std::string& what, ErrorKind kind)
    {
        if (kind != ErrorKind::Upstream) return NoteInconsistent(what);
        LogWarning("EVM RPC {}", what);
        UpdateStatus([&](FollowerStatus& s) { s.error = what; });
    }

    void NoteBatchFailed(const RpcError& error)
    {
        if (error.kind == RpcError::Kind::Stopped) return;
        LogWarning("EVM RPC header batch failed: {}", error.ToString());
        UpdateStatus([&](FollowerStatus& s) { s.error = error.ToString(); });
    }

    // Headers for block tags ("latest", "finalized") or heights, in one exchange read by
    // the fast parser (the head and the final block come together); nullopt if any is
    // missing, is not the height asked for, or fails verification.
    std::optional<std::vector<BlockHeader>> HeadersByTag(const std::vector<json>& tags)
    {
        std::vector<RpcRequest> requests;
        requests.reserve(tags.size());
        for (const auto& tag : tags) requests.push_back({"eth_getBlockByNumber", json::array({tag, false})});
        auto batch = client->BatchRaw(requests);
        if (!batch) {
            NoteBatchFailed(batch.error());
            return std::nullopt;
        }
        auto headers = parser.ParseHeaderBatch(batch->body, batch->first_id, requests.size());
        if (!headers) {
            NoteHeadersFailed(fmt::format("block {}: {}", tags.front().dump(), headers.error()), headers.error_kind());
            return std::nullopt;
        }
        std::vector<uint64_t> numbers;
        for (size_t i = 0; i < tags.size(); ++i) {
            const BlockHeader& header = (*headers)[i];
            const std::string* tag = tags[i].get_ptr<const std::string*>();
            if (tag != nullptr && tag->starts_with("0x") && FormatQuantity(header.number) != *tag) {
                NoteInconsistent(fmt::format("asked for block {}, got {}", *tag, header.number));
                return std::nullopt;
            }
            if (auto why = CheckHeaderHash(header); why && options.verify != VerifyMode::None) {
                NoteRefused(*client, header.number, *why, /*header=*/true);
                return std::nullopt;
            }
            numbers.push_back(header.number);
        }
        NoteHeadersPassed(numbers);
        return std::move(headers.value());
    }

    std::optional<BlockHeader> HeaderByTag(const json& tag)
    {
        auto headers = HeadersByTag({tag});
        if (!headers) return std::nullopt;
        return headers->front();
    }

    // Headers of the given heights, in batches; nullopt if any is missing or wrong, or with
    // `prefix_ok` the headers before the first that fails verification, if there are any.
    std::optional<std::map<uint64_t, BlockHeader>> HeadersByNumber(JsonRpcClient& rpc, AnswerParser& parser,
                                                                  const std::vector<uint64_t>& numbers,
                                                                  bool prefix_ok = false)
    {
        std::map<uint64_t, BlockHeader> out;
        for (size_t begin = 0; begin < numbers.size(); begin += options.header_batch_max) {
            const size_t end = std::min(numbers.size(), begin + options.header_batch_max);
            std::vector<RpcRequest> requests;
            for (size_t i = begin; i < end; ++i) {
                requests.push_back({"eth_getBlockByNumber", json::array({BlockTag(numbers[i]), false})});
            }
            auto batch = rpc.BatchRaw(requests);
            if (!batch) {
                NoteBatchFailed(batch.error());
                return std::nullopt;
            }
            auto headers = parser.ParseHeaderBatch(batch->body, batch->first_id, requests.size());
            if (!headers) {
                NoteHeadersFailed(fmt::format("blocks {}..: {}", numbers[begin], headers.error()), headers.error_kind());
                return std::nullopt;
            }
            for (size_t i = begin; i < end; ++i) {
                const BlockHeader& header = (*headers)[i - begin];
                if (header.number != numbers[i]) {
                    NoteInconsistent(fmt::format("asked for block {}, got {}", numbers[i], header.number));
                    return std::nullopt;
                }
                if (auto why = CheckHeaderHash(header); why && options.verify != VerifyMode::None) {
                    NoteRefused(rpc, header.number, *why, /*header=*/true);
                    NoteHeadersPassed(std::span<const uint64_t>(numbers).subspan(begin, i - begin));
                    if (prefix_ok && !out.empty()) return out;
                    return std::nullopt;
                }
                out[numbers[i]] = header;
            }
            NoteHeadersPassed(std::span<const uint64_t>(numbers).subspan(begin, end - begin));
        }
        return out;
    }

    json LogFilter() const
    {
        return json::array({FormatAddress(options.escrow), FormatAddress(options.vault)});
    }

    // --- start-up checks ---

    // Returns false to retry later (node unreachable); throws Fatal on a wrong chain.
    bool Identify()
    {
        auto chain_id_json = CallOrNote(*client, "eth_chainId", json::array());
        if (!chain_id_json) return false;
        auto chain_id = ParseQuantity(*chain_id_json);
        if (!chain_id) {
            NoteInconsistent("eth_chainId: " + chain_id.error());
            return false;
        }
        if (*chain_id != options.chain_id) {
            throw Fatal{fmt::format("the EVM node is on chain id {}, but this bitacorad follows chain id {} (-evmchainid); "
                                    "refusing to index another chain",
                                    *chain_id, options.chain_id)};
        }
        std::string error;
        auto stored = ReadIdentity(options.identity_path, error);
        if (!error.empty()) throw Fatal{error};
        if (!stored) {
            if (ledger.GetCursor(std::string(kCursorSource))) {
                throw Fatal{fmt::format("the ledger has EVM data but {} is missing; restore it or start from an empty data dir",
                                        options.identity_path.string())};
            }
            identity = {options.chain_id, options.start_block, std::nullopt};
            if (auto status = WriteIdentity(options.identity_path, identity); !status) throw Fatal{status.error()};
            LogInfo("EVM chain {}: indexing from block {}", options.chain_id, options.start_block);
        } else {
            identity = *stored;
            if (identity.chain_id != options.chain_id || identity.start_block != options.start_block) {
                throw Fatal{fmt::format("this data dir indexed chain id {} from block {}, but the config says chain id {} "
                                        "from block {} (-evmchainid, -evmstartblock); use another data dir",
                                        identity.chain_id, identity.start_block, options.chain_id, options.start_block)};
            }
        }
        if (identity.start_hash) {
            auto hash = ConfirmedHashAt(identity.start_block, *identity.start_hash);
            if (!hash) return false;
            if (*hash != *identity.start_hash) {
                throw Fatal{fmt::format("block {} of the EVM node has hash {}, but this data dir indexed a chain whose block "
                                        "{} is {}: a different chain; refusing to start",
                                        identity.start_block, HexEncode0x(*hash), identity.start_block,
                                        HexEncode0x(*identity.start_hash))};
            }
        }
        cursor = ledger.GetCursor(std::string(kCursorSource));
        if (cursor) {
            if (!CheckFinalBlock()) return false;
            LogInfo("EVM follower resumes after final block {} ({})", cursor->block_number, HexEncode0x(cursor->block_hash));
        }
        UpdateStatus([&](FollowerStatus& s) {
            if (cursor) s.final_block = cursor->block_number;
        });
        return true;
    }

    // The hash the node gives for a height, asked three times: one wrong answer (a
    // proxy, a flaky load balancer) must not stop the follower. nullopt: answers
    // disagree or failed; ask again later. Returns at once when an answer is `ours`.
    std::optional<Hash256> ConfirmedHashAt(uint64_t number, const Hash256& ours)
    {
        std::optional<Hash256> seen;
        for (int attempt = 0; attempt < 3; ++attempt) {
            if (attempt > 0 && !Sleep(200)) return std::nullopt;
            auto header = HeaderByTag(BlockTag(number));
            if (!header) return std::nullopt;
            if (header->hash == ours) return ours;
            if (seen && *seen != header->hash) return std::nullopt;
            seen = header->hash;
        }
        return seen;
    }

    // Whether the node still has our final block: true if so, false if it could not
    // tell; throws Fatal when it consistently has another block there.
    bool CheckFinalBlock()
    {
        if (sim::Mutated(sim::Mutation::ForgetCursorCheck)) return true;
        auto hash = ConfirmedHashAt(cursor->block_number, cursor->block_hash);
        if (!hash) return false;
        if (*hash != cursor->block_hash) {
            throw Fatal{fmt::format("reorg below the final block: the ledger's final block {} is {}, the node now has {}. "
                                    "The ledger is left untouched; check the node and the -evmfinality rule",
                                    cursor->block_number, HexEncode0x(cursor->block_hash), HexEncode0x(*hash))};
        }
        return true;
    }

    // Remembers the start block's hash before the first append that makes it final.
    void RememberStartHash(const Hash256& hash)
    {
        if (identity.start_hash) return;
        identity.start_hash = hash;
        if (auto status = WriteIdentity(options.identity_path, identity); !status) throw Fatal{status.error()};
    }

    uint64_t FinalNumber() const { return cursor ? cursor->block_number : options.start_block - 1; }
    // Invariant: our mirror of the overlay is the blocks right above the final one, each
    // once, in order (what the fetches checked is input; this is what we made of it).
    void AssertContiguous() const
    {
        uint64_t expected = FinalNumber() + 1;
        for ([[maybe_unused]] const auto& block : unfinal) assert(block.number == expected++);
    }
    std::optional<Hash256> FinalHash() const
    {
        if (cursor) return cursor->block_hash;
        return std::nullopt;
    }

    // --- the main loop ---

    // The thread's loop: one step, then the wait the step asks for.
    void Run()
    {
        while (!Stopping()) {
            const EvmFollower::StepResult result = StepOnce();
            if (result.next == EvmFollower::Next::Failed) return;
            if (result.wait_ms > 0 && !Sleep(result.wait_ms)) break;
        }
        UpdateStatus([](FollowerStatus& s) { s.state = FollowerStatus::State::Stopped; });
    }

    // Start-up checks until they pass, then one step of following; what to wait before
    // the next. Failed: following cannot go on without an operator (on_fatal was called).
    EvmFollower::StepResult StepOnce()
    {
        if (failed) return {EvmFollower::Next::Failed, 0};
        try {
            if (!identified) {
                if (!Identify()) return {EvmFollower::Next::Retry, Backoff()};
                identified = true;
                retry_delay_ms = 0;
            }
            const Next next = Step();
            PublishPending(); // a step that stopped half-way may have added blocks
            PublishRpcStats();
            if (next == Next::Retry) return {EvmFollower::Next::Retry, Backoff()};
            retry_delay_ms = 0;
            if (next == Next::Now) return {EvmFollower::Next::Now, 0};
            Report();
            // Idle: the last final block is checked too once the interval allows,
            // not only blocks that were final when a check was last due.
            if (cursor && cursor->block_number != last_reconciled_block) MaybeReconcile();
            return {EvmFollower::Next::Poll, options.poll_interval_ms};
        } catch (const Fatal& fatal) {
            LogError("EVM follower stopped: {}", fatal.message);
            Fail(fatal.message);
            if (on_fatal) on_fatal(fatal.message);
        } catch (const ledger::LedgerReadError& error) {
            // The ledger is marked degraded and keeps serving what it can read; following
            // on from a cursor we cannot read could write wrong data, so this follower stops.
            LogError("EVM follower stopped: the ledger could not be read: {}", error.what());
            Fail(std::string("ledger read failed: ") + error.what());
        }
        return {EvmFollower::Next::Failed, 0};
    }

    void Fail(const std::string& why)
    {
        failed = true;
        UpdateStatus([&](FollowerStatus& s) {
            s.state = FollowerStatus::State::Failed;
            s.error = why;
        });
    }

    uint64_t Backoff()
    {
        retry_delay_ms = std::min<uint32_t>(kRetryDelayMsMax, retry_delay_ms == 0 ? 250 : retry_delay_ms * 2);
        return retry_delay_ms;
    }

    std::optional<BlockHeader> NodeFinal(const BlockHeader& head)
    {
        const FinalQuery query = DecideFinalQuery(options.finality, options.finality_depth, head.number);
        switch (query.kind) {
        case FinalQuery::Kind::Tag: return HeaderByTag(std::string(query.tag));
        case FinalQuery::Kind::Number: return HeaderByTag(BlockTag(query.number));
        case FinalQuery::Kind::Head: return head;
        case FinalQuery::Kind::Nothing: return BlockHeader{};
        }
        return std::nullopt;
    }

    FinalView View(const std::vector<PendingRef>& pending) const
    {
        return FinalView{.final_number = FinalNumber(),
                         .final_hash = FinalHash(),
                         .start_block = options.start_block,
                         .pending = pending};
    }

    // The node's head and final block. A tag rule does not depend on the head, so both
    // come in one exchange; a depth rule needs the head's height first.
    std::optional<std::pair<BlockHeader, BlockHeader>> HeadAndNodeFinal()
    {
        const FinalQuery by_tag = DecideFinalQuery(options.finality, options.finality_depth, 0);
        if (by_tag.kind == FinalQuery::Kind::Tag) {
            auto headers = HeadersByTag({json("latest"), json(std::string(by_tag.tag))});
            if (!headers) return std::nullopt;
            return std::pair{(*headers)[0], (*headers)[1]};
        }
        auto head = HeaderByTag("latest");
        if (!head) return std::nullopt;
        auto node_final = NodeFinal(*head);
        if (!node_final) return std::nullopt;
        return std::pair{*head, *node_final};
    }

    Next Step()
    {
        ThrowIfNoHonestEndpoint();
        auto tip = HeadAndNodeFinal();
        if (!tip) return Next::Retry;
        const BlockHeader& head = tip->first;
        const BlockHeader& node_final = tip->second;
        UpdateStatus([&](FollowerStatus& s) {
            if (s.head_block != head.number || s.head_changed_unix_s == 0) s.head_changed_unix_s = clock->UnixSeconds();
            s.head_block = head.number;
            s.node_final_block = node_final.number;
        });
        const std::vector<PendingRef> pending = PendingRefs();
        FinalDecision decision = DecideOnFinal(View(pending), node_final.number, node_final.hash);
        if (decision.kind == FinalDecision::Kind::AskTip) {
            auto header = HeaderByTag(BlockTag(pending.back().number));
            if (!header) return Next::Retry;
            decision = DecideOnFinalTip(View(pending), header->hash);
        }
        switch (decision.kind) {
        case FinalDecision::Kind::CheckFinalBlock: return CheckFinalBlock() ? Next::Now : Next::Retry;
        case FinalDecision::Kind::Finalize:
            if (!Finalize(decision.up_to)) return Next::Retry;
            // The head and final block just read still hold: extend on them rather than
            // ask the node for both again (one exchange less per final block).
            if (DecideOnFinal(View(PendingRefs()), node_final.number, node_final.hash).kind != FinalDecision::Kind::Follow) {
                return Next::Now;
            }
            return ExtendPending(head, PendingRefs());
        case FinalDecision::Kind::FindAncestor: return HandleReorg(decision.search_max) ? Next::Now : Next::Retry;
        case FinalDecision::Kind::CatchUp: return CatchUp(node_final) ? Next::Now : Next::Retry;
        case FinalDecision::Kind::AskTip: break; // answered above
        case FinalDecision::Kind::Follow: break;
        }
        return ExtendPending(head, pending);
    }

    bool Finalize(uint64_t up_to)
    {
        if (options.verify == VerifyMode::Quorum && !QuorumAgreesOnPending(up_to)) return false;
        const BlockRef& last = unfinal[up_to - unfinal.front().number];
        if (unfinal.front().number <= options.start_block && options.start_block <= up_to) {
            RememberStartHash(unfinal[options.start_block - unfinal.front().number].hash);
        }
        uint64_t events = 0;
        for (const auto& block : unfinal) {
            if (block.number > up_to) break;
            events += block.events;
        }
        auto appended = ledger.FinalizePending(std::string(kCursorSource), up_to);
        if (!appended) {
            LogError("EVM: cannot append final blocks up to {}: {}", up_to, appended.error());
            UpdateStatus([&](FollowerStatus& s) { s.error = appended.error(); });
            // The ledger may have appended a prefix: resynchronise with its cursor.
            ResyncWithLedger();
            return false;
        }
        assert(!cursor || up_to > cursor->block_number); // the final cursor only moves forward
        cursor = ledger::Cursor{std::string(kCursorSource), up_to, last.hash};
        while (!unfinal.empty() && unfinal.front().number <= up_to) unfinal.pop_front();
        AssertContiguous();
        LogDebug(log::Category::Evm, "Final block {} ({}), {} events; log size {}", up_to, HexEncode0x(last.hash), events,
                 appended->tree_size);
        UpdateStatus([&](FollowerStatus& s) {
            s.final_block = up_to;
            s.events_final += events;
            s.events_pending -= std::min(s.events_pending, events);
        });
        PublishPending();
        MaybeReconcile();
        return true;
    }

    // After a failed ledger write: our mirror of the overlay follows the ledger's.
    void ResyncWithLedger()
    {
        cursor = ledger.GetCursor(std::string(kCursorSource));
        while (!unfinal.empty() && unfinal.front().number <= FinalNumber()) unfinal.pop_front();
        const auto pending = ledger.GetPending(std::string(kCursorSource));
        if (pending.size() != unfinal.size()) {
            ledger.RollbackPending(std::string(kCursorSource), FinalNumber());
            unfinal.clear();
        }
        PublishPending();
    }

    std::vector<PendingRef> PendingRefs() const
    {
        std::vector<PendingRef> out;
        out.reserve(unfinal.size());
        for (const auto& block : unfinal) out.push_back({block.number, block.hash});
        return out;
    }

    // Walks back from `search_max` to the newest of our blocks the node still has (only
    // heights the node can have are asked: above its head they are gone); rolls back to it.
    bool HandleReorg(uint64_t search_max)
    {
        const std::vector<PendingRef> ours = PendingRefs();
        std::optional<uint64_t> ancestor;
        size_t end = search_max < ours.front().number ? 0 : std::min<uint64_t>(ours.size(), search_max - ours.front().number + 1);
        size_t asked = 0;
        while (end > 0 && !ancestor) {
            const size_t batch = AncestorSearchBatch(asked, options.header_batch_max);
            const size_t begin = end > batch ? end - batch : 0;
            asked += end - begin;
            std::vector<uint64_t> numbers;
            for (size_t i = end; i > begin; --i) numbers.push_back(ours[i - 1].number);
            auto headers = HeadersByNumber(*client, parser, numbers);
            if (!headers) return false;
            std::map<uint64_t, Hash256> node;
            for (const auto& [number, header] : *headers) node[number] = header.hash;
            ancestor = CommonAncestor(ours, search_max, node);
            end = begin;
        }
        if (!ancestor) {
            if (cursor && !CheckFinalBlock()) return false;
            ancestor = FinalNumber();
        }
        return RollBackTo(*ancestor);
    }

    bool RollBackTo(uint64_t ancestor)
    {
        const uint64_t tip = unfinal.back().number;
        const uint64_t depth = tip - ancestor;
        if (depth == 0) {
            // Our tip is still there: the break was in the node's answer, not the chain.
            NoteInconsistent(fmt::format("block {} did not link to our tip {}", tip + 1, tip));
            return false;
        }
        if (!sim::Mutated(sim::Mutation::KeepOverlayOnReorg)) ledger.RollbackPending(std::string(kCursorSource), ancestor);
        while (!unfinal.empty() && unfinal.back().number > ancestor) unfinal.pop_back();
        AssertContiguous();
        LogWarning("EVM reorg: rolled back {} pending block{} to block {}", depth, depth == 1 ? "" : "s", ancestor);
        UpdateStatus([&](FollowerStatus& s) {
            ++s.reorgs;
            s.reorg_depth_max = std::max(s.reorg_depth_max, depth);
        });
        PublishPending();
        return true;
    }

    // The node's hash at `number`: an empty inner optional when it has no block there (gone);
    // nullopt when it could not be asked or answered wrongly.
    std::optional<std::optional<Hash256>> HashIfAny(uint64_t number)
    {
        auto block = CallOrNote(*client, "eth_getBlockByNumber", json::array({BlockTag(number), false}));
        if (!block) return std::nullopt;
        if (block->is_null()) return std::optional<Hash256>{};
        auto header = ParseBlockHeader(*block);
        if (!header || header->number != number) {
            NoteInconsistent(fmt::format("block {}: {}", number, header ? "another block's header" : header.error()));
            return std::nullopt;
        }
        if (auto why = CheckHeaderHash(*header); why && options.verify != VerifyMode::None) {
            NoteRefused(*client, number, *why, /*header=*/true);
            return std::nullopt;
        }
        NoteHeadersPassed(std::span<const uint64_t>(&number, 1));
        return std::optional<Hash256>(header->hash);
    }

    // A head at or below our tip: the same chain, or a shorter or other one that replaced
    // ours (seen on this poll). nullopt: go on extending.
    std::optional<Next> CheckHead(const BlockHeader& head, const std::vector<PendingRef>& ours)
    {
        if (ours.empty()) return std::nullopt;
        HeadDecision decision = DecideOnHead(ours, head.number, head.hash);
        if (decision.kind == HeadDecision::Kind::CheckTip) {
            const auto at_tip = HashIfAny(ours.back().number);
            if (!at_tip) return Next::Retry;
            decision = DecideOnTip(ours, head.number, head.hash, *at_tip);
        }
        switch (decision.kind) {
        case HeadDecision::Kind::Extend: return std::nullopt;
        case HeadDecision::Kind::CheckTip: return Next::Retry; // DecideOnTip never asks again
        case HeadDecision::Kind::NodeBehind:
            LogDebug(log::Category::Evm, "EVM node's head {} is behind our pending tip {}, which it has", head.number,
                     ours.back().number);
            return Next::Poll;
        case HeadDecision::Kind::RollBack:
            LogInfo("EVM node's chain is shorter: head {}, and our pending tip {} is gone", head.number, ours.back().number);
            return RollBackTo(decision.ancestor) ? Next::Now : Next::Retry;
        case HeadDecision::Kind::FindAncestor: return HandleReorg(decision.search_max) ? Next::Now : Next::Retry;
        }
        return std::nullopt;
    }

    // Adds the blocks after our tip, up to the head, to the pending overlay.
    // `pending`: PendingRefs() as Step took it.
    Next ExtendPending(const BlockHeader& head, const std::vector<PendingRef>& pending)
    {
        const uint64_t tip_number = unfinal.empty() ? FinalNumber() : unfinal.back().number;
        const BlockRange range = NextPendingRange(tip_number, FinalNumber(), head.number, options.pending_blocks_max,
                                                  options.header_batch_max);
        if (auto next = CheckHead(head, pending)) return *next;
        if (range.empty()) {
            UpdateStatus([](FollowerStatus& s) { s.state = FollowerStatus::State::Following; });
            return Next::Poll;
        }
        // The head came with this poll, checked: only the blocks before it are asked for.
        const bool head_in_range = range.to == head.number;
        std::vector<uint64_t> numbers;
        for (uint64_t n = range.from; n < range.to + (head_in_range ? 0 : 1); ++n) numbers.push_back(n);
        auto headers = numbers.empty() ? std::map<uint64_t, BlockHeader>{}
                                       : HeadersByNumber(*client, parser, numbers, /*prefix_ok=*/true);
        if (!headers) return Next::Retry;
        if (head_in_range && headers->size() == numbers.size()) headers->emplace(head.number, head);
        const auto fetched_at = Clock::now();
        // The headers up to the first the node did not answer (or that failed verification:
        // asked again next time); they must link to our tip and to each other.
        std::vector<BlockHeader> batch;
        std::vector<HeaderLink> links;
        for (uint64_t n = range.from; n <= range.to; ++n) {
            const auto found = headers->find(n);
            if (found == headers->end()) break;
            batch.push_back(found->second);
            links.push_back({found->second.number, found->second.hash, found->second.parent_hash});
        }
        const std::optional<Hash256> parent = unfinal.empty() ? FinalHash() : std::optional(unfinal.back().hash);
        const LinkDecision link = LinkToTip(parent, unfinal.empty(), links);
        switch (link.kind) {
        case LinkDecision::Kind::FinalMoved:
            // The chain changed below the final block, or the node moved: check.
            CheckFinalBlock();
            return Next::Retry;
        case LinkDecision::Kind::TipReplaced: return HandleReorg(unfinal.back().number) ? Next::Now : Next::Retry;
        case LinkDecision::Kind::Linked: break;
        }
        batch.resize(link.linked);
        if (auto next = AddPendingBlocks(batch, fetched_at)) return *next;
        PublishPending();
        if (range.cut || headers->size() < range.to - range.from + 1) return Next::Now;
        UpdateStatus([](FollowerStatus& s) { s.state = FollowerStatus::State::Following; });
        return Next::Poll;
    }

    // The logs of exactly these linked blocks (eth_getLogs by blockHash, EIP-234), each
    // block checked and added to the overlay; nullopt when all were added.
    std::optional<Next> AddPendingBlocks(const std::vector<BlockHeader>& linked, Clock::time_point fetched_at)
    {
        std::vector<RpcRequest> requests;
        for (const auto& header : linked) {
            requests.push_back({"eth_getLogs", json::array({json{{"blockHash", HexEncode0x(header.hash)},
                                                                  {"address", LogFilter()}}})});
        }
        auto batch = client->BatchRaw(requests);
        if (!batch) {
            if (batch.error().kind != RpcError::Kind::Stopped) {
                LogWarning("EVM RPC log batch failed: {}", batch.error().ToString());
            }
            return Next::Retry;
        }
        auto answers = parser.ParseGetLogsBatch(batch->body, batch->first_id, requests.size(), options.logs_per_request_max);
        if (!answers) {
            NoteInconsistent(fmt::format("logs of blocks {}..: {}", linked.front().number, answers.error()));
            return Next::Retry;
        }
        for (size_t i = 0; i < linked.size(); ++i) {
            const GetLogsAnswer& answer = answers.value()[i];
            if (answer.is_error) {
                // Typically "unknown block": it was reorged away since the headers came.
                LogDebug(log::Category::Evm, "logs of block {} not available: code {}: {}", linked[i].number,
                         answer.error_code, answer.error_message);
                return i == 0 ? Next::Retry : Next::Now;
            }
            if (!AddPendingBlock(linked[i], answer.logs, fetched_at)) return Next::Retry;
        }
        return std::nullopt;
    }

    // One block's logs checked against its header and -evmverify, then into the overlay.
    bool AddPendingBlock(const BlockHeader& header, const std::vector<Log>& logs, Clock::time_point fetched_at)
    {
        ledger::PendingBlock block{header.number, header.hash, {}};
        uint64_t raw = 0;
        if (auto error = DecodeBlockLogs(logs, header, block.events, raw)) {
            NoteInconsistent(*error);
            return false;
        }
        if (!VerifyBlocks(*client, {BlockLogs{&header, std::span<const Log>(logs)}})) return false;
        NotePassed(header.number, header.number);
        Sha256Hasher hasher;
        for (const auto& event : block.events) hasher.Update(Sha256(ledger::EncodeEvent(event)));
        const BlockRef ref{header.number, header.hash, hasher.Finalize(), block.events.size()};
        const uint64_t events = block.events.size();
        if (auto status = ledger.AddPendingBlock(std::string(kCursorSource), std::move(block)); !status) {
            LogError("EVM: cannot add pending block {}: {}", header.number, status.error());
            ResyncWithLedger();
            return false;
        }
        unfinal.push_back(ref);
        AssertContiguous();
        const double latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - fetched_at).count();
        LOCK(status_mutex);
        if (this->latency_ms.size() >= kLatencySamplesMax) this->latency_ms[latency_next] = latency_ms;
        else this->latency_ms.push_back(latency_ms);
        latency_next = (latency_next + 1) % kLatencySamplesMax;
        ++status.visible_latency_count;
        status.visible_latency_seconds_sum += latency_ms / 1e3;
        status.events_pending += events;
        status.raw_logs += raw;
        return true;
    }

    // Logs of one block, checked against its header and ordered by log index.
    std::optional<std::string> DecodeBlockLogs(std::span<const Log> logs, const BlockHeader& header,
                                               std::vector<ledger::Event>& out, uint64_t& raw) const
    {
        std::optional<uint32_t> previous_index;
        for (const auto& log : logs) {
            if (log.block_hash != header.hash || log.block_number != header.number || log.removed) {
                return fmt::format("a log of block {} says block {} {}", header.number, log.block_number,
                                   HexEncode0x(log.block_hash));
            }
            if (previous_index && log.log_index <= *previous_index) {
                return fmt::format("logs of block {} are not in log-index order", header.number);
            }
            previous_index = log.log_index;
            auto decoded = decoder.Decode(log);
            if (!decoded) return decoded.error();
            raw += decoded->raw ? 1 : 0;
            out.push_back(std::move(decoded->event));
        }
        return std::nullopt;
    }

    // --- verification (-evmverify): the checks are pure (verify.h); the fetching is here ---

    using BlockLogs = std::pair<const BlockHeader*, std::span<const Log>>;

    // The blocks of a range to verify, each with its run of logs: blocks with logs, and in
    // receipts mode every block (its bloom may admit a log that eth_getLogs left out).
    std::vector<BlockLogs> BlocksOf(const std::map<uint64_t, BlockHeader>& headers, std::span<const Log> logs,
                                    uint64_t from, uint64_t to) const
    {
        std::vector<BlockLogs> out;
        size_t begin = 0;
        for (const auto& [number, header] : headers) {
            if (number < from || number > to) continue;
            size_t end = begin;
            while (end < logs.size() && logs[end].block_number == number) ++end;
            if (end > begin || options.verify == VerifyMode::Receipts) out.emplace_back(&header, logs.subspan(begin, end - begin));
            begin = end;
        }
        return out;
    }

    // Each block's logs against its logsBloom and, in receipts mode, against its receipts
    // when it holds watched logs or its bloom admits some. false: refused or not fetched.
    bool VerifyBlocks(JsonRpcClient& rpc, const std::vector<BlockLogs>& blocks)
    {
        if (options.verify == VerifyMode::None) return true;
        const auto watched = Watched();
        std::vector<BlockLogs> closer;
        for (const auto& [header, logs] : blocks) {
            if (auto why = CheckLogsInBloom(*header, logs)) {
                NoteRefused(rpc, header->number, *why);
                return false;
            }
            if (options.verify == VerifyMode::Receipts && (!logs.empty() || BloomMayHoldAddress(header->logs_bloom, watched))) {
                closer.emplace_back(header, logs);
            }
        }
        for (size_t begin = 0; begin < closer.size(); begin += kReceiptsBatchMax) {
            const size_t end = std::min(closer.size(), begin + kReceiptsBatchMax);
            std::vector<RpcRequest> requests;
            for (size_t i = begin; i < end; ++i) {
                requests.push_back({"eth_getBlockReceipts", json::array({HexEncode0x(closer[i].first->hash)})});
            }
            const uint64_t http_us_before = rpc.stats().latency_us_total;
            auto results = rpc.Batch(requests);
            const auto check_started = Clock::now();
            if (!results) {
                if (results.error().kind != RpcError::Kind::Stopped) {
                    LogWarning("EVM RPC receipts batch failed: {}", results.error().ToString());
                }
                return false;
            }
            const double http_s = static_cast<double>(rpc.stats().latency_us_total - http_us_before) / 1e6;
            for (size_t i = begin; i < end; ++i) {
                const BlockHeader& header = *closer[i].first;
                const auto& result = results.value()[i - begin];
                if (!result || result.value().is_null()) { // a block reorged away, or a node without the method
                    LogWarning("EVM eth_getBlockReceipts of block {} failed: {}", header.number,
                               result ? "no such block" : result.error().ToString());
                    return false;
                }
                auto receipts = ParseBlockReceipts(result.value(), options.logs_per_request_max);
                const auto why = receipts ? CheckReceipts(header, *receipts, closer[i].second, watched)
                                          : fmt::format("receipts of block {}: {}", header.number, receipts.error());
                if (why) {
                    NoteRefused(rpc, header.number, *why);
                    return false;
                }
            }
            const double check_s = Seconds(check_started);
            UpdateStatus([&](FollowerStatus& s) {
                s.catch_up.receipts_http_s += http_s;
                s.catch_up.receipts_check_s += check_s;
            });
        }
        UpdateStatus([&](FollowerStatus& s) { s.receipts_checked += closer.size(); });
        return true;
    }

    // One endpoint's view of a final range, as a quorum digest.
    QuorumAnswer AskEndpoint(const std::string& url, uint64_t from, uint64_t to)
    {
        RpcClientOptions peer_options = RpcOptions();
        peer_options.urls = {url};
        peer_options.attempts_max = kQuorumAttemptsMax;
        JsonRpcClient peer(peer_options, &stop);
        QuorumAnswer answer{.endpoint = RedactUrl(url)};
        auto logs_json = peer.Call("eth_getLogs", json::array({json{{"fromBlock", BlockTag(from)}, {"toBlock", BlockTag(to)},
                                                                    {"address", LogFilter()}}}));
        if (!logs_json) {
            answer.error = logs_json.error().ToString();
            return answer;
        }
        auto block_json = peer.Call("eth_getBlockByNumber", json::array({BlockTag(to), false}));
        if (!block_json) {
            answer.error = block_json.error().ToString();
            return answer;
        }
        answer.answered = true; // from here on, an answer we cannot read differs from ours
        auto logs = ParseLogs(*logs_json, options.logs_per_request_max);
        auto header = ParseBlockHeader(*block_json);
        if (!logs || !header) return answer;
        std::vector<ledger::Event> events;
        for (const auto& log : *logs) {
            auto decoded = decoder.Decode(log);
            if (!decoded) return answer;
            events.push_back(std::move(decoded->event));
        }
        answer.digest = QuorumDigest(header->hash, events);
        return answer;
    }

    // Every endpoint is asked for the range; at least options.quorum must give our digest.
    bool QuorumAgrees(JsonRpcClient& rpc, uint64_t from, uint64_t to, const Hash256& ours)
    {
        std::vector<QuorumAnswer> answers;
        const auto started = Clock::now();
        for (const auto& url : options.rpc.urls) {
            if (Stopping()) return false;
            answers.push_back(AskEndpoint(url, from, to));
        }
        const double quorum_s = Seconds(started);
        UpdateStatus([&](FollowerStatus& s) { s.catch_up.quorum_s += quorum_s; });
        const QuorumVerdict verdict = JudgeQuorum(ours, answers, options.quorum);
        if (verdict.agreed) {
            UpdateStatus([](FollowerStatus& s) { ++s.quorum_checks; });
            return true;
        }
        const bool disagreement = std::any_of(answers.begin(), answers.end(),
                                              [&](const QuorumAnswer& a) { return a.answered && a.digest != ours; });
        LogWarning("EVM quorum: blocks {} to {} are not appended: {}", from, to, verdict.detail);
        if (disagreement) NoteRefused(rpc, from, fmt::format("quorum for blocks {} to {}: {}", from, to, verdict.detail));
        return false;
    }

    // Pending blocks up to `up_to` become final only if a quorum gives the same.
    bool QuorumAgreesOnPending(uint64_t up_to)
    {
        std::vector<ledger::Event> events;
        for (auto& block : ledger.GetPending(std::string(kCursorSource))) {
            if (block.number > up_to) break;
            events.insert(events.end(), std::make_move_iterator(block.events.begin()), std::make_move_iterator(block.events.end()));
        }
        const BlockRef& last = unfinal[up_to - unfinal.front().number];
        if (QuorumAgrees(*client, unfinal.front().number, up_to, QuorumDigest(last.hash, events))) return true;
        // What we hold may be the lie: drop it, so that the blocks are fetched again as a
        // catch-up, whose ranges face the quorum before they are appended.
        ledger.RollbackPending(std::string(kCursorSource), FinalNumber());
        unfinal.clear();
        PublishPending();
        return false;
    }

    void PublishRpcStats()
    {
        RpcClientStats total = client->stats();
        total.requests += fetcher_rpc.requests;
        total.calls += fetcher_rpc.calls;
        total.retries += fetcher_rpc.retries;
        total.transport_errors += fetcher_rpc.transport_errors;
        total.http_errors += fetcher_rpc.http_errors;
        total.rate_limited += fetcher_rpc.rate_limited;
        total.malformed += fetcher_rpc.malformed;
        total.rpc_errors += fetcher_rpc.rpc_errors;
        total.failovers += fetcher_rpc.failovers;
        total.bytes_received += fetcher_rpc.bytes_received;
        total.latency_us_total += fetcher_rpc.latency_us_total;
        UpdateStatus([&](FollowerStatus& s) { s.rpc = total; });
    }

    void PublishPending()
    {
        Sha256Hasher hasher;
        uint64_t events = 0;
        for (const auto& block : unfinal) {
            hasher.Update(block.events_digest);
            events += block.events;
        }
        const Hash256 digest = hasher.Finalize();
        UpdateStatus([&](FollowerStatus& s) {
            s.pending_tip = unfinal.empty() ? std::nullopt : std::optional<uint64_t>(unfinal.back().number);
            s.pending_digest = digest;
            s.events_pending = events;
        });
    }

    // --- catch-up over final blocks ---

    // What a catch-up's appends add up to, for its log lines and status.
    struct CatchUpProgress {
        uint64_t from{0};
        uint64_t appended_events{0};
        std::chrono::steady_clock::time_point started{std::chrono::steady_clock::now()};
        std::chrono::steady_clock::time_point last_log{started};
    };

    // Fetched slots of a parallel catch-up, shared by the fetchers and this thread.
    struct CatchUpQueue {
        Mutex mutex;
        ConditionVariable cv;
        uint64_t next_slot GUARDED_BY(mutex){0};
        std::map<uint64_t, FetchedRange> fetched GUARDED_BY(mutex); // by first block
        size_t slots_out GUARDED_BY(mutex){0};                      // handed out, not yet appended
        size_t fetchers_running GUARDED_BY(mutex){0};
        bool failed GUARDED_BY(mutex){false};
        bool abort GUARDED_BY(mutex){false};
    };

    // With fetchers (several ranges in flight, so the node and this process work at the
    // same time) or, with options.fetchers == 0, inline on this thread (the simulator).
    bool CatchUp(const BlockHeader& target)
    {
        CatchUpProgress progress{.from = FinalNumber() + 1};
        UpdateStatus([](FollowerStatus& s) { s.state = FollowerStatus::State::CatchingUp; });
        const bool long_catch_up = target.number - progress.from + 1 >= kCatchUpLogBlocksMin;
        if (long_catch_up) {
            LogInfo("EVM catch-up: blocks {} to {} ({} blocks)", progress.from, target.number,
                    target.number - progress.from + 1);
        }
        target_disputed = false;
        const bool ok = options.fetchers == 0 ? CatchUpInline(target, progress) : CatchUpParallel(target, progress);
        const double seconds = Seconds(progress.started);
        UpdateStatus([&](FollowerStatus& s) { s.catch_up.wall_s += seconds; });
        if (ok && long_catch_up) {
            LogInfo("EVM catch-up done: final block {}, {} events in {:.2f} s ({:.0f} events/s)", FinalNumber(),
                    progress.appended_events, seconds,
                    seconds > 0 ? static_cast<double>(progress.appended_events) / seconds : 0.0);
        }
        if (ok) MaybeReconcile();
        return ok;
    }

    bool CatchUpInline(const BlockHeader& target, CatchUpProgress& progress)
    {
        for (uint64_t slot_from = progress.from; slot_from <= target.number;) {
            const uint64_t slot_to = std::min(target.number, slot_from + CurrentRange() - 1);
            auto range = FetchSlot(*client, parser, slot_from, slot_to, target);
            if (!range || !AppendCounted(*range, target, progress)) return false;
            slot_from = slot_to + 1;
        }
        return true;
    }

    // Appends a fetched range and counts it; false: not appended.
    bool AppendCounted(const FetchedRange& range, const BlockHeader& target, CatchUpProgress& progress)
    {
        const auto append_started = std::chrono::steady_clock::now();
        if (!AppendRange(range)) return false;
        progress.appended_events += range.events.size();
        const double append_s = Seconds(append_started);
        UpdateStatus([&](FollowerStatus& s) {
            s.catch_up.append_s += append_s;
            s.catch_up.events += range.events.size();
        });
        if (std::chrono::steady_clock::now() - progress.last_log > std::chrono::seconds(10)) {
            progress.last_log = std::chrono::steady_clock::now();
            const double seconds = Seconds(progress.started);
            LogInfo("EVM catch-up: block {} of {} ({:.1f}%), {} events, {:.0f} events/s", range.to, target.number,
                    100.0 * static_cast<double>(range.to - progress.from + 1) /
                        static_cast<double>(target.number - progress.from + 1),
                    progress.appended_events, static_cast<double>(progress.appended_events) / seconds);
        }
        return true;
    }

    // A fetcher thread: takes the next slot while fewer than prefetch_ranges_max are out.
    void RunFetcher(CatchUpQueue& queue, const BlockHeader& target, RpcClientStats& stats_out)
    {
        auto rpc = NewClient();
        AnswerParser fetcher_parser;
        for (;;) {
            uint64_t slot_from = 0;
            uint64_t slot_to = 0;
            {
                const auto wait_started = std::chrono::steady_clock::now();
                LOCK(queue.mutex);
                while (queue.slots_out >= options.prefetch_ranges_max && !queue.failed && !queue.abort) {
                    queue.cv.wait(queue.mutex);
                }
                const double waited_s = Seconds(wait_started);
                UpdateStatus([&](FollowerStatus& s) { s.catch_up.queue_full_s += waited_s; });
                if (queue.failed || queue.abort || Stopping() || queue.next_slot > target.number) break;
                slot_from = queue.next_slot;
                slot_to = std::min(target.number, slot_from + CurrentRange() - 1);
                queue.next_slot = slot_to + 1;
                ++queue.slots_out;
            }
            auto range = FetchSlot(*rpc, fetcher_parser, slot_from, slot_to, target);
            LOCK(queue.mutex);
            if (range) queue.fetched.emplace(slot_from, std::move(*range));
            else queue.failed = true;
            queue.cv.notify_all();
            if (queue.failed) break;
        }
        stats_out = rpc->stats();
        LOCK(queue.mutex);
        --queue.fetchers_running;
        queue.cv.notify_all();
    }

    // The next range in block order, once fetched; nullopt when the fetchers stopped short.
    std::optional<FetchedRange> TakeFetched(CatchUpQueue& queue, uint64_t expected)
    {
        const auto wait_started = std::chrono::steady_clock::now();
        LOCK(queue.mutex);
        while (!queue.fetched.contains(expected) && queue.fetchers_running > 0) queue.cv.wait(queue.mutex);
        const double waited_s = Seconds(wait_started);
        UpdateStatus([&](FollowerStatus& s) { s.catch_up.queue_empty_s += waited_s; });
        auto it = queue.fetched.find(expected);
        if (it == queue.fetched.end()) return std::nullopt; // failures, a disputed target, or shutdown
        FetchedRange range = std::move(it->second);
        queue.fetched.erase(it);
        return range;
    }

    bool CatchUpParallel(const BlockHeader& target, CatchUpProgress& progress)
    {
        CatchUpQueue queue;
        const size_t fetcher_count = std::max<size_t>(1, std::min(options.fetchers, options.prefetch_ranges_max));
        {
            LOCK(queue.mutex);
            queue.next_slot = progress.from;
            queue.fetchers_running = fetcher_count;
        }
        std::vector<RpcClientStats> fetcher_stats(fetcher_count);
        std::vector<std::thread> fetchers;
        for (size_t f = 0; f < fetcher_count; ++f) {
            fetchers.emplace_back([&, f] { RunFetcher(queue, target, fetcher_stats[f]); });
        }
        auto finish = [&] {
            {
                LOCK(queue.mutex);
                queue.abort = true;
            }
            queue.cv.notify_all();
            for (auto& fetcher : fetchers) fetcher.join();
        };
        bool ok = true;
        try {
            for (uint64_t expected = progress.from; expected <= target.number;) {
                auto range = TakeFetched(queue, expected);
                const bool appended = range && AppendCounted(*range, target, progress);
                {
                    LOCK(queue.mutex);
                    if (range) --queue.slots_out;
                    if (!appended) queue.failed = true;
                }
                queue.cv.notify_all();
                if (!appended) {
                    ok = false;
                    break;
                }
                expected = range->to + 1;
            }
        } catch (...) {
            finish();
            throw;
        }
        finish();
        for (const auto& stats : fetcher_stats) AddFetcherStats(stats);
        return ok;
    }

    uint64_t CurrentRange()
    {
        LOCK(range_mutex);
        return range_sizer.blocks();
    }

    // One slot of blocks, fetched in as many eth_getLogs ranges as the node allows; each
    // range is retried until it succeeds or failures pile up. nullopt: give up this slot.
    std::optional<FetchedRange> FetchSlot(JsonRpcClient& rpc, AnswerParser& parser, uint64_t from, uint64_t to,
                                          const BlockHeader& target)
    {
        FetchedRange slot{.from = from, .to = to};
        uint64_t next = from;
        uint32_t failures_in_row = 0;
        uint32_t delay_ms = 0;
        while (next <= to) {
            if (Stopping() || target_disputed.load()) return std::nullopt;
            const uint64_t piece_to = std::min(to, next + CurrentRange() - 1);
            auto piece = FetchRange(rpc, parser, next, piece_to, target);
            if (!piece) {
                // After many failures in a row, the main loop starts over with a fresh target.
                if (target_disputed.load() || ++failures_in_row >= kFetchFailuresMax) return std::nullopt;
                delay_ms = std::min<uint32_t>(kFetchRetryDelayMsMax, delay_ms == 0 ? 100 : delay_ms * 2);
                Sleep(delay_ms);
                continue;
            }
            failures_in_row = 0;
            delay_ms = 0;
            if (next == from) {
                slot.parent_hash = piece->parent_hash;
            } else if (piece->parent_hash != slot.block_hashes.at(next - 1)) {
                NoteInconsistent(fmt::format("block {} does not extend block {}", next, next - 1));
                return std::nullopt;
            }
            slot.events.insert(slot.events.end(), std::make_move_iterator(piece->events.begin()),
                               std::make_move_iterator(piece->events.end()));
            slot.block_hashes.merge(piece->block_hashes);
            slot.raw_logs += piece->raw_logs;
            next = piece_to + 1;
        }
        return slot;
    }

    // Where a range's time went (added to the catch-up's figures once it succeeds).
    struct RangeTimings {
        double http_s{0};
        double parse_s{0};
        double headers_s{0};
        double decode_s{0};
    };

    // A refused eth_getLogs: a smaller range next, or a warning and the same again.
    void OnLogsRefused(const LogsRefusal& refusal, uint64_t from, uint64_t to, const std::string& why)
    {
        if (refusal.kind == LogsRefusal::Kind::Shrink) {
            ShrinkRange(refusal.blocks, why, refusal.stated);
            return;
        }
        LogWarning("EVM eth_getLogs {}..{} failed: {}", from, to, why);
        UpdateStatus([&](FollowerStatus& s) { s.error = why; });
    }

    // The logs of from..to, in one eth_getLogs. nullopt: ask again (the range may have shrunk).
    std::optional<std::vector<Log>> FetchLogs(JsonRpcClient& rpc, AnswerParser& parser, uint64_t from, uint64_t to,
                                              RangeTimings& timings)
    {
        const uint64_t blocks = to - from + 1;
        const uint64_t http_us_before = rpc.stats().latency_us_total;
        auto answer = rpc.CallRaw("eth_getLogs", json::array({json{{"fromBlock", BlockTag(from)},
                                                                   {"toBlock", BlockTag(to)},
                                                                   {"address", LogFilter()}}}));
        timings.http_s = static_cast<double>(rpc.stats().latency_us_total - http_us_before) / 1e6;
        if (!answer) {
            const RpcError& error = answer.error();
            if (error.kind == RpcError::Kind::Stopped) return std::nullopt;
            // Like a provider's "too much": a smaller range gives a smaller answer.
            const LogsRefusal refusal = error.kind == RpcError::Kind::TooLarge ? OnLogsTooLarge(blocks, /*cut_off=*/true)
                                                                               : LogsRefusal{};
            OnLogsRefused(refusal, from, to, error.ToString());
            return std::nullopt;
        }
        const auto parse_started = Clock::now();
        auto parsed = parser.ParseGetLogs(answer->body, answer->id, options.logs_per_request_max);
        answer->body = std::string(); // the largest thing held here
        timings.parse_s = Seconds(parse_started);
        if (!parsed) {
            if (parsed.error_kind() == ErrorKind::TooLarge) { // a smaller range has fewer logs
                OnLogsRefused(OnLogsTooLarge(blocks, /*cut_off=*/false), from, to, parsed.error());
            } else {
                NoteInconsistent(fmt::format("eth_getLogs {}..{}: {}", from, to, parsed.error()));
            }
            return std::nullopt;
        }
        if (parsed->is_error) {
            const LogsRefusal refusal = OnLogsError(parsed->error_message, blocks);
            OnLogsRefused(refusal, from, to,
                          refusal.kind == LogsRefusal::Kind::Shrink
                              ? parsed->error_message
                              : fmt::format("code {}: {}", parsed->error_code, parsed->error_message));
            return std::nullopt;
        }
        return std::move(parsed->logs);
    }

    // The range's events, block by block, each block's logs decoded against its header.
    std::optional<FetchedRange> DecodeRange(uint64_t from, uint64_t to, const std::vector<Log>& logs,
                                            const std::map<uint64_t, BlockHeader>& headers)
    {
        FetchedRange range{.from = from, .to = to, .parent_hash = headers.at(from).parent_hash};
        range.events.reserve(logs.size());
        for (size_t begin = 0; begin < logs.size();) {
            size_t end = begin;
            while (end < logs.size() && logs[end].block_number == logs[begin].block_number) ++end;
            const BlockHeader& header = headers.at(logs[begin].block_number);
            if (!range.events.empty() && range.events.back().origin->block_number >= header.number) {
                NoteInconsistent(fmt::format("eth_getLogs {}..{} is not in block order", from, to));
                return std::nullopt;
            }
            if (auto error = DecodeBlockLogs(std::span<const Log>(logs.data() + begin, end - begin), header, range.events,
                                             range.raw_logs)) {
                NoteInconsistent(*error);
                return std::nullopt;
            }
            range.block_hashes[header.number] = header.hash;
            begin = end;
        }
        range.block_hashes[from] = headers.at(from).hash;
        range.block_hashes[to] = headers.at(to).hash;
        return range;
    }

    // One eth_getLogs range: logs, the headers they need, every cross-check. nullopt: ask again.
    std::optional<FetchedRange> FetchRange(JsonRpcClient& rpc, AnswerParser& parser, uint64_t from, uint64_t to,
                                           const BlockHeader& target)
    {
        RangeTimings timings;
        auto logs = FetchLogs(rpc, parser, from, to, timings);
        if (!logs) return std::nullopt;
        const bool every_block = options.verify == VerifyMode::Receipts;
        auto wanted = HeadersWanted(from, to, target.number, every_block, *logs);
        if (!wanted) {
            NoteInconsistent(wanted.error());
            return std::nullopt;
        }
        const auto headers_started = Clock::now();
        auto headers = HeadersByNumber(rpc, parser, *wanted);
        timings.headers_s = Seconds(headers_started);
        if (!headers) return std::nullopt;
        const RangeCheck check = CheckRangeHeaders(from, to, target, *headers, every_block);
        if (check.kind != RangeCheck::Kind::Ok) {
            NoteInconsistent(check.why);
            // Start over from a fresh final block.
            if (check.kind == RangeCheck::Kind::Disputed) target_disputed = true;
            return std::nullopt;
        }
        if (!VerifyBlocks(rpc, BlocksOf(*headers, *logs, from, to))) return std::nullopt;
        const auto decode_started = Clock::now();
        auto range = DecodeRange(from, to, *logs, *headers);
        timings.decode_s = Seconds(decode_started);
        if (!range) return std::nullopt;
        if (options.verify == VerifyMode::Quorum &&
            !QuorumAgrees(rpc, from, to, QuorumDigest(headers->at(to).hash, range->events))) {
            return std::nullopt;
        }
        NotePassed(from, to);
        uint64_t now_blocks = 0;
        {
            LOCK(range_mutex);
            now_blocks = range_sizer.AfterSuccess(to - from + 1, logs->size());
        }
        UpdateStatus([&](FollowerStatus& s) {
            s.catch_up.logs_http_s += timings.http_s;
            s.catch_up.logs_parse_s += timings.parse_s;
            s.catch_up.headers_s += timings.headers_s;
            s.catch_up.decode_s += timings.decode_s;
            ++s.catch_up.ranges;
            s.range_blocks = now_blocks;
        });
        return range;
    }

    void AddFetcherStats(const RpcClientStats& stats)
    {
        fetcher_rpc.requests += stats.requests;
        fetcher_rpc.calls += stats.calls;
        fetcher_rpc.retries += stats.retries;
        fetcher_rpc.transport_errors += stats.transport_errors;
        fetcher_rpc.http_errors += stats.http_errors;
        fetcher_rpc.rate_limited += stats.rate_limited;
        fetcher_rpc.malformed += stats.malformed;
        fetcher_rpc.rpc_errors += stats.rpc_errors;
        fetcher_rpc.failovers += stats.failovers;
        fetcher_rpc.bytes_received += stats.bytes_received;
        fetcher_rpc.latency_us_total += stats.latency_us_total;
    }

    // `stated`: the node named a limit, which holds for the rest of the run; otherwise it
    // said "too much", which depends on the logs: stay below that size for a while.
    void ShrinkRange(uint64_t blocks, const std::string& why, bool stated)
    {
        uint64_t now_blocks = 0;
        {
            LOCK(range_mutex);
            now_blocks = range_sizer.Shrink(blocks, stated);
        }
        LogInfo("EVM eth_getLogs range limited by the node ({}); now {} blocks", why.substr(0, 200), now_blocks);
        UpdateStatus([&](FollowerStatus& s) {
            ++s.range_shrinks;
            s.range_blocks = now_blocks;
        });
    }

    bool AppendRange(const FetchedRange& range)
    {
        if (cursor && range.parent_hash != cursor->block_hash) {
            NoteInconsistent(fmt::format("block {} does not extend the final block {}", range.from, cursor->block_number));
            return false;
        }
        if (range.from <= options.start_block && options.start_block <= range.to) {
            auto it = range.block_hashes.find(options.start_block);
            if (it != range.block_hashes.end()) RememberStartHash(it->second);
        }
        // Cut at block boundaries so that no append exceeds the ledger's limit; each
        // piece moves the cursor to its last block, whose hash the range carries.
        size_t begin = 0;
        while (begin < range.events.size() || begin == 0) {
            size_t end = range.events.size();
            uint64_t cursor_block = range.to;
            if (end - begin > ledger::Ledger::kAppendEventsMax) {
                end = begin + ledger::Ledger::kAppendEventsMax;
                const uint64_t cut_block = range.events[end].origin->block_number;
                while (end > begin && range.events[end - 1].origin->block_number == cut_block) --end;
                if (end == begin) {
                    LogError("EVM block {} has more than {} events", cut_block, ledger::Ledger::kAppendEventsMax);
                    return false;
                }
                cursor_block = range.events[end - 1].origin->block_number;
            }
            const std::vector<ledger::Event> piece(range.events.begin() + static_cast<std::ptrdiff_t>(begin),
                                                   range.events.begin() + static_cast<std::ptrdiff_t>(end));
            const ledger::Cursor next_cursor{std::string(kCursorSource), cursor_block, range.block_hashes.at(cursor_block)};
            auto appended = ledger.Append(piece, {next_cursor});
            if (!appended) {
                LogError("EVM: cannot append blocks {} to {}: {}", range.from, cursor_block, appended.error());
                UpdateStatus([&](FollowerStatus& s) { s.error = appended.error(); });
                cursor = ledger.GetCursor(std::string(kCursorSource));
                return false;
            }
            // Invariant: the final cursor only moves forward (a reorg below it stops the follower).
            assert(!cursor || cursor_block > cursor->block_number);
            cursor = next_cursor;
            UpdateStatus([&](FollowerStatus& s) {
                s.final_block = cursor_block;
                s.events_final += piece.size();
            });
            begin = end;
            if (begin >= range.events.size()) break;
        }
        UpdateStatus([&](FollowerStatus& s) { s.raw_logs += range.raw_logs; });
        return true;
    }

    // --- reconciliation ---

    std::optional<UInt256> CallUint(const Address& to, const Bytes& calldata, const Hash256& block_hash)
    {
        auto result = client->Call("eth_call", json::array({json{{"to", FormatAddress(to)}, {"data", HexEncode0x(calldata)}},
                                                            json{{"blockHash", HexEncode0x(block_hash)}}}));
        if (!result || !result->is_string()) return std::nullopt;
        auto bytes = HexDecode(result->get<std::string>());
        if (!bytes || bytes->size() != 32) return std::nullopt;
        return UInt256::FromBigEndian(std::span<const uint8_t, 32>(bytes->data(), 32));
    }

    // At the final block: the escrow's USDC balance against the USDC in open orders, and
    // the vault's share supply against the shares the ledger counts.
    // The start block is the first deployment block: the contracts may come a few blocks
    // later. Until both have code at `block_hash` there is nothing to compare yet.
    bool ContractsDeployed(const Hash256& block_hash)
    {
        for (const Address& contract : {options.escrow, options.vault}) {
            auto code = client->Call("eth_getCode", json::array({FormatAddress(contract),
                                                                 json{{"blockHash", HexEncode0x(block_hash)}}}));
            if (code && code->is_string() && (code->get<std::string>() == "0x" || code->get<std::string>().empty())) {
                LogDebug(log::Category::Evm, "Reconciliation waits: {} has no code at block {}", FormatAddress(contract),
                         cursor->block_number);
                return false;
            }
        }
        return true;
    }

    // The escrow's token, read once from its usdc().
    std::optional<Address> Usdc(const Hash256& block_hash)
    {
        if (usdc) return usdc;
        auto token = CallUint(options.escrow, Selector("usdc()"), block_hash);
        if (!token) return std::nullopt;
        Address address{};
        const auto word = token->ToBigEndian();
        std::copy(word.begin() + 12, word.end(), address.begin());
        usdc = address;
        return usdc;
    }

    void MaybeReconcile()
    {
        if (!options.reconcile || !cursor) return;
        const auto now = clock->Now();
        if (last_reconcile != Clock::time_point{} &&
            now - last_reconcile < std::chrono::milliseconds(options.reconcile_interval_ms)) {
            return;
        }
        const Hash256 block_hash = cursor->block_hash;
        if (!ContractsDeployed(block_hash)) return;
        last_reconcile = now;
        const auto token = Usdc(block_hash);
        if (!token) {
            UpdateStatus([](FollowerStatus& s) { ++s.reconcile.errors; });
            LogWarning("EVM reconciliation skipped: cannot read the escrow's usdc() at block {}", cursor->block_number);
            return;
        }
        Bytes balance_call = Selector("balanceOf(address)");
        balance_call.resize(4 + 12);
        balance_call.insert(balance_call.end(), options.escrow.begin(), options.escrow.end());
        const auto balance = CallUint(*token, balance_call, block_hash);
        const auto shares = CallUint(options.vault, Selector("totalSupply()"), block_hash);
        const auto assets = CallUint(options.vault, Selector("totalAssets()"), block_hash);
        if (!balance || !shares || !assets) {
            UpdateStatus([](FollowerStatus& s) { ++s.reconcile.errors; });
            LogWarning("EVM reconciliation skipped: eth_call at block {} failed", cursor->block_number);
            return;
        }
        last_reconciled_block = cursor->block_number; // a check that failed is made again when idle
        RecordReconcile(*balance, *shares, *assets, ledger.GetTotals(false));
    }

    // The chain's balances at the final block against the ledger's totals: logged, and in the status.
    void RecordReconcile(const UInt256& balance, const UInt256& shares, const UInt256& assets, const ledger::Totals& totals)
    {
        const bool escrow_ok = balance == totals.escrow_locked;
        const bool shares_ok = shares == totals.vault_shares;
        if (!escrow_ok || !shares_ok) {
            LogWarning("EVM reconciliation DRIFT at block {}: escrow USDC balance {} vs {} locked in open orders; vault "
                       "shares {} vs {} in the ledger",
                       cursor->block_number, balance.ToDecimal(), totals.escrow_locked.ToDecimal(), shares.ToDecimal(),
                       totals.vault_shares.ToDecimal());
        } else {
            LogInfo("EVM reconciled at block {}: escrow holds {} USDC units, all in open orders; vault shares {} match",
                    cursor->block_number, balance.ToDecimal(), shares.ToDecimal());
        }
        UpdateStatus([&](FollowerStatus& s) {
            auto& r = s.reconcile;
            r.checked = true;
            r.checked_time = clock->UnixSeconds(); // the simulator's clock under simulation
            r.block_number = cursor->block_number;
            r.escrow_balance_chain = balance.ToDecimal();
            r.escrow_locked_ledger = totals.escrow_locked.ToDecimal();
            r.vault_shares_chain = shares.ToDecimal();
            r.vault_shares_ledger = totals.vault_shares.ToDecimal();
            r.vault_assets_chain = assets.ToDecimal();
            r.escrow_matches = escrow_ok;
            r.shares_match = shares_ok;
            if (!escrow_ok || !shares_ok) ++r.drifts;
        });
    }

    // One line when the picture changed: what tests and operators read.
    void Report()
    {
        const FollowerStatus s = Snapshot();
        const std::string final_text = cursor ? fmt::format("{} {}", cursor->block_number, HexEncode0x(cursor->block_hash)) : "none";
        const std::string tip_text = unfinal.empty() ? "none"
                                                     : fmt::format("{} {}", unfinal.back().number, HexEncode0x(unfinal.back().hash));
        const std::string report = fmt::format("EVM synced: final block {}, pending tip {}, head {}; log size {} root {}; "
                                               "pending events {} digest {}",
                                               final_text, tip_text, s.head_block, ledger.size(), HexEncode0x(ledger.root()),
                                               s.events_pending, HexEncode0x(s.pending_digest));
        if (report == last_report) return;
        last_report = report;
        LogInfo("{}", report);
    }

    FollowerStatus Snapshot() const
    {
        FollowerStatus copy;
        std::vector<double> samples;
        {
            LOCK(status_mutex);
            copy = status;
            samples = latency_ms;
        }
        copy.visible_latency_samples = samples.size();
        copy.visible_latency_ms_p50 = Percentile(samples, 0.50);
        copy.visible_latency_ms_p99 = Percentile(samples, 0.99);
        copy.visible_latency_ms_max = samples.empty() ? 0 : *std::max_element(samples.begin(), samples.end());
        return copy;
    }
};

EvmFollower::EvmFollower(FollowerOptions options, ledger::Ledger& ledger, std::function<void(const std::string&)> on_fatal)
    : m_impl(std::make_unique<Impl>(std::move(options), ledger, std::move(on_fatal)))
{
}

EvmFollower::~EvmFollower() { Stop(); }

void EvmFollower::Start()
{
    Impl& m = *m_impl;
    m.client = m.NewClient();
    m.thread = std::thread([&m] { m.Run(); });
}

void EvmFollower::Stop()
{
    Impl& m = *m_impl;
    m.stop.Stop();
    if (m.thread.joinable()) m.thread.join();
}

EvmFollower::StepResult EvmFollower::StepOnce()
{
    Impl& m = *m_impl;
    assert(!m.thread.joinable()); // one driver: the thread or the caller
    if (!m.client) m.client = m.NewClient();
    return m.StepOnce();
}

FollowerStatus EvmFollower::status() const
{
    FollowerStatus s = m_impl->Snapshot();
    if (m_impl->client && !m_impl->thread.joinable()) s.rpc = m_impl->client->stats();
    return s;
}

} // namespace bitacora::evm
