#include "indexer/btc/anchorer.h"

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

} // namespace

double BumpedFeeRate(double configured_sat_vb, uint32_t bump)
{
    const double rate = configured_sat_vb * (1.0 + 0.5 * bump);
    // The small tolerance keeps an exact 1.65 (as 1.6500000000000001) from rounding up to 1.651.
    return std::ceil(rate * 1000.0 - 1e-6) / 1000.0;
}

uint64_t Anchorer::UnixNowSeconds() const
{
    return m_options.clock != nullptr ? m_options.clock->UnixSeconds() : SystemClock().UnixSeconds();
}

Anchorer::Anchorer(ledger::Ledger& ledger, BitcoindRpc& rpc, AnchorerOptions options)
    : m_ledger(ledger), m_rpc(rpc), m_options(options), m_started_s(UnixNowSeconds())
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

// The first automatic anchor: once every follower caught up, so that it commits to the
// chains' history rather than to whatever a moment after start-up held; but at the
// latest one interval after start, so that a follower that cannot catch up does not
// leave the off-chain events and what was followed unanchored.
bool Anchorer::FirstAnchorDue(bool sources_synced, uint64_t now_s)
{
    if (sources_synced || now_s >= m_started_s + m_options.interval_s) return true;
    if (!m_first_wait_logged) {
        LogInfo("The first anchor waits until the followers have caught up (at most {} s, -anchorinterval)",
                m_options.interval_s);
        m_first_wait_logged = true;
    }
    return false;
}

void Anchorer::Step(uint64_t tip_height, bool sources_synced)
{
    const uint64_t now = UnixNowSeconds();
    const uint64_t ticket = m_requested_ticket.load();
    const bool requested = ticket > m_handled_ticket.load();
    auto finish_request = [&](std::string outcome) {
        if (!requested) return;
        {
            LOCK(m_status_mutex);
            m_request_outcome = std::move(outcome);
            m_handled_ticket = ticket;
        }
        m_handled_cv.notify_all();
    };
    auto latest = m_ledger.LatestAnchor();
    if (latest && latest->active()) {
        if (latest->state == AnchorState::Confirmed) {
            const uint64_t early = sim::Mutated(sim::Mutation::AnchorFinalEarly) ? 1 : 0;
            if (latest->proof && tip_height + 1 + early >= latest->proof->block_height + m_options.final_confirmations) {
                latest->state = AnchorState::Final;
                if (Save(*latest, 3)) {
                    LOCK(m_status_mutex);
                    ++m_status.anchors_final;
                }
                LogInfo("Anchor {} final: tree size {} root {} in block {} ({} confirmations)", latest->id,
                        latest->tree_size, HexEncode0x(latest->root), latest->proof->block_height,
                        tip_height + 1 - latest->proof->block_height);
            }
            finish_request(fmt::format("anchor {} is confirmed and not final yet; it covers tree size {}", latest->id,
                                       latest->tree_size));
            return;
        }
        if (now < m_retry_at_s && !requested) return;
        if (m_first_step && latest->state == AnchorState::Broadcast &&
            sim::Mutated(sim::Mutation::AnchorResignsAfterCrash)) {
            latest->state = AnchorState::Planned; // the broken variant: a second transaction for one anchor
        }
        m_first_step = false;
        if (latest->state == AnchorState::Planned) SignPlanned(*latest);
        latest = m_ledger.LatestAnchor();
        if (latest->state == AnchorState::Signed) Broadcast(*latest, tip_height);
        latest = m_ledger.LatestAnchor();
        if (latest->state == AnchorState::Broadcast) WatchBroadcast(*latest, tip_height);
        latest = m_ledger.LatestAnchor();
        std::string last_error;
        {
            LOCK(m_status_mutex);
            last_error = m_status.last_error;
        }
        finish_request(latest->state == AnchorState::Planned
                           ? fmt::format("anchor {} could not be sent: {}", latest->id, last_error)
                           : fmt::format("anchor {} is {}", latest->id, ledger::AnchorStateName(latest->state)));
        return;
    }
    if (!m_options.enabled && !requested) return;
    if (now < m_retry_at_s && !requested) return;
    // The last anchor that counts: abandoned ones anchored nothing.
    std::optional<AnchorRecord> last_good;
    if (latest) {
        const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
        for (auto& record : m_ledger.ListAnchors(from, kRecentAnchorsMax + 1)) {
            if (record.state != AnchorState::Abandoned) last_good = record;
        }
    }
    const uint64_t size = m_ledger.size();
    const uint64_t log_events = size - m_ledger.GetTotals(false).anchor_events;
    if (log_events == 0 || (last_good && log_events <= last_good->log_events_at_plan)) {
        finish_request(last_good ? fmt::format("nothing to anchor: no event since anchor {} (tree size {})", last_good->id,
                                               last_good->tree_size)
                                 : std::string("nothing to anchor: the log is empty"));
        return;
    }
    if (!requested && last_good && now < last_good->planned_time + m_options.interval_s) return;
    if (!requested && !last_good && !FirstAnchorDue(sources_synced, now)) return;
    auto root = m_ledger.RootAt(size);
    if (!root) return;
    AnchorRecord record;
    record.id = latest ? latest->id + 1 : 1;
    record.state = AnchorState::Planned;
    record.tree_size = size;
    record.root = *root;
    record.log_events_at_plan = log_events;
    record.planned_time = now;
    if (!Save(record, std::nullopt)) {
        finish_request("cannot persist the anchor's plan");
        return;
    }
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
    std::string last_error;
    {
        LOCK(m_status_mutex);
        last_error = m_status.last_error;
    }
    finish_request(outcome && outcome->state == AnchorState::Broadcast
                       ? std::string()
                       : fmt::format("anchor {} planned but not sent yet: {}", record.id, last_error));
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
    nlohmann::json options{{"replaceable", true}};
    if (m_options.fee_rate_sat_vb) {
        options["fee_rate"] = *m_options.fee_rate_sat_vb;
    } else {
        options["conf_target"] = m_options.conf_target;
    }
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
    if (!AnswerMember<bool>(*signed_tx, "complete").value_or(false)) {
        NoteError(BtcError{BtcError::Kind::Rpc, 0, 0, "the wallet could not sign every input (locked or watch-only?)"},
                  "signrawtransactionwithwallet");
        return;
    }
    const auto bytes = HexDecode(*signed_hex);
    const auto tx = bytes ? ParseTransaction(*bytes) : Result<Transaction>(Error{"not hex"});
    if (!tx) {
        NoteError(BtcError{BtcError::Kind::Malformed, 0, 0, tx.error()}, "signed transaction");
        return;
    }
    const bool has_payload = std::any_of(tx->outputs.begin(), tx->outputs.end(), [&](const TxOut& out) {
        const auto data = OpReturnData(out.script);
        return data && std::equal(data->begin(), data->end(), payload.begin(), payload.end());
    });
    if (!has_payload) {
        NoteError(BtcError{BtcError::Kind::Malformed, 0, 0, "the funded transaction lost the OP_RETURN payload"},
                  "fundrawtransaction");
        return;
    }
    record.signed_tx = *bytes;
    record.txids = {tx->txid};
    record.state = AnchorState::Signed;
    record.note.clear();
    Save(record, std::nullopt);
}

void Anchorer::Broadcast(AnchorRecord record, uint64_t tip_height)
{
    auto sent = m_rpc.Call("sendrawtransaction", {HexEncode(record.signed_tx)});
    if (!sent) {
        const auto& e = sent.error();
        if (e.kind == BtcError::Kind::Rpc && e.code == kRpcVerifyAlreadyInChain) {
            LogInfo("Anchor {}: transaction {} is already in a block", record.id, HashToDisplay(record.txids.back()));
        } else if (e.kind == BtcError::Kind::Rpc && (e.code == kRpcVerifyError || e.code == kRpcVerifyRejected)) {
            Abandon(record, "the node rejected the signed transaction: " + e.ToString());
            return;
        } else {
            NoteError(e, fmt::format("anchor {} sendrawtransaction", record.id));
            return;
        }
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

void Anchorer::WatchBroadcast(AnchorRecord record, uint64_t tip_height)
{
    // The wallet and the mempool are asked once per new best block (and after a restart).
    if (tip_height == m_last_checked_tip) return;
    const std::string txid = HashToDisplay(record.txids.back());
    auto tx = m_rpc.WalletCall("gettransaction", {txid});
    if (!tx) {
        if (!tx.error().not_found()) {
            NoteError(tx.error(), fmt::format("anchor {} gettransaction", record.id));
            return;
        }
        m_last_checked_tip = tip_height;
        // Unknown to this wallet (another wallet, or a wiped one): make sure the node has it.
        Resend(record);
        return;
    }
    m_last_checked_tip = tip_height;
    const auto replaced_by = AnswerMember<std::string>(*tx, "replaced_by_txid");
    if (replaced_by && record.txids.size() < AnchorRecord::kTxidsMax) {
        // A fee bump we made but did not record (a crash right after bumpfee).
        const std::string replacement = *replaced_by;
        auto next = m_rpc.WalletCall("gettransaction", {replacement});
        const auto id = HashFromDisplay(replacement);
        const auto hex = next ? AnswerMember<std::string>(*next, "hex") : std::nullopt;
        if (id && hex) {
            if (const auto bytes = HexDecode(*hex)) {
                record.signed_tx = *bytes;
                record.txids.push_back(*id);
                LogInfo("Anchor {}: adopting replacement {} of {}", record.id, replacement, txid);
                Save(record, 1);
                return;
            }
        }
    }
    const int64_t confirmations = AnswerMember<int64_t>(*tx, "confirmations").value_or(0);
    if (confirmations < 0) {
        Abandon(record, fmt::format("transaction {} conflicts with a confirmed transaction", txid));
        return;
    }
    if (confirmations > 0) return; // the follower stores it when it processes that block
    auto entry = m_rpc.Call("getmempoolentry", {txid});
    if (!entry) {
        if (!entry.error().not_found()) {
            NoteError(entry.error(), "getmempoolentry");
            return;
        }
        LogWarning("Anchor {}: transaction {} left the mempool; sending it again", record.id, txid);
        Resend(record);
        return;
    }
    if (tip_height < record.broadcast_height + m_options.bump_after_blocks || record.fee_bumps >= m_options.bumps_max ||
        record.txids.size() >= AnchorRecord::kTxidsMax) {
        return;
    }
    nlohmann::json options = nlohmann::json::object();
    if (m_options.fee_rate_sat_vb) {
        // Each bump raises the rate by half again of the configured one (bitcoind requires an increase).
        options["fee_rate"] = BumpedFeeRate(*m_options.fee_rate_sat_vb, record.fee_bumps + 1);
    } else {
        options["conf_target"] = std::max(1u, m_options.conf_target / 2);
    }
    auto bumped = m_rpc.WalletCall("bumpfee", {txid, options});
    const auto bumped_txid = bumped ? AnswerMember<std::string>(*bumped, "txid") : std::nullopt;
    if (!bumped_txid) {
        NoteError(bumped ? BtcError{BtcError::Kind::Malformed, 0, 0, "no txid"} : bumped.error(),
                  fmt::format("anchor {} bumpfee", record.id));
        return;
    }
    const std::string replacement = *bumped_txid;
    auto next = m_rpc.WalletCall("gettransaction", {replacement});
    const auto id = HashFromDisplay(replacement);
    const auto next_hex = next ? AnswerMember<std::string>(*next, "hex") : std::nullopt;
    const auto bytes = next_hex ? HexDecode(*next_hex) : std::nullopt;
    if (!id || !bytes) {
        NoteError(next ? BtcError{BtcError::Kind::Malformed, 0, 0, "no hex"} : next.error(), "gettransaction after bumpfee");
        return;
    }
    record.signed_tx = *bytes;
    record.txids.push_back(*id);
    ++record.fee_bumps;
    record.broadcast_height = tip_height;
    if (Save(record, 1)) {
        LOCK(m_status_mutex);
        ++m_status.fee_bumps;
    }
    LogInfo("Anchor {}: not in a block after {} blocks; fee bumped, {} replaces {}", record.id, m_options.bump_after_blocks,
            replacement, txid);
}

void Anchorer::Resend(const AnchorRecord& record)
{
    auto sent = m_rpc.Call("sendrawtransaction", {HexEncode(record.signed_tx)});
    if (sent) return;
    const auto& e = sent.error();
    if (e.kind == BtcError::Kind::Rpc && e.code == kRpcVerifyAlreadyInChain) return;
    if (e.kind == BtcError::Kind::Rpc && (e.code == kRpcVerifyError || e.code == kRpcVerifyRejected)) {
        Abandon(record, "the transaction cannot return to the mempool: " + e.ToString());
    } else {
        NoteError(e, fmt::format("anchor {} sendrawtransaction", record.id));
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
    const auto payload = ledger::AnchorPayload(latest->tree_size, latest->root);
    for (size_t i = 0; i < block->txs.size(); ++i) {
        const auto& tx = block->txs[i];
        for (size_t o = 0; o < tx.outputs.size(); ++o) {
            const auto data = OpReturnData(tx.outputs[o].script);
            if (!data || !std::equal(data->begin(), data->end(), payload.begin(), payload.end())) continue;
            const auto at = std::search(tx.stripped.begin(), tx.stripped.end(), payload.begin(), payload.end());
            std::vector<Hash256> txids;
            txids.reserve(block->txs.size());
            for (const auto& t : block->txs) txids.push_back(t.txid);
            ledger::AnchorProofMaterial proof;
            proof.block_height = height;
            proof.block_hash = hash;
            proof.header = block->header_bytes;
            proof.tx = tx.stripped;
            proof.txid = tx.txid;
            proof.output_index = static_cast<uint32_t>(o);
            proof.payload_offset = static_cast<uint32_t>(at - tx.stripped.begin());
            proof.tx_index = static_cast<uint32_t>(i);
            proof.branch = MerkleBranch(txids, i);
            latest->proof = std::move(proof);
            latest->state = AnchorState::Confirmed;
            if (std::find(latest->txids.begin(), latest->txids.end(), tx.txid) == latest->txids.end() &&
                latest->txids.size() < AnchorRecord::kTxidsMax) {
                latest->txids.push_back(tx.txid);
            }
            if (!Save(*latest, 2, {cursor})) return false;
            {
                LOCK(m_status_mutex);
                ++m_status.anchors_confirmed;
            }
            LogInfo("Anchor {} confirmed: txid {} in block {} {}; proof material stored", latest->id,
                    HashToDisplay(tx.txid), height, HashToDisplay(hash));
            return true;
        }
    }
    return false;
}

void Anchorer::OnBlockDisconnected(uint64_t height, const Hash256& hash)
{
    auto latest = m_ledger.LatestAnchor();
    if (!latest || sim::Mutated(sim::Mutation::AnchorKeepsProof)) return;
    const uint64_t from = latest->id > kRecentAnchorsMax ? latest->id - kRecentAnchorsMax : 0;
    for (auto& record : m_ledger.ListAnchors(from, kRecentAnchorsMax + 1)) {
        if (!record.proof || record.proof->block_hash != hash) continue;
        if (record.state == AnchorState::Final) {
            LogError("Anchor {}: a reorg deeper than {} confirmations took its block {}", record.id,
                     m_options.final_confirmations, height);
        }
        if (record.id == latest->id) {
            // Back to waiting: the transaction is back in the mempool, or will be re-sent.
            record.proof.reset();
            record.state = AnchorState::Broadcast;
            record.broadcast_height = height > 0 ? height - 1 : 0;
            m_last_checked_tip = UINT64_MAX;
            LogWarning("Anchor {}: block {} {} was disconnected; its proof material is dropped until the "
                       "transaction is in a block again",
                       record.id, height, HashToDisplay(hash));
            if (Save(record, 4)) {
                LOCK(m_status_mutex);
                ++m_status.anchors_dropped;
            }
        } else {
            Abandon(record, fmt::format("a reorg took its block {} after a newer anchor was made", height));
        }
    }
}

} // namespace bitacora::btc
