#include "indexer/btc/anchorer.h"

#include "indexer/btc/anchor_core.h"

#include "common/logging.h"
#include "common/mutation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace bitacora::btc {
namespace {

using ledger::AnchorRecord;
using ledger::AnchorState;

constexpr size_t kRecentAnchorsMax = 16; // how far back a reorg or a status looks


anchor::Policy PolicyOf(const AnchorerOptions& o)
{
    return anchor::Policy{.enabled = o.enabled,
                          .interval_s = o.interval_s,
                          .fee_rate_sat_vb = o.fee_rate_sat_vb,
                          .conf_target = o.conf_target,
                          .bump_after_blocks = o.bump_after_blocks,
                          .bumps_max = o.bumps_max,
                          .final_confirmations = o.final_confirmations};
}

nlohmann::json FeeOptions(const anchor::FeeChoice& fee, nlohmann::json options)
{
    if (fee.fee_rate_sat_vb) options["fee_rate"] = *fee.fee_rate_sat_vb;
    if (fee.conf_target) options["conf_target"] = *fee.conf_target;
    return options;
}

} // namespace

uint64_t Anchorer::UnixNowSeconds() const
{
    return m_options.clock != nullptr ? m_options.clock->UnixSeconds() : SystemClock().UnixSeconds();
}

Anchorer::Anchorer(ledger::Ledger& ledger, BitcoindRpc& rpc, AnchorerOptions options)
    : m_ledger(ledger), m_rpc(rpc), m_options(options), m_policy(PolicyOf(options)), m_started_s(UnixNowSeconds())
{
    RefreshStatus();
}

uint64_t Anchorer::RequestNow() { return ++m_requested_ticket; }

bool Anchorer::WaitHandled(uint64_t ticket, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    LOCK(m_status_mutex);
    while (m_handled_ticket.load() < ticket) {
        if (m_handled_cv.wait_until(m_status_mutex, deadline) == std::cv_status::timeout) break;
    }
    return m_handled_ticket.load() >= ticket;
}

AnchorerStatus Anchorer::status() const
{
    LOCK(m_status_mutex);
    return m_status;
}

std::string Anchorer::last_request_outcome() const
{
    LOCK(m_status_mutex);
    return m_request_outcome;
}

ledger::Event Anchorer::LifecycleEvent(const AnchorRecord& record, uint8_t state) const
{
    ledger::AnchorEvent e;
    e.state = state;
    e.anchored_size = record.tree_size;
    e.anchored_root = record.root;
    if (record.proof) {
        e.txid = record.proof->txid;
        e.block_height = record.proof->block_height;
        e.block_hash = record.proof->block_hash;
    } else if (!record.txids.empty()) {
        e.txid = record.txids.back();
    }
    return ledger::Event{std::nullopt, e};
}

bool Anchorer::Save(const AnchorRecord& record, std::optional<uint8_t> event_state, const std::vector<ledger::Cursor>& cursors)
{
    AnchorRecord stamped = record;
    stamped.updated_time = UnixNowSeconds();
    std::vector<ledger::Event> events;
    if (event_state) events.push_back(LifecycleEvent(stamped, *event_state));
    const auto saved = m_ledger.PutAnchor(stamped, events, cursors);
    if (!saved) {
        LogError("Anchor {}: cannot persist state {}: {}", record.id, ledger::AnchorStateName(record.state), saved.error());
        LOCK(m_status_mutex);
        m_status.last_error = saved.error();
        return false;
    }
    LogDebug(log::Category::Anchor, "Anchor {} is {} (tree size {})", record.id, ledger::AnchorStateName(record.state),
             record.tree_size);
    RefreshStatus();
    return true;
}

void Anchorer::NoteError(const BtcError& error, const std::string& during)
{
    m_retry_at_s = UnixNowSeconds() + m_options.retry_s;
    std::string hint;
    if (error.insufficient_funds()) hint = " (fund the wallet: the ledger keeps growing and the next try anchors all of it)";
    if (error.wallet_missing()) hint = " (load the wallet, or set -btcwallet)";
    const std::string text = fmt::format("{}: {}{}", during, error.ToString(), hint);
    LogWarning("Anchoring: {}; retrying in {} s", text, m_options.retry_s);
    LOCK(m_status_mutex);
    ++m_status.errors[std::string(error.Label())];
    m_status.last_error = text;
}

void Anchorer::RefreshStatus()
{
    std::optional<AnchorRecord> active, latest_final;
    if (auto latest = m_ledger.LatestAnchor()) {
        const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
        for (auto& record : m_ledger.ListAnchors(from, kRecentAnchorsMax + 1)) {
            if (record.active()) active = record;
            if (record.state == AnchorState::Final) latest_final = record;
        }
    }
    LOCK(m_status_mutex);
    m_status.active = std::move(active);
    m_status.latest_final = std::move(latest_final);
}

std::optional<AnchorRecord> Anchorer::LastGood(const std::optional<AnchorRecord>& latest) const
{
    std::optional<AnchorRecord> last_good;
    if (!latest) return last_good;
    const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
    for (auto& record : m_ledger.ListAnchors(from, kRecentAnchorsMax + 1)) {
        if (record.state != AnchorState::Abandoned) last_good = record;
    }
    return last_good;
}

void Anchorer::Step(uint64_t tip_height, bool sources_synced)
{
    const uint64_t ticket = m_requested_ticket.load();
    anchor::StepFacts facts;
    facts.requested = ticket > m_handled_ticket.load();
    facts.latest = m_ledger.LatestAnchor();
    facts.tip_height = tip_height;
    facts.now_s = UnixNowSeconds();
    facts.retry_at_s = m_retry_at_s;
    facts.started_s = m_started_s;
    facts.sources_synced = sources_synced;
    if (!facts.latest || !facts.latest->active()) {
        facts.last_good = LastGood(facts.latest);
        facts.log_size = m_ledger.size();
        facts.log_events = facts.log_size - m_ledger.GetTotals(false).anchor_events;
    }
    auto action = anchor::DecideStep(m_policy, facts);
    std::optional<std::string> outcome = Perform(action, tip_height);
    if (!facts.requested) return;
    if (!outcome) outcome = action.outcome;
    {
        LOCK(m_status_mutex);
        m_request_outcome = std::move(*outcome);
        m_handled_ticket = ticket;
    }
    m_handled_cv.notify_all();
}

// Carries out a step's action; returns what a waiting request is told (nullopt: the
// action's own outcome).
std::optional<std::string> Anchorer::Perform(anchor::StepAction& action, uint64_t tip_height)
{
    using Kind = anchor::StepAction::Kind;
    switch (action.kind) {
    case Kind::Wait:
    case Kind::NothingToAnchor: return std::nullopt;
    case Kind::WaitFollowers:
        if (!m_first_wait_logged) {
            LogInfo("The first anchor waits until the followers have caught up (at most {} s, -anchorinterval)",
                    m_options.interval_s);
            m_first_wait_logged = true;
        }
        return std::nullopt;
    case Kind::MarkFinal: MarkFinal(action.record, tip_height); return fmt::format("anchor {} is final", action.record.id);
    case Kind::Continue: return Continue(std::move(action.record), tip_height);
    case Kind::Plan: return PlanAndSend(std::move(action.record), tip_height);
    }
    return std::nullopt;
}

void Anchorer::MarkFinal(const AnchorRecord& record, uint64_t tip_height)
{
    if (Save(record, 3)) {
        LOCK(m_status_mutex);
        ++m_status.anchors_final;
    }
    LogInfo("Anchor {} final: tree size {} root {} in block {} ({} confirmations)", record.id, record.tree_size,
            HexEncode0x(record.root), record.proof->block_height, tip_height + 1 - record.proof->block_height);
}

std::string Anchorer::LastError() const
{
    LOCK(m_status_mutex);
    return m_status.last_error;
}

// Signs, sends and watches the active anchor, each as far as it gets this step.
std::string Anchorer::Continue(AnchorRecord latest, uint64_t tip_height)
{
    if (m_first_step && latest.state == AnchorState::Broadcast && sim::Mutated(sim::Mutation::AnchorResignsAfterCrash)) {
        latest.state = AnchorState::Planned; // the broken variant: a second transaction for one anchor
    }
    m_first_step = false;
    if (latest.state == AnchorState::Planned) SignPlanned(latest);
    auto current = m_ledger.GetAnchor(latest.id);
    if (current && current->state == AnchorState::Signed) Broadcast(*current, tip_height);
    current = m_ledger.GetAnchor(latest.id);
    if (current && current->state == AnchorState::Broadcast) WatchBroadcast(*current, tip_height);
    current = m_ledger.GetAnchor(latest.id);
    if (!current) return fmt::format("anchor {} cannot be read back", latest.id);
    return current->state == AnchorState::Planned
               ? fmt::format("anchor {} could not be sent: {}", current->id, LastError())
               : fmt::format("anchor {} is {}", current->id, ledger::AnchorStateName(current->state));
}

std::string Anchorer::PlanAndSend(AnchorRecord record, uint64_t tip_height)
{
    auto root = m_ledger.RootAt(record.tree_size);
    if (!root) return fmt::format("cannot read the log's root: {}", root.error());
    record.root = *root;
    if (!Save(record, std::nullopt)) return "cannot persist the anchor's plan";
    {
        LOCK(m_status_mutex);
        ++m_status.anchors_planned;
    }
    LogInfo("Anchor {} planned: tree size {} root {}", record.id, record.tree_size, HexEncode0x(record.root));
    SignPlanned(record);
    if (auto signed_record = m_ledger.GetAnchor(record.id); signed_record && signed_record->state == AnchorState::Signed) {
        Broadcast(*signed_record, tip_height);
    }
    const auto outcome = m_ledger.GetAnchor(record.id);
    return outcome && outcome->state == AnchorState::Broadcast
               ? std::string()
               : fmt::format("anchor {} planned but not sent yet: {}", record.id, LastError());
}

void Anchorer::SignPlanned(AnchorRecord record)
{
    const auto payload = ledger::AnchorPayload(record.tree_size, record.root);
    auto raw = m_rpc.Call("createrawtransaction",
                          {nlohmann::json::array(), nlohmann::json::array({{{"data", HexEncode(payload)}}})});
    if (!raw || !raw->is_string()) {
        NoteError(raw ? BtcError{BtcError::Kind::Malformed, 0, 0, "not a hex string"} : raw.error(), "createrawtransaction");
        return;
    }
    const auto options = FeeOptions(anchor::FundingFee(m_policy), {{"replaceable", true}});
    auto funded = m_rpc.WalletCall("fundrawtransaction", {*raw, options});
    const auto funded_hex = funded ? AnswerMember<std::string>(*funded, "hex") : std::nullopt;
    if (!funded_hex) {
        NoteError(funded ? BtcError{BtcError::Kind::Malformed, 0, 0, "no hex"} : funded.error(), "fundrawtransaction");
        return;
    }
    auto signed_tx = m_rpc.WalletCall("signrawtransactionwithwallet", {*funded_hex});
    const auto signed_hex = signed_tx ? AnswerMember<std::string>(*signed_tx, "hex") : std::nullopt;
    if (!signed_hex) {
        NoteError(signed_tx ? BtcError{BtcError::Kind::Malformed, 0, 0, "no hex"} : signed_tx.error(),
                  "signrawtransactionwithwallet");
        return;
    }
    const bool complete = AnswerMember<bool>(*signed_tx, "complete").value_or(false);
    auto checked = anchor::CheckSigned(*signed_hex, complete, payload);
    if (!checked) {
        NoteError(BtcError{BtcError::Kind::Malformed, 0, 0, checked.error()}, "signrawtransactionwithwallet");
        return;
    }
    record.signed_tx = std::move(checked->tx);
    record.txids = {checked->txid};
    record.state = AnchorState::Signed;
    record.note.clear();
    Save(record, std::nullopt);
}

void Anchorer::Broadcast(AnchorRecord record, uint64_t tip_height)
{
    auto sent = m_rpc.Call("sendrawtransaction", {HexEncode(record.signed_tx)});
    switch (anchor::ClassifySend(sent ? nullptr : &sent.error())) {
    case anchor::SendOutcome::Accepted: break;
    case anchor::SendOutcome::AlreadyInChain:
        LogInfo("Anchor {}: transaction {} is already in a block", record.id, HashToDisplay(record.txids.back()));
        break;
    case anchor::SendOutcome::Rejected:
        Abandon(record, "the node rejected the signed transaction: " + sent.error().ToString());
        return;
    case anchor::SendOutcome::Failed: NoteError(sent.error(), fmt::format("anchor {} sendrawtransaction", record.id)); return;
    }
    record.state = AnchorState::Broadcast;
    record.broadcast_height = tip_height;
    record.note.clear();
    if (Save(record, 1)) {
        {
            LOCK(m_status_mutex);
            ++m_status.anchors_broadcast;
            m_status.last_error.clear();
        }
        LogInfo("Anchor {} broadcast: txid {} (tree size {})", record.id, HashToDisplay(record.txids.back()),
                record.tree_size);
    }
}

// A transaction of ours, as the wallet has it: nullopt (and the error noted) when it
// could not be asked or answered without its hex.
std::optional<anchor::SignedAnchor> Anchorer::WalletTransaction(const std::string& txid, const std::string& during)
{
    auto tx = m_rpc.WalletCall("gettransaction", {txid});
    const auto id = HashFromDisplay(txid);
    const auto hex = tx ? AnswerMember<std::string>(*tx, "hex") : std::nullopt;
    const auto bytes = hex ? HexDecode(*hex) : std::nullopt;
    if (!id || !bytes) {
        NoteError(tx ? BtcError{BtcError::Kind::Malformed, 0, 0, "no hex"} : tx.error(), during);
        return std::nullopt;
    }
    return anchor::SignedAnchor{*bytes, *id};
}

void Anchorer::WatchBroadcast(AnchorRecord record, uint64_t tip_height)
{
    // The wallet and the mempool are asked once per new best block (and after a restart).
    if (tip_height == m_last_checked_tip) return;
    const std::string txid = HashToDisplay(record.txids.back());
    auto tx = m_rpc.WalletCall("gettransaction", {txid});
    if (!tx && !tx.error().not_found()) {
        NoteError(tx.error(), fmt::format("anchor {} gettransaction", record.id));
        return;
    }
    m_last_checked_tip = tip_height;
    anchor::WalletTxFacts facts;
    facts.known = static_cast<bool>(tx);
    if (tx) {
        if (const auto replaced = AnswerMember<std::string>(*tx, "replaced_by_txid")) facts.replaced_by = HashFromDisplay(*replaced);
        facts.confirmations = AnswerMember<int64_t>(*tx, "confirmations").value_or(0);
    }
    switch (anchor::AfterWalletTx(record, facts)) {
    case anchor::WatchAction::Wait: return;
    case anchor::WatchAction::Resend: Resend(record); return; // unknown to this wallet: make sure the node has it
    case anchor::WatchAction::Abandon:
        Abandon(record, fmt::format("transaction {} conflicts with a confirmed transaction", txid));
        return;
    case anchor::WatchAction::AdoptReplacement: AdoptReplacement(std::move(record), *facts.replaced_by); return;
    case anchor::WatchAction::CheckMempool: break;
    }
    auto entry = m_rpc.Call("getmempoolentry", {txid});
    if (!entry && !entry.error().not_found()) {
        NoteError(entry.error(), "getmempoolentry");
        return;
    }
    switch (anchor::AfterMempool(m_policy, record, tip_height, static_cast<bool>(entry))) {
    case anchor::MempoolAction::Wait: return;
    case anchor::MempoolAction::Resend:
        LogWarning("Anchor {}: transaction {} left the mempool; sending it again", record.id, txid);
        Resend(record);
        return;
    case anchor::MempoolAction::Bump: BumpFee(std::move(record), tip_height); return;
    }
}

// A fee bump we made but did not record (a crash right after bumpfee).
void Anchorer::AdoptReplacement(AnchorRecord record, const Hash256& replacement)
{
    const std::string txid = HashToDisplay(replacement);
    auto next = WalletTransaction(txid, fmt::format("anchor {} gettransaction of its replacement", record.id));
    if (!next) return;
    LogInfo("Anchor {}: adopting replacement {} of {}", record.id, txid, HashToDisplay(record.txids.back()));
    record.signed_tx = std::move(next->tx);
    record.txids.push_back(next->txid);
    Save(record, 1);
}

void Anchorer::BumpFee(AnchorRecord record, uint64_t tip_height)
{
    const std::string txid = HashToDisplay(record.txids.back());
    const auto options = FeeOptions(anchor::BumpFee(m_policy, record.fee_bumps + 1), nlohmann::json::object());
    auto bumped = m_rpc.WalletCall("bumpfee", {txid, options});
    const auto bumped_txid = bumped ? AnswerMember<std::string>(*bumped, "txid") : std::nullopt;
    if (!bumped_txid) {
        NoteError(bumped ? BtcError{BtcError::Kind::Malformed, 0, 0, "no txid"} : bumped.error(),
                  fmt::format("anchor {} bumpfee", record.id));
        return;
    }
    auto next = WalletTransaction(*bumped_txid, "gettransaction after bumpfee");
    if (!next) return;
    const uint64_t id = record.id;
    if (Save(anchor::Bumped(std::move(record), std::move(*next), tip_height), 1)) {
        LOCK(m_status_mutex);
        ++m_status.fee_bumps;
    }
    LogInfo("Anchor {}: not in a block after {} blocks; fee bumped, {} replaces {}", id, m_options.bump_after_blocks,
            *bumped_txid, txid);
}

void Anchorer::Resend(const AnchorRecord& record)
{
    auto sent = m_rpc.Call("sendrawtransaction", {HexEncode(record.signed_tx)});
    switch (anchor::ClassifySend(sent ? nullptr : &sent.error())) {
    case anchor::SendOutcome::Accepted:
    case anchor::SendOutcome::AlreadyInChain: return;
    case anchor::SendOutcome::Rejected:
        Abandon(record, "the transaction cannot return to the mempool: " + sent.error().ToString());
        return;
    case anchor::SendOutcome::Failed: NoteError(sent.error(), fmt::format("anchor {} sendrawtransaction", record.id)); return;
    }
}

void Anchorer::Abandon(AnchorRecord record, const std::string& why)
{
    record.state = AnchorState::Abandoned;
    record.proof.reset();
    record.note = why;
    LogWarning("Anchor {} abandoned ({}); the next step anchors the log again", record.id, why);
    if (Save(record, 5)) {
        LOCK(m_status_mutex);
        ++m_status.anchors_abandoned;
    }
}

bool Anchorer::OnBlockConnected(uint64_t height, const Hash256& hash, const Block* block, const ledger::Cursor& cursor)
{
    auto latest = m_ledger.LatestAnchor();
    if (!latest || (latest->state != AnchorState::Signed && latest->state != AnchorState::Broadcast)) return false;
    if (block == nullptr) {
        // Pruned before we read it: if our transaction is in it, its branch is gone.
        auto tx = m_rpc.WalletCall("gettransaction", {HashToDisplay(latest->txids.back())});
        if (tx && AnswerMember<std::string>(*tx, "blockhash") == HashToDisplay(hash)) {
            Abandon(*latest, fmt::format("its block {} was pruned before bitacorad could read it", height));
        }
        return false;
    }
    auto proof = anchor::FindInBlock(*block, height, hash, ledger::AnchorPayload(latest->tree_size, latest->root));
    if (!proof) return false;
    const Hash256 txid = proof->txid;
    const uint64_t id = latest->id;
    if (!Save(anchor::Confirmed(std::move(*latest), std::move(*proof)), 2, {cursor})) return false;
    {
        LOCK(m_status_mutex);
        ++m_status.anchors_confirmed;
    }
    LogInfo("Anchor {} confirmed: txid {} in block {} {}; proof material stored", id, HashToDisplay(txid),
            height, HashToDisplay(hash));
    return true;
}

void Anchorer::OnBlockDisconnected(uint64_t height, const Hash256& hash)
{
    auto latest = m_ledger.LatestAnchor();
    if (!latest) return;
    const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
    for (auto& record : m_ledger.ListAnchors(from, kRecentAnchorsMax + 1)) {
        const auto action = anchor::OnDisconnect(record, record.id == latest->id, hash);
        if (action == anchor::DisconnectAction::None) continue;
        if (record.state == AnchorState::Final) {
            LogError("Anchor {}: a reorg deeper than {} confirmations took its block {}", record.id,
                     m_options.final_confirmations, height);
        }
        if (action == anchor::DisconnectAction::Abandon) {
            Abandon(record, fmt::format("a reorg took its block {} after a newer anchor was made", height));
            continue;
        }
        m_last_checked_tip = UINT64_MAX;
        LogWarning("Anchor {}: block {} {} was disconnected; its proof material is dropped until the "
                   "transaction is in a block again",
                   record.id, height, HashToDisplay(hash));
        if (Save(anchor::Unconfirmed(std::move(record), height), 4)) {
            LOCK(m_status_mutex);
            ++m_status.anchors_dropped;
        }
    }
}

} // namespace bitacora::btc
