// The invariants, checked after every step against the simulated chain (the reference):
//  1. The final log is exactly the escrow's and vault's logs of the canonical chain from
//     the start block to the "evm" cursor, in (block, log index) order: no gap, no
//     duplicate, no log of an orphaned block; the cursor's hash is the canonical one.
//  2. The pending overlay is contiguous from the cursor and chained by parent hash, every
//     block in it is one the chain made at that height with exactly its logs, and it is
//     what the follower says it holds (tip and digest of its mirror).
//  3. Once the node is quiet and the follower idle: the cursor is at the node's finalized
//     block and the overlay is exactly the canonical blocks above it.
//  4. After a reorg below a block the ledger holds as final: the follower stops with its
//     error, and the log stays as it was.
//  5. At the end: the projections' state hash equals a rebuild's, and the ledger's own
//     consistency check (every leaf, node and the high-water mark) passes.
// A crash (power cut) may lose final events that were not synced: the log may shrink,
// but only to a prefix of what it was, and the follower fetches them again.
// The Bitcoin follower and the anchorer run beside it on the same ledger (sim_btc_side.h
// lists their invariants); their anchor events are the only other events in the log.
// After a reorg below final the daemon exits (the EVM follower's fatal error): from
// then on the Bitcoin side is stopped too.
#include "tests/sim/sim_run.h"

#include "common/logging.h"
#include "indexer/evm/follower.h"
#include "indexer/evm/log_decoder.h"
#include "ledger/ledger.h"
#include "tests/sim/fault_fs.h"
#include "tests/sim/sim_btc_side.h"
#include "tests/sim/sim_evm.h"

#include <fmt/format.h>

#include <deque>
#include <memory>

namespace bitacora::sim {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kStartBlock = 1;
constexpr uint32_t kFollowerStepsPerStepMax = 64; // a step that never idles is bounded too
constexpr uint32_t kQuietStepsMax = 1'000;        // follower steps to converge at the end
constexpr size_t kVerifiedPrefixesMax = 64;        // checked prefixes kept for after a crash
constexpr const char* kSource = "evm";
constexpr uint64_t kDeepReorgStepsMax = 30;       // steps a follower may take to see a reorg below its final block
constexpr uint32_t kBtcStepsPerStepMax = 16;      // the Bitcoin follower's turns per simulator step

struct Failure {
    std::string what;
};

evm::Address AddressOf(uint8_t tag)
{
    evm::Address out{};
    out.fill(tag);
    return out;
}

// The ledger and the follower: what a crash destroys and a restart makes again.
struct Node {
    std::unique_ptr<ledger::Ledger> ledger;
    std::unique_ptr<evm::EvmFollower> follower;
    bool fatal{false};
    std::string fatal_message;
};

class Run {
public:
    explicit Run(const SimOptions& options)
        : m_options(options), m_prng(options.seed ^ 0x51'4d'00'00'00'00'00'01ull),
          m_chain(ChainConfig::FromSeed(options.seed, AddressOf(0xe5), AddressOf(0x7a))),
          m_provider(m_chain, ProviderConfig::FromSeed(options.seed, options.fault_intensity), &m_clock),
          m_fs(FaultFs::Create()), m_env(m_fs->NewEnv()),
          m_dir(options.work_dir / fmt::format("bitacora-sim-{}-{}", ::getpid(), options.seed))
    {
        if (options.bitcoin) m_btc = std::make_unique<BtcSide>(options.seed, options.fault_intensity, m_clock);
        // Receipts mode needs eth_getBlockReceipts: without it the follower waits for ever, as it should.
        const bool receipts = m_provider.config().receipts && m_chain.config().receipts && m_prng.Chance(0.3);
        m_verify = receipts ? evm::VerifyMode::Receipts : evm::VerifyMode::Bloom;
    }
    ~Run()
    {
        m_btc.reset();
        m_node.follower.reset();
        m_node.ledger.reset();
        std::error_code ignored;
        fs::remove_all(m_dir, ignored);
    }

    SimResult Go();

private:
    void Start();
    void Crash();
    void Restart();
    void DriveFollower(uint32_t steps_max);
    void ChainStep();
    void Check(bool quiet);
    void CheckFinal();
    void CheckPending(bool quiet);
    // The follower's mirror of the overlay (its status) against the ledger's overlay.
    void CheckMirror(const std::vector<ledger::PendingBlock>& pending);
    void CheckMirror();
    void Converge();
    void CheckEnd();
    void CheckDeepReorgLog();
    void ResumeVerified();
    void StopBitcoin();
    void CheckBitcoin();
    [[noreturn]] void Fail(const std::string& what) { throw Failure{what}; }

    const SimOptions m_options;
    Prng m_prng;
    ManualClock m_clock;
    SimChain m_chain;
    SimProvider m_provider;
    std::shared_ptr<FaultFs> m_fs;
    std::unique_ptr<rocksdb::Env> m_env;
    fs::path m_dir;
    evm::VerifyMode m_verify{evm::VerifyMode::Bloom};
    Node m_node;
    SimResult m_result;
    uint64_t m_step{0};
    std::unique_ptr<BtcSide> m_btc; // null without the Bitcoin side, and once the daemon exited
    uint64_t m_verified_size{0};   // leaves checked against the reference so far
    uint64_t m_verified_evm{0};    // ... of which EVM events (the others are anchor events)
    // Prefixes checked before, newest last: after a crash, checking resumes after the
    // longest one the log still has (the same root at its size: the same leaves).
    struct Verified {
        uint64_t size;
        uint64_t evm;
        Hash256 root;
    };
    std::deque<Verified> m_verified_prefixes;
    bool m_disk_full{false};
    std::optional<uint64_t> m_fork_below_final; // a deep reorg's first replaced height, if it hit our log
    uint64_t m_size_at_deep_reorg{0};
    uint64_t m_deep_reorg_step{0};
    Hash256 m_root_at_deep_reorg{};
};

void Run::Start()
{
    ledger::LedgerOptions ledger_options;
    ledger_options.cache_mib = 8;
    ledger_options.table_open_threads_max = 1;
    ledger_options.env = m_env.get();
    auto opened = ledger::Ledger::Open(m_dir / "ledger", ledger_options);
    if (!opened) Fail("the ledger does not open after a restart: " + opened.error());
    m_node.ledger = std::move(opened.value());
    evm::FollowerOptions f;
    f.chain_id = m_chain.config().chain_id;
    f.escrow = m_chain.config().escrow;
    f.vault = m_chain.config().vault;
    f.start_block = kStartBlock;
    f.poll_interval_ms = 2'000;
    f.range_blocks_initial = 4;
    f.range_blocks_max = 500;
    f.fetchers = 0; // inline: one thread, deterministic
    f.verify = m_verify;
    f.reconcile = false;
    f.identity_path = m_dir / "evm-chain.json";
    f.clock = &m_clock;
    f.rpc.urls = {"http://node-a.sim:8545/", "http://node-b.sim:8545/"};
    f.rpc.transport = std::shared_ptr<evm::HttpTransport>(std::shared_ptr<void>(), &m_provider); // not owned
    f.rpc.clock = &m_clock;
    f.rpc.jitter_seed = m_options.seed | 1;
    m_node.fatal = false;
    m_node.follower = std::make_unique<evm::EvmFollower>(f, *m_node.ledger, [this](const std::string& why) {
        m_node.fatal = true;
        m_node.fatal_message = why;
    });
    if (m_btc) m_btc->Start(*m_node.ledger);
}

// The daemon exits (the EVM follower's fatal error): the Bitcoin side with it.
void Run::StopBitcoin()
{
    if (!m_btc) return;
    m_result.btc = m_btc->stats();
    m_btc->Stop();
    m_btc.reset();
}

void Run::CheckBitcoin()
{
    if (!m_btc) return;
    if (const auto broken = m_btc->Check(); !broken.empty()) Fail("bitcoin: " + broken);
}

// The process dies: what was not synced is lost, the in-memory state is gone.
void Run::Crash()
{
    ++m_result.crashes;
    m_fs->PowerCut();
    if (m_btc) m_btc->Stop();
    m_node.follower.reset();
    m_node.ledger.reset();
    if (auto restored = m_fs->Restore(); !restored) Fail("cannot restore after a power cut: " + restored.error());
    m_disk_full = false;
    Start();
    // A lost unsynced tail is allowed; check again what may have changed.
    ResumeVerified();
    if (m_fork_below_final) {
        // The lost tail may have held every block the deep reorg replaced: then the log
        // is a prefix of the new chain, and following on is right.
        const auto cursor = m_node.ledger->GetCursor(kSource);
        if (!cursor || cursor->block_number < *m_fork_below_final) {
            m_fork_below_final.reset();
            m_result.deep_reorg = false;
        } else {
            m_size_at_deep_reorg = m_node.ledger->size();
            m_root_at_deep_reorg = m_node.ledger->root();
        }
    }
}

// A clean restart (after a full disk, the ledger refuses appends until one).
void Run::Restart()
{
    if (m_btc) m_btc->Stop();
    m_node.follower.reset();
    m_node.ledger.reset();
    m_fs->ClearFaults();
    m_disk_full = false;
    Start();
}

void Run::DriveFollower(uint32_t steps_max)
{
    for (uint32_t i = 0; i < steps_max; ++i) {
        const uint64_t reorgs_before = m_node.follower->status().reorgs;
        const auto step = m_node.follower->StepOnce();
        ++m_result.follower_steps;
        // Right after a rollback the overlay must be what the follower now holds: a reader
        // must never be served the orphaned blocks, not even until the next extension.
        if (m_node.follower->status().reorgs != reorgs_before) CheckMirror();
        if (step.next == evm::EvmFollower::Next::Failed) return;
        m_clock.Advance(std::chrono::milliseconds(step.wait_ms));
        if (step.next == evm::EvmFollower::Next::Poll) return;
    }
}

void Run::ChainStep()
{
    const uint64_t roll = m_prng.Below(1000);
    const bool late = m_step * 3 > m_options.steps * 2;
    if (roll < 600) {
        m_chain.Mine(m_prng.Between(1, 4));
    } else if (roll < 720) {
        const uint64_t room = m_chain.Head() - m_chain.FinalizedNumber();
        if (room > 0 && m_chain.RandomReorg(std::min<uint64_t>(room, 12)).fork != 0) ++m_result.reorgs;
    } else if (roll < 745 && m_options.crashes) {
        Crash();
    } else if (roll < 760 && m_options.disk_full && !m_disk_full) {
        m_fs->FailWritesAfter(m_prng.Below(30));
        m_disk_full = true;
        ++m_result.disk_fulls;
    } else if (roll < 800 && m_disk_full) {
        Restart();
    } else if (roll < 804 && late && m_options.deep_reorgs && !m_result.deep_reorg) {
        const auto cursor = m_node.ledger->GetCursor(kSource);
        const uint64_t depth = m_chain.Head() - m_chain.FinalizedNumber() + m_prng.Between(1, 8);
        const ReorgReport report = m_chain.Reorg(std::min(depth, m_chain.Head()), 0, /*below_final=*/true);
        if (report.fork != 0) ++m_result.reorgs;
        if (report.fork != 0 && cursor && report.fork <= cursor->block_number) {
            m_result.deep_reorg = true;
            m_fork_below_final = report.fork;
            m_size_at_deep_reorg = m_node.ledger->size();
            m_root_at_deep_reorg = m_node.ledger->root();
            m_deep_reorg_step = m_step;
        }
    } else {
        m_clock.Advance(std::chrono::milliseconds(m_prng.Between(100, 3'000))); // time passes
    }
}

void Run::ResumeVerified()
{
    m_verified_size = 0;
    m_verified_evm = 0;
    const uint64_t size = m_node.ledger->size();
    while (!m_verified_prefixes.empty() && m_verified_prefixes.back().size > size) m_verified_prefixes.pop_back();
    if (m_verified_prefixes.empty()) return;
    const Verified& longest = m_verified_prefixes.back();
    const auto root = m_node.ledger->RootAt(longest.size);
    if (!root || *root != longest.root) {
        m_verified_prefixes.clear(); // changed below what was checked: check it all, and fail
        return;
    }
    m_verified_size = longest.size;
    m_verified_evm = longest.evm;
}

// Invariant 1 (and 4).
void Run::CheckFinal()
{
    ledger::Ledger& ledger = *m_node.ledger;
    const uint64_t size = ledger.size();
    if (m_fork_below_final) return CheckDeepReorgLog();
    const auto cursor = ledger.GetCursor(kSource);
    if (!cursor) {
        if (ledger.GetTotals(false).anchor_events != size) Fail(fmt::format("{} events in the log and no evm cursor", size));
        return;
    }
    if (cursor->block_number > m_chain.Head() || m_chain.CanonicalHash(cursor->block_number) != cursor->block_hash) {
        Fail(fmt::format("the cursor's block {} ({}) is not canonical", cursor->block_number,
                         HexEncode0x(cursor->block_hash)));
    }
    if (m_verified_size > size) m_verified_size = m_verified_evm = 0;
    const uint64_t first = m_verified_evm;
    const SimChain::LogTail expected = m_chain.CanonicalLogsFrom(kStartBlock, cursor->block_number, first);
    const uint64_t evm_events = size - ledger.GetTotals(false).anchor_events;
    if (evm_events != expected.count) {
        Fail(fmt::format("the log holds {} EVM events; the canonical chain has {} up to the cursor's block {}", evm_events,
                         expected.count, cursor->block_number));
    }
    for (uint64_t i = m_verified_size; i < size; ++i) {
        auto leaf = ledger.GetLeaf(i);
        if (!leaf) Fail(fmt::format("leaf {} cannot be read: {}", i, leaf.error()));
        auto event = ledger::DecodeEvent(*leaf);
        if (event && event->kind() == ledger::EventKind::Anchor) continue;
        if (!event || !event->origin) Fail(fmt::format("leaf {} is not an on-chain event", i));
        const ledger::EvmOrigin& origin = *event->origin;
        if (m_verified_evm >= expected.count) Fail(fmt::format("leaf {} is an EVM event beyond the canonical logs", i));
        const evm::Log& log = expected.tail[m_verified_evm++ - first];
        if (origin.block_number != log.block_number || origin.block_hash != log.block_hash ||
            origin.log_index != log.log_index || origin.tx_hash != log.tx_hash || origin.contract != log.address) {
            Fail(fmt::format("leaf {} is the log {} of block {}; the canonical chain has log {} of block {} there", i,
                             origin.log_index, origin.block_number, log.log_index, log.block_number));
        }
    }
    m_verified_size = size;
    if (size > 0 && (m_verified_prefixes.empty() || m_verified_prefixes.back().size < size)) {
        m_verified_prefixes.push_back({size, m_verified_evm, ledger.root()});
        if (m_verified_prefixes.size() > kVerifiedPrefixesMax) m_verified_prefixes.pop_front();
    }
}

// Invariant 4: after a reorg below final, what the log held stays; only anchor events
// (from before the daemon exited) may follow.
void Run::CheckDeepReorgLog()
{
    ledger::Ledger& ledger = *m_node.ledger;
    const uint64_t size = ledger.size();
    const auto root = ledger.RootAt(m_size_at_deep_reorg);
    if (size < m_size_at_deep_reorg || !root || *root != m_root_at_deep_reorg) {
        Fail(fmt::format("after a reorg below the final block (at {}), the log changed: size {} -> {}",
                         *m_fork_below_final, m_size_at_deep_reorg, size));
    }
    for (uint64_t i = m_size_at_deep_reorg; i < size; ++i) {
        auto leaf = ledger.GetLeaf(i);
        auto event = leaf ? ledger::DecodeEvent(*leaf) : Result<ledger::Event>(Error{"unreadable"});
        if (!event || event->kind() != ledger::EventKind::Anchor) {
            Fail(fmt::format("after a reorg below the final block (at {}), leaf {} was appended", *m_fork_below_final, i));
        }
    }
}

// Invariants 2 and 3.
void Run::CheckPending(bool quiet)
{
    if (m_fork_below_final) return;
    const auto cursor = m_node.ledger->GetCursor(kSource);
    const auto pending = m_node.ledger->GetPending(kSource);
    uint64_t expected_number = cursor ? cursor->block_number + 1 : kStartBlock;
    std::optional<Hash256> parent = cursor ? std::optional<Hash256>(cursor->block_hash) : std::nullopt;
    for (const auto& block : pending) {
        const SimBlock* made = m_chain.BlockByHash(block.hash);
        if (block.number != expected_number) Fail(fmt::format("pending block {} after {}", block.number, expected_number - 1));
        if (made == nullptr || made->number != block.number) {
            Fail(fmt::format("pending block {} ({}) was never made by the chain", block.number, HexEncode0x(block.hash)));
        }
        if (parent && made->parent_hash != *parent) {
            Fail(fmt::format("pending block {} does not link to the block before it", block.number));
        }
        size_t platform_logs = 0;
        for (const auto& log : made->logs) {
            platform_logs += log.address == m_chain.config().escrow || log.address == m_chain.config().vault;
        }
        if (block.events.size() != platform_logs) {
            Fail(fmt::format("pending block {} holds {} events; the chain made {}", block.number, block.events.size(),
                             platform_logs));
        }
        parent = block.hash;
        ++expected_number;
    }
    CheckMirror(pending);
    if (!quiet) return;
    const uint64_t finalized = m_chain.FinalizedNumber();
    if (finalized >= kStartBlock && (!cursor || cursor->block_number != finalized)) {
        Fail(fmt::format("idle on a quiet node, the cursor is at {} and the node's finalized block is {}",
                         cursor ? std::to_string(cursor->block_number) : "none", finalized));
    }
    if (expected_number != m_chain.Head() + 1) {
        Fail(fmt::format("idle on a quiet node, the overlay ends at {} and the head is {}", expected_number - 1,
                         m_chain.Head()));
    }
    for (const auto& block : pending) {
        if (!m_chain.IsCanonical(block.hash)) Fail(fmt::format("idle, the overlay holds orphaned block {}", block.number));
    }
}

void Run::CheckMirror(const std::vector<ledger::PendingBlock>& pending)
{
    const auto status = m_node.follower->status();
    const std::optional<uint64_t> tip = pending.empty() ? std::nullopt : std::optional<uint64_t>(pending.back().number);
    if (status.pending_tip != tip) {
        Fail(fmt::format("the follower says its pending tip is {}, the ledger's overlay ends at {}",
                         status.pending_tip ? std::to_string(*status.pending_tip) : "none",
                         tip ? std::to_string(*tip) : "none"));
    }
}

void Run::CheckMirror() { CheckMirror(m_node.ledger->GetPending(kSource)); }

void Run::Check(bool quiet)
{
    CheckFinal();
    CheckPending(quiet);
}

// The node goes quiet; the follower must settle on exactly the canonical chain, or, after
// a reorg below its final block, stop.
void Run::Converge()
{
    m_provider.SetQuiet(true);
    if (m_disk_full) Restart();
    uint32_t idle_in_row = 0;
    for (uint32_t i = 0; i < kQuietStepsMax && idle_in_row < 3; ++i) {
        const auto step = m_node.follower->StepOnce();
        ++m_result.follower_steps;
        if (step.next == evm::EvmFollower::Next::Failed) break;
        m_clock.Advance(std::chrono::milliseconds(step.wait_ms));
        idle_in_row = step.next == evm::EvmFollower::Next::Poll ? idle_in_row + 1 : 0;
    }
    if (m_fork_below_final) {
        if (!m_node.fatal) {
            Fail(fmt::format("a reorg replaced final block {} and the follower did not stop", *m_fork_below_final));
        }
        m_result.stopped_on_deep_reorg = true;
        CheckFinal();
        return;
    }
    if (m_node.fatal) Fail("the follower stopped on a node that never went below final: " + m_node.fatal_message);
    if (idle_in_row < 3) Fail(fmt::format("the follower did not settle in {} steps on a quiet node", kQuietStepsMax));
    Check(/*quiet=*/true);
}

// Invariant 5.
void Run::CheckEnd()
{
    ledger::Ledger& ledger = *m_node.ledger;
    auto before = ledger.StateHash();
    if (!before) Fail("state hash: " + before.error());
    if (auto rebuilt = ledger.RebuildProjections(); !rebuilt) Fail("rebuild: " + rebuilt.error());
    auto after = ledger.StateHash();
    if (!after || *after != *before) Fail("the projections' state hash differs from a rebuild's");
    auto report = ledger.CheckConsistency();
    if (!report) Fail("the ledger's consistency check failed: " + report.error());
}

SimResult Run::Go()
{
    std::error_code ignored;
    fs::remove_all(m_dir, ignored);
    fs::create_directories(m_dir);
    try {
        m_chain.Mine(m_prng.Between(1, 40));
        Start();
        for (m_step = 1; m_step <= m_options.steps; ++m_step) {
            ChainStep();
            if (m_btc) m_btc->ChainStep();
            DriveFollower(kFollowerStepsPerStepMax);
            if (m_node.fatal) StopBitcoin();
            if (m_btc) m_btc->Drive(kBtcStepsPerStepMax);
            Check(/*quiet=*/false);
            CheckBitcoin();
            if (m_node.fatal && !m_fork_below_final) Fail("the follower stopped: " + m_node.fatal_message);
            if (m_fork_below_final && !m_node.fatal && m_step > m_deep_reorg_step + kDeepReorgStepsMax) {
                Fail(fmt::format("a reorg replaced final block {} {} steps ago and the follower goes on",
                                 *m_fork_below_final, kDeepReorgStepsMax));
            }
        }
        m_step = m_options.steps + 1; // the quiet phase
        Converge();
        if (!m_fork_below_final) {
            m_provider.SetQuiet(false);
            m_chain.Mine(m_chain.config().finalized_lag + 40); // everything so far becomes final
            m_provider.SetQuiet(true);
            Converge();
        }
        if (m_node.fatal) StopBitcoin();
        if (m_btc) {
            if (m_disk_full) Restart();
            if (const auto broken = m_btc->Settle(); !broken.empty()) Fail("bitcoin, at the quiet end: " + broken);
            Check(/*quiet=*/true);
        }
        CheckEnd();
    } catch (const Failure& failure) {
        m_result.ok = false;
        m_result.failed_step = m_step;
        m_result.failure = failure.what;
    }
    m_result.steps = m_options.steps;
    m_result.blocks = m_chain.blocks_generated();
    m_result.head = m_chain.Head();
    m_result.provider_faults = m_provider.stats().faults();
    if (m_node.ledger) {
        m_result.final_events = m_node.ledger->size();
        if (auto cursor = m_node.ledger->GetCursor(kSource)) m_result.final_block = cursor->block_number;
    }
    m_result.simulated_ms = static_cast<uint64_t>(m_clock.elapsed().count());
    if (m_btc) m_result.btc = m_btc->stats();
    return m_result;
}

} // namespace

SimResult RunSimulation(const SimOptions& options)
{
    log::GetLogger().SetPrintToConsole(options.verbose);
    SetMutation(options.mutation);
    Run run(options);
    SimResult result = run.Go();
    SetMutation(Mutation::None);
    return result;
}

std::string_view MutationName(Mutation mutation)
{
    switch (mutation) {
    case Mutation::None: return "none";
    case Mutation::SkipParentCheck: return "skip-parent-check";
    case Mutation::AppendBeforeFinality: return "append-before-finality";
    case Mutation::KeepOverlayOnReorg: return "keep-overlay-on-reorg";
    case Mutation::ForgetCursorCheck: return "forget-cursor-check";
    case Mutation::AnchorKeepsProof: return "anchor-keeps-proof";
    case Mutation::AnchorFinalEarly: return "anchor-final-early";
    case Mutation::AnchorResignsAfterCrash: return "anchor-resigns-after-crash";
    }
    return "?";
}

std::optional<Mutation> ParseMutation(std::string_view name)
{
    for (Mutation m : {Mutation::None, Mutation::SkipParentCheck, Mutation::AppendBeforeFinality,
                       Mutation::KeepOverlayOnReorg, Mutation::ForgetCursorCheck, Mutation::AnchorKeepsProof,
                       Mutation::AnchorFinalEarly, Mutation::AnchorResignsAfterCrash}) {
        if (MutationName(m) == name) return m;
    }
    return std::nullopt;
}

std::string ReplayLine(const SimOptions& o)
{
    std::string line = fmt::format("bitacora-sim --seed {} --steps {}", o.seed, o.steps);
    if (o.fault_intensity != 1.0) line += fmt::format(" --faults {}", o.fault_intensity);
    if (!o.crashes) line += " --no-crashes";
    if (!o.disk_full) line += " --no-disk-full";
    if (!o.deep_reorgs) line += " --no-deep-reorgs";
    if (!o.bitcoin) line += " --no-bitcoin";
    if (o.mutation != Mutation::None) line += fmt::format(" --mutation {}", MutationName(o.mutation));
    return line;
}

SimOptions Shrink(const SimOptions& failing, uint32_t runs_max)
{
    SimOptions best = failing;
    uint32_t runs = 0;
    auto fails = [&](const SimOptions& candidate) {
        ++runs;
        return !RunSimulation(candidate).ok;
    };
    // Fewer kinds of trouble, one at a time, kept off where the run still fails.
    for (int knob = 0; knob < 5 && runs < runs_max; ++knob) {
        SimOptions candidate = best;
        if (knob == 0) candidate.fault_intensity = 0;
        if (knob == 1) candidate.crashes = false;
        if (knob == 2) candidate.disk_full = false;
        if (knob == 3) candidate.deep_reorgs = false;
        if (knob == 4) candidate.bitcoin = false;
        if (candidate.fault_intensity != best.fault_intensity || candidate.crashes != best.crashes ||
            candidate.disk_full != best.disk_full || candidate.deep_reorgs != best.deep_reorgs ||
            candidate.bitcoin != best.bitcoin) {
            if (fails(candidate)) best = candidate;
        }
    }
    // Then the fewest steps that still fail (a run's first steps do not depend on its length).
    uint64_t low = 0, high = best.steps;
    while (low + 1 < high && runs < runs_max) {
        SimOptions candidate = best;
        candidate.steps = (low + high) / 2;
        if (fails(candidate)) high = candidate.steps;
        else low = candidate.steps;
    }
    best.steps = high;
    return best;
}

} // namespace bitacora::sim
