#include "indexer/btc/follower.h"

#include "common/clock.h"
#include "common/logging.h"

#include <fmt/format.h>

#include <algorithm>

namespace bitacora::btc {
namespace {

using Clock = std::chrono::steady_clock;

std::optional<Hash256> HashResult(const nlohmann::json& value)
{
    return value.is_string() ? HashFromDisplay(value.get<std::string>()) : std::nullopt;
}

} // namespace

BtcFollower::BtcFollower(ledger::Ledger& ledger, BitcoindRpc& rpc, Anchorer* anchorer, BtcFollowerOptions options)
    : m_ledger(ledger), m_rpc(rpc), m_anchorer(anchorer), m_options(std::move(options))
{
}

BtcFollower::~BtcFollower() { Stop(); }

void BtcFollower::Start()
{
    if (m_thread.joinable()) return;
    m_stop = false;
    m_thread = std::thread([this] { Run(); });
}

void BtcFollower::Stop()
{
    m_stop = true;
    Wake();
    if (m_thread.joinable()) m_thread.join();
    // m_zmq is set once and never reset, so it is stopped outside the lock, which its
    // thread (OnHint) may be waiting for.
    ZmqSubscriber* zmq = nullptr;
    {
        LOCK(m_status_mutex);
        zmq = m_zmq.get();
    }
    if (zmq) zmq->Stop();
}

void BtcFollower::Wake()
{
    {
        LOCK(m_wake_mutex);
        m_woken = true;
    }
    m_wake.notify_all();
}

BtcFollowerStatus BtcFollower::status() const
{
    LOCK(m_status_mutex);
    BtcFollowerStatus s = m_status;
    if (m_zmq) s.zmq = m_zmq->stats();
    return s;
}

std::optional<uint64_t> BtcFollower::tip_height() const
{
    LOCK(m_status_mutex);
    return m_status.tip_height;
}

void BtcFollower::OnHint(const ZmqHint& hint)
{
    if (hint.type == ZmqHint::Type::Resync) {
        LOCK(m_status_mutex);
        ++m_status.resyncs;
    }
    {
        LOCK(m_wake_mutex);
        if (hint.type == ZmqHint::Type::BlockConnected && m_announced.size() < kAnnouncedMax) {
            m_announced.emplace(hint.block_hash, hint.received);
        }
        m_woken = true;
    }
    m_wake.notify_all();
}

void BtcFollower::NoteError(const std::string& what)
{
    LogWarning("Bitcoin: {}", what);
    LOCK(m_status_mutex);
    ++m_status.rpc_errors;
    m_status.last_error = what;
}

void BtcFollower::NoteNodeBest(const Hash256& best)
{
    LOCK(m_status_mutex);
    if (m_status.node_best_changed_unix_s != 0 && m_status.node_best_hash == best) return;
    m_status.node_best_hash = best;
    m_status.node_best_changed_unix_s = SystemClock().UnixSeconds();
}

bool BtcFollower::Initialize()
{
    // The node must be on the chain we were started for.
    auto info = m_rpc.Call("getblockchaininfo");
    if (!info) {
        NoteError("getblockchaininfo: " + info.error().ToString());
        LOCK(m_status_mutex);
        m_status.state = "node_down";
        return false;
    }
    if (const auto cursor = m_ledger.GetCursor(kBtcSource)) {
        m_window.Reset({cursor->block_number, cursor->block_hash});
        LogInfo("Bitcoin: resuming after block {} {}", cursor->block_number, HashToDisplay(cursor->block_hash));
    } else {
        const uint64_t count = AnswerMember<uint64_t>(*info, "blocks").value_or(0);
        const auto start_base = StartBase(m_options.start_height, count);
        if (!start_base) {
            NoteError(fmt::format("-btcstartheight={} is above the node's chain ({} blocks); waiting",
                                  m_options.start_height, count));
            return false;
        }
        const uint64_t base = *start_base;
        auto hash = m_rpc.Call("getblockhash", {base});
        const auto parsed = hash ? HashResult(*hash) : std::nullopt;
        if (!parsed) {
            NoteError("getblockhash: " + (hash ? std::string("not a hash") : hash.error().ToString()));
            return false;
        }
        const ledger::Cursor start_cursor{kBtcSource, base, *parsed};
        if (auto saved = m_ledger.Append({}, {start_cursor}); !saved) {
            NoteError("cannot record the start block: " + saved.error());
            return false;
        }
        m_window.Reset({base, *parsed});
        LogInfo("Bitcoin: following from block {} (after {} {})", base + 1, base, HashToDisplay(*parsed));
    }
    if (m_options.use_zmq) {
        auto subscriptions = m_options.zmq;
        if (subscriptions.empty()) {
            auto offered = m_rpc.Call("getzmqnotifications");
            std::vector<std::pair<std::string, std::string>> pairs;
            if (offered && offered->is_array()) {
                for (const auto& n : *offered) {
                    const auto type = AnswerMember<std::string>(n, "type");
                    const auto address = AnswerMember<std::string>(n, "address");
                    if (type && address) pairs.emplace_back(*type, *address);
                }
            }
            subscriptions = ChooseZmqSubscriptions(pairs);
        }
        if (subscriptions.empty()) {
            LogInfo("Bitcoin: bitcoind publishes neither sequence nor hashblock over ZMQ; polling every {} ms",
                    m_options.poll_interval_ms);
        } else {
            auto zmq = std::make_unique<ZmqSubscriber>(subscriptions, [this](const ZmqHint& hint) { OnHint(hint); });
            zmq->Start();
            LOCK(m_status_mutex);
            m_zmq = std::move(zmq);
            m_status.zmq_topic = subscriptions.front().topic;
        }
    }
    m_initialized = true;
    LOCK(m_status_mutex);
    m_status.tip_height = m_window.tip().height;
    m_status.tip_hash = m_window.tip().hash;
    return true;
}

bool BtcFollower::Disconnect(const ChainTip& tip)
{
    // The parent comes from our window, or from the node: bitcoind keeps the headers of
    // stale blocks, so the walk works after a restart too.
    std::optional<ChainTip> parent = m_window.Parent();
    if (!parent) {
        auto header = m_rpc.Call("getblockheader", {HashToDisplay(tip.hash), true});
        const auto prev = header && header->contains("previousblockhash") ? HashResult((*header)["previousblockhash"])
                                                                          : std::nullopt;
        if (!prev || tip.height == 0) {
            NoteError(fmt::format("cannot find the parent of block {} {}: {}", tip.height, HashToDisplay(tip.hash),
                                  header ? "no previousblockhash" : header.error().ToString()));
            return false;
        }
        parent = ChainTip{tip.height - 1, *prev};
    }
    if (m_anchorer) m_anchorer->OnBlockDisconnected(tip.height, tip.hash);
    if (auto saved = m_ledger.Append({}, {ledger::Cursor{kBtcSource, parent->height, parent->hash}}); !saved) {
        NoteError("cannot move the btc cursor back: " + saved.error());
        return false;
    }
    m_window.Disconnect(*parent);
    LogInfo("Bitcoin: block {} {} disconnected (reorg)", tip.height, HashToDisplay(tip.hash));
    LOCK(m_status_mutex);
    ++m_status.blocks_disconnected;
    return true;
}

bool BtcFollower::SyncOnce()
{
    if (!m_initialized && !Initialize()) return false;
    auto best = m_rpc.Call("getbestblockhash");
    const auto best_hash = best ? HashResult(*best) : std::nullopt;
    if (!best_hash) {
        NoteError("getbestblockhash: " + (best ? std::string("not a hash") : best.error().ToString()));
        LOCK(m_status_mutex);
        if (!best && best.error().node_unreachable()) m_status.state = "node_down";
        return false;
    }
    NoteNodeBest(*best_hash);
    if (*best_hash == m_window.tip().hash) {
        LOCK(m_status_mutex);
        m_status.state = "synced";
        m_status.node_height = m_window.tip().height;
        return true;
    }
    auto header = m_rpc.Call("getblockheader", {HashToDisplay(*best_hash), true});
    const auto header_height = header ? AnswerMember<uint64_t>(*header, "height") : std::nullopt;
    if (!header_height) {
        NoteError("getblockheader of the best block: " + (header ? std::string("no height") : header.error().ToString()));
        return false;
    }
    const uint64_t best_height = *header_height;
    {
        LOCK(m_status_mutex);
        m_status.node_height = best_height;
        m_status.state = "syncing";
    }
    if (!WalkBack(best_height)) return false;
    for (uint32_t n = 0; n < m_options.blocks_per_step_max && !m_stop && m_window.tip().height < best_height; ++n) {
        if (!ConnectNext()) return false;
    }
    LOCK(m_status_mutex);
    m_status.tip_height = m_window.tip().height;
    m_status.tip_hash = m_window.tip().hash;
    if (m_window.tip().height >= best_height) m_status.state = "synced";
    return true;
}

// Disconnects our tips while the node's best chain does not hold them.
bool BtcFollower::WalkBack(uint64_t best_height)
{
    bool reorg = false;
    for (uint32_t steps = 0; steps < m_options.window_blocks_max; ++steps) {
        const ChainTip tip = m_window.tip();
        auto walk = m_window.BeforeAsking(best_height);
        if (walk == ChainWindow::Walk::Ask) {
            auto at = m_rpc.Call("getblockhash", {tip.height});
            if (!at && !(at.error().kind == BtcError::Kind::Rpc && at.error().code == kRpcInvalidParameter)) {
                NoteError("getblockhash: " + at.error().ToString());
                return false;
            }
            walk = m_window.AfterAsking(at ? HashResult(*at) : std::nullopt);
        }
        if (walk == ChainWindow::Walk::OnBest) break;
        reorg = true;
        if (!Disconnect(tip)) return false;
    }
    if (reorg) {
        LOCK(m_status_mutex);
        ++m_status.reorgs;
    }
    return true;
}

// The block after our tip, read and parsed (or only its header, when it was pruned):
// nullopt with the error noted when it cannot be.
std::optional<BtcFollower::FetchedBlock> BtcFollower::FetchBlock(uint64_t height, const Hash256& hash)
{
    auto raw = m_rpc.Call("getblock", {HashToDisplay(hash), 0});
    if (raw && raw->is_string()) {
        const auto bytes = HexDecode(raw->get<std::string>());
        auto parsed = bytes ? ParseBlock(*bytes) : Result<Block>(Error{"not hex"});
        if (!parsed) {
            NoteError(fmt::format("block {} {} from the node does not parse: {}", height, HashToDisplay(hash), parsed.error()));
            return std::nullopt;
        }
        if (parsed->header.hash != hash) {
            NoteError(fmt::format("block {}: the node's block hashes to {}, not {}", height,
                                  HashToDisplay(parsed->header.hash), HashToDisplay(hash)));
            return std::nullopt;
        }
        const Hash256 prev = parsed->header.prev_hash;
        return FetchedBlock{prev, std::move(*parsed)};
    }
    if (raw || !raw.error().pruned()) {
        NoteError(fmt::format("getblock {}: {}", height, raw ? "not a hex string" : raw.error().ToString()));
        return std::nullopt;
    }
    // Gone before we read it: follow its header, and let the anchorer know.
    auto header_hex = m_rpc.Call("getblockheader", {HashToDisplay(hash), false});
    const auto bytes = header_hex && header_hex->is_string() ? HexDecode(header_hex->get<std::string>()) : std::nullopt;
    const auto parsed = bytes ? ParseHeader(*bytes) : Result<BlockHeader>(Error{"no header"});
    if (!parsed || parsed->hash != hash) {
        NoteError(fmt::format("header of pruned block {} unavailable", height));
        return std::nullopt;
    }
    LogWarning("Bitcoin: block {} {} was pruned before bitacorad read it; following its header", height,
               HashToDisplay(hash));
    LOCK(m_status_mutex);
    ++m_status.blocks_pruned_unread;
    return FetchedBlock{parsed->prev_hash, std::nullopt};
}

// Connects the block after our tip; false: not now (an error, or the chain moved).
bool BtcFollower::ConnectNext()
{
    const ChainTip tip = m_window.tip();
    const uint64_t height = tip.height + 1;
    auto at = m_rpc.Call("getblockhash", {height});
    const auto hash = at ? HashResult(*at) : std::nullopt;
    if (!hash) {
        // The chain shrank under us (a reorg in progress): the next pass sorts it out.
        if (!at) NoteError("getblockhash: " + at.error().ToString());
        return false;
    }
    auto fetched = FetchBlock(height, *hash);
    if (!fetched) return false;
    if (!m_window.Extends(fetched->prev)) {
        // A reorg happened between our calls; walk back on the next pass.
        LogDebug(log::Category::Btc, "Block {} does not extend our tip {}; resyncing", height, HashToDisplay(tip.hash));
        return false;
    }
    const Block* block = fetched->block ? &*fetched->block : nullptr;
    const ledger::Cursor cursor{kBtcSource, height, *hash};
    const bool written = m_anchorer && m_anchorer->OnBlockConnected(height, *hash, block, cursor);
    if (!written) {
        if (auto saved = m_ledger.Append({}, {cursor}); !saved) {
            NoteError("cannot move the btc cursor: " + saved.error());
            return false;
        }
    }
    m_window.Connect({height, *hash});
    NoteConnected(height, *hash, TakeAnnounced(*hash));
    LogDebug(log::Category::Btc, "Block {} {} processed ({} transactions)", height, HashToDisplay(*hash),
             block ? block->txs.size() : 0);
    return true;
}

std::optional<Clock::time_point> BtcFollower::TakeAnnounced(const Hash256& hash)
{
    LOCK(m_wake_mutex);
    const auto it = m_announced.find(hash);
    if (it == m_announced.end()) return std::nullopt;
    const Clock::time_point announced = it->second;
    m_announced.erase(it);
    return announced;
}

void BtcFollower::NoteConnected(uint64_t height, const Hash256& hash, std::optional<Clock::time_point> announced)
{
    LOCK(m_status_mutex);
    ++m_status.blocks_processed;
    m_status.tip_height = height;
    m_status.tip_hash = hash;
    if (!announced) return;
    if (m_status.hint_latency_ms.size() >= BtcFollowerStatus::kLatencySamplesMax) {
        m_status.hint_latency_ms.erase(m_status.hint_latency_ms.begin());
    }
    const double latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - *announced).count();
    m_status.hint_latency_ms.push_back(latency_ms);
    ++m_status.hint_latency_count;
    m_status.hint_latency_seconds_sum += latency_ms / 1e3;
}

void BtcFollower::Run()
{
    try {
        Loop();
    } catch (const ledger::LedgerReadError& error) {
        // The ledger is marked degraded and keeps serving what it can read; following and
        // anchoring from records we cannot read could write wrong data, so both stop here.
        LogError("Bitcoin follower stopped: the ledger could not be read: {}", error.what());
        LOCK(m_status_mutex);
        m_status.state = "failed";
        m_status.last_error = std::string("ledger read failed: ") + error.what();
    }
}

BtcFollower::Step BtcFollower::StepOnce()
{
    Step step;
    step.ok = SyncOnce();
    bool zmq_on = false;
    if (step.ok) {
        m_backoff_ms = 0;
        const auto tip = tip_height();
        {
            LOCK(m_status_mutex);
            step.more = m_status.node_height && m_status.tip_height && *m_status.tip_height < *m_status.node_height;
            zmq_on = m_zmq != nullptr;
        }
        if (m_anchorer && tip) {
            m_anchorer->Step(*tip, !step.more && (!m_options.others_synced || m_options.others_synced()));
        }
    } else {
        m_backoff_ms = std::min(m_options.error_backoff_ms_max, std::max(250u, m_backoff_ms * 2));
    }
    const uint32_t wait_ms =
        !step.ok ? m_backoff_ms : (zmq_on ? m_options.zmq_poll_interval_ms : m_options.poll_interval_ms);
    // The anchorer also wakes on its own retry timer.
    step.wait_ms = step.more ? 0 : std::min<uint32_t>(wait_ms, 1'000u * (m_anchorer ? 5u : 60u));
    return step;
}

void BtcFollower::Loop()
{
    while (!m_stop) {
        const Step step = StepOnce();
        if (!step.more) WaitForWake(std::chrono::milliseconds(step.wait_ms));
    }
}

void BtcFollower::WaitForWake(std::chrono::milliseconds wait)
{
    const auto deadline = Clock::now() + wait;
    LOCK(m_wake_mutex);
    while (!m_woken && !m_stop) {
        if (m_wake.wait_until(m_wake_mutex, deadline) == std::cv_status::timeout) break;
    }
    m_woken = false;
}

} // namespace bitacora::btc
