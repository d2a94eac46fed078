#include "common/hex.h"
#include "ledger/keys.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger/merkle_verify.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <fstream>
#include <sys/stat.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

std::unique_ptr<Ledger> OpenLedger(const std::filesystem::path& dir, bool with_key = true)
{
    LedgerOptions options;
    if (with_key) options.checkpoint_key_path = dir / "checkpoint.key";
    auto ledger = Ledger::Open(dir / "db", options);
    REQUIRE_MESSAGE(ledger, (ledger ? "" : ledger.error()));
    return std::move(ledger.value());
}

std::vector<Event> Reference(uint64_t begin, uint64_t end)
{
    std::vector<Event> out;
    for (uint64_t i = begin; i < end; ++i) out.push_back(ReferenceEvent(i));
    return out;
}

Event Chain(EventBody body, uint64_t block = 1)
{
    EvmOrigin origin = OriginFor(0);
    origin.block_number = block;
    return {origin, std::move(body)};
}

} // namespace

TEST_CASE("appended events are leaves of the tree, provable at every size")
{
    TempDir dir("ledger-proofs");
    auto ledger = OpenLedger(dir.path);
    CHECK(ledger->size() == 0);
    CHECK(ledger->root() == MerkleEmptyRoot());

    MerkleFrontier reference;
    std::vector<Hash256> roots{MerkleEmptyRoot()};
    for (uint64_t batch = 0; batch < 10; ++batch) {
        const auto events = Reference(batch * 37, (batch + 1) * 37);
        auto result = ledger->Append(events);
        REQUIRE_MESSAGE(result, (result ? "" : result.error()));
        CHECK(result->first_index == batch * 37);
        for (const auto& event : events) {
            reference.Append(MerkleLeafHash(EncodeEvent(event)), [](const MerkleFrontier::Node&) {});
            roots.push_back(reference.Root());
        }
        CHECK(result->root == reference.Root());
        CHECK(result->tree_size == reference.size());
    }
    const uint64_t size = ledger->size();
    CHECK(size == 370);
    for (uint64_t s : {uint64_t{1}, uint64_t{2}, uint64_t{37}, uint64_t{64}, uint64_t{255}, size}) {
        CHECK(*ledger->RootAt(s) == roots[s]);
        for (uint64_t index : {uint64_t{0}, s / 2, s - 1}) {
            auto proof = ledger->ProveInclusion(index, s);
            REQUIRE(proof);
            CHECK(proof->root == roots[s]);
            CHECK(proof->leaf == EncodeEvent(ReferenceEvent(index)));
            CHECK(VerifyInclusion(MerkleLeafHash(proof->leaf), index, s, proof->path, roots[s]));
        }
        for (uint64_t old_size : {uint64_t{1}, s / 3 + 1, s}) {
            auto proof = ledger->ProveConsistency(old_size, s);
            REQUIRE(proof);
            CHECK(VerifyConsistency(old_size, s, roots[old_size], roots[s], *proof));
        }
    }
    CHECK_FALSE(ledger->ProveInclusion(size, size));
    CHECK_FALSE(ledger->ProveInclusion(0, size + 1));
    CHECK_FALSE(ledger->ProveConsistency(5, 4));
    CHECK_FALSE(ledger->RootAt(size + 1));
    CHECK(*ledger->GetLeaf(17) == EncodeEvent(ReferenceEvent(17)));
    CHECK_FALSE(ledger->GetLeaf(size));
}

TEST_CASE("size, root and cursors survive a reopen; cursors move with the append")
{
    TempDir dir("ledger-reopen");
    Hash256 root;
    {
        auto ledger = OpenLedger(dir.path);
        REQUIRE(ledger->Append(Reference(0, 100), {Cursor{"evm", 112, Hash256{0xab}}}));
        root = ledger->root();
        CHECK(ledger->GetCursor("evm")->block_number == 112);
        CHECK_FALSE(ledger->GetCursor("btc"));
    }
    auto ledger = OpenLedger(dir.path);
    CHECK(ledger->size() == 100);
    CHECK(ledger->root() == root);
    const auto cursor = ledger->GetCursor("evm");
    REQUIRE(cursor);
    CHECK(*cursor == Cursor{"evm", 112, Hash256{0xab}});
    REQUIRE(ledger->Append(Reference(100, 101)));
    CHECK(ledger->size() == 101);
}

TEST_CASE("the order state machine, reputation, vault positions and totals")
{
    TempDir dir("ledger-projections");
    auto ledger = OpenLedger(dir.path);
    const UInt256 id(42);
    const Address seller = Addr(1), buyer = Addr(2), arbiter = Addr(3);
    const UInt256 amount(250'000'000);
    REQUIRE(ledger->Append({Chain(OrderCreated{id, seller, buyer, amount, 1'800'000'000})}));
    CHECK(ledger->GetTotals(false).escrow_locked == amount);
    CHECK(ledger->GetTotals(false).orders_open == 1);
    REQUIRE(ledger->Append({Chain(PaymentConfirmed{id, buyer, Hash256{7}}), Chain(OrderDisputed{id, buyer, true}),
                            Chain(DisputeResolved{id, arbiter, true, buyer, amount}),
                            Chain(ReputationChanged{seller, 50, 45})}));
    const auto order = ledger->GetOrder(id, false);
    REQUIRE(order);
    CHECK(order->state == OrderState::Complete);
    CHECK(order->seller == seller);
    CHECK(order->buyer == buyer);
    CHECK(order->disputed_by == buyer);
    CHECK(order->payment_proof == Hash256{7});
    CHECK(order->history.size() == 4);
    CHECK(order->history[0] == OrderRecord::HistoryEntry{0, EventKind::OrderCreated});
    CHECK(order->history[3] == OrderRecord::HistoryEntry{3, EventKind::DisputeResolved});
    CHECK(order->anomalies.empty());
    CHECK(ledger->GetReputation(seller, false) == 45);
    const Totals totals = ledger->GetTotals(false);
    CHECK(totals.escrow_locked.IsZero());
    CHECK(totals.orders == 1);
    CHECK(totals.orders_open == 0);
    CHECK(totals.anomalies == 0);

    // Vault: deposit 1000, withdraw half the shares for 525: realized yield 25.
    const Address holder = Addr(9);
    REQUIRE(ledger->Append({Chain(VaultDeposit{holder, holder, UInt256(1000), UInt256(1'000'000)}),
                            Chain(VaultWithdraw{holder, holder, holder, UInt256(525), UInt256(500'000)})}));
    const auto position = ledger->GetPosition(holder, false);
    REQUIRE(position);
    CHECK(position->shares == UInt256(500'000));
    CHECK(position->assets_in == UInt256(1000));
    CHECK(position->assets_out == UInt256(525));
    CHECK(position->cost_basis == UInt256(500));
    CHECK(position->realized_yield.ToSignedDecimal() == "25");
    CHECK(ledger->GetTotals(false).vault_shares == UInt256(500'000));
    // Share transfers move cost basis; a later loss shows as negative realized yield.
    const Address other = Addr(10);
    REQUIRE(ledger->Append({Chain(VaultTransfer{holder, other, UInt256(250'000)}),
                            Chain(VaultWithdraw{other, other, other, UInt256(200), UInt256(250'000)})}));
    CHECK(ledger->GetPosition(holder, false)->cost_basis == UInt256(250));
    CHECK(ledger->GetPosition(other, false)->realized_yield.ToSignedDecimal() == "-50");
}

TEST_CASE("a transition the state machine forbids is an anomaly on the order, not a crash")
{
    TempDir dir("ledger-anomaly");
    auto ledger = OpenLedger(dir.path);
    const UInt256 id(5);
    REQUIRE(ledger->Append({Chain(OrderReleased{id, Addr(1), Addr(2), UInt256(10)})})); // never created
    REQUIRE(ledger->Append({Chain(OrderCreated{id, Addr(1), Addr(2), UInt256(10), 99}),
                            Chain(OrderCreated{id, Addr(1), Addr(2), UInt256(10), 99}),
                            Chain(OrderReleased{id, Addr(1), Addr(2), UInt256(10)})})); // release before payment
    const auto order = ledger->GetOrder(id, false);
    REQUIRE(order);
    CHECK(order->state == OrderState::AwaitingPayment);
    REQUIRE(order->anomalies.size() == 3);
    CHECK(order->anomalies[0].reason == "order_released in state none, expected awaiting_delivery");
    CHECK(order->anomalies[1].reason == "order created twice");
    CHECK(order->anomalies[2].index == 3);
    CHECK(order->history.size() == 4);
    CHECK(ledger->GetTotals(false).anomalies == 3);
    CHECK(ledger->GetTotals(false).escrow_locked == UInt256(10));
}

TEST_CASE("on-chain events need an origin; off-chain events must not have one")
{
    TempDir dir("ledger-origin");
    auto ledger = OpenLedger(dir.path);
    CHECK_FALSE(ledger->Append({Event{std::nullopt, OrderCancelled{}}}));
    CHECK_FALSE(ledger->Append({Event{OriginFor(0), AnchorEvent{}}}));
    CHECK(ledger->size() == 0);
}

TEST_CASE("the pending overlay is visible to pending queries and rolls back")
{
    TempDir dir("ledger-pending");
    auto ledger = OpenLedger(dir.path);
    const UInt256 id(1);
    REQUIRE(ledger->Append({Chain(OrderCreated{id, Addr(1), Addr(2), UInt256(10), 99}, 10)},
                           {Cursor{"evm", 10, Hash256{10}}}));
    REQUIRE(ledger->AddPendingBlock("evm", {11, Hash256{11}, {Chain(PaymentConfirmed{id, Addr(2), Hash256{}}, 11)}}));
    REQUIRE(ledger->AddPendingBlock("evm", {12, Hash256{12}, {Chain(OrderReleased{id, Addr(1), Addr(2), UInt256(10)}, 12)}}));
    CHECK_FALSE(ledger->AddPendingBlock("evm", {14, Hash256{14}, {}})); // must extend the last block
    CHECK(ledger->GetOrder(id, true)->state == OrderState::Complete);
    CHECK(ledger->GetOrder(id, false)->state == OrderState::AwaitingPayment);
    CHECK(ledger->GetTotals(true).escrow_locked.IsZero());
    CHECK(ledger->GetTotals(false).escrow_locked == UInt256(10));
    const Hash256 root = ledger->root();

    // A reorg back to block 11 drops the release; another block replaces it.
    ledger->RollbackPending("evm", 11);
    CHECK(ledger->GetOrder(id, true)->state == OrderState::AwaitingDelivery);
    REQUIRE(ledger->AddPendingBlock("evm", {12, Hash256{0x12}, {}}));
    CHECK(ledger->GetPending("evm").size() == 2);
    CHECK(ledger->root() == root); // the log never changed

    // Block 11 becomes final: appended, then dropped from the overlay.
    REQUIRE(ledger->Append({Chain(PaymentConfirmed{id, Addr(2), Hash256{}}, 11)}, {Cursor{"evm", 11, Hash256{11}}}));
    ledger->DropFinalizedPending("evm", 11);
    CHECK(ledger->GetPending("evm").size() == 1);
    CHECK(ledger->GetOrder(id, false)->state == OrderState::AwaitingDelivery);
    CHECK(ledger->GetOrder(id, true)->state == OrderState::AwaitingDelivery);
    ledger->RollbackPending("evm", 0);
    CHECK(ledger->GetPending("evm").empty());
}

TEST_CASE("pending events are named by pending id, never by an index past the log (issue 13)")
{
    TempDir dir("ledger-pending-ids");
    auto ledger = OpenLedger(dir.path);
    std::vector<LedgerNotice> notices;
    ledger->SetListener([&](const LedgerNotice& notice) { notices.push_back(notice); });
    const UInt256 id(1);
    REQUIRE(ledger->Append({Chain(OrderCreated{id, Addr(1), Addr(2), UInt256(10), 99}, 10)},
                           {Cursor{"evm", 10, Hash256{10}}}));
    Event confirmed = Chain(PaymentConfirmed{id, Addr(2), Hash256{}}, 11);
    confirmed.origin->block_hash = Hash256{11};
    confirmed.origin->log_index = 7;
    REQUIRE(ledger->AddPendingBlock("evm", {11, Hash256{11}, {confirmed}}));
    Event cancelled = Chain(OrderCancelled{id}, 12); // not allowed after payment: an anomaly
    cancelled.origin->block_hash = Hash256{12};
    REQUIRE(ledger->AddPendingBlock("evm", {12, Hash256{12}, {cancelled}}));

    const auto order = ledger->GetOrder(id, true);
    REQUIRE(order);
    REQUIRE(order->history.size() == 3);
    CHECK(order->history[0].index == 0);
    CHECK_FALSE(order->history[0].pending);
    REQUIRE(order->history[1].pending);
    CHECK(*order->history[1].pending == PendingId{Hash256{11}, 7});
    CHECK(PendingIdText(*order->history[1].pending) == "pending:0x" + HexEncode(Hash256{11}) + ":7");
    REQUIRE(order->anomalies.size() == 1);
    REQUIRE(order->anomalies[0].pending);
    CHECK(order->anomalies[0].pending->block_hash == Hash256{12});
    // The record round-trips through its encoding with the pending ids.
    const auto decoded = OrderRecord::Decode(order->Encode());
    REQUIRE(decoded);
    CHECK(decoded->history == order->history);
    CHECK(decoded->anomalies == order->anomalies);
    CHECK(decoded->Encode() == order->Encode());
    // The final view and its stored bytes know nothing of them.
    const auto final_view = ledger->GetOrder(id, false);
    REQUIRE(final_view);
    CHECK(final_view->history.size() == 1);

    // The listener heard each pending block before the rollback that takes it back.
    ledger->RollbackPending("evm", 10);
    REQUIRE(notices.size() == 4);
    CHECK(notices[0].type == LedgerNotice::Type::Appended);
    CHECK(notices[1].type == LedgerNotice::Type::Pending);
    CHECK(notices[1].events == std::vector<Event>{confirmed});
    CHECK(notices[2].type == LedgerNotice::Type::Pending);
    CHECK(notices[3].type == LedgerNotice::Type::RolledBack);
    CHECK(notices[3].events == std::vector<Event>{confirmed, cancelled});
}

TEST_CASE("finalizing pending blocks appends them once, moves the cursor and empties the overlay")
{
    TempDir dir("ledger-finalize");
    auto ledger = OpenLedger(dir.path);
    TempDir reference_dir("ledger-finalize-ref");
    auto reference = OpenLedger(reference_dir.path);
    std::vector<Event> all;
    for (uint64_t block = 1; block <= 6; ++block) {
        PendingBlock pending{block, Hash256{static_cast<uint8_t>(block)}, {}};
        for (uint64_t i = 0; i < 5; ++i) pending.events.push_back(ReferenceEvent(all.size() + i));
        all.insert(all.end(), pending.events.begin(), pending.events.end());
        REQUIRE(ledger->AddPendingBlock("evm", pending));
    }
    const auto pending_totals = ledger->GetTotals(true);
    CHECK_FALSE(ledger->FinalizePending("evm", 0)); // nothing at or below block 0
    const auto finalized = ledger->FinalizePending("evm", 4);
    REQUIRE(finalized);
    CHECK(finalized->tree_size == 20);
    CHECK(ledger->GetCursor("evm")->block_number == 4);
    CHECK(ledger->GetCursor("evm")->block_hash == Hash256{4});
    CHECK(ledger->GetPending("evm").size() == 2);
    // The pending view is unchanged by finalization: no event counted twice or lost.
    CHECK(ledger->GetTotals(true).escrow_locked == pending_totals.escrow_locked);
    CHECK(ledger->GetTotals(true).orders == pending_totals.orders);
    REQUIRE(ledger->FinalizePending("evm", 6));
    CHECK(ledger->GetPending("evm").empty());
    CHECK(ledger->GetTotals(false).orders == pending_totals.orders);
    REQUIRE(reference->Append(all));
    CHECK(ledger->root() == reference->root());
    CHECK(*ledger->StateHash() == *reference->StateHash());
}

TEST_CASE("off-chain events: signature checked, appended once per idempotency key")
{
    TempDir dir("ledger-offchain");
    auto ledger = OpenLedger(dir.path);
    auto backend = CheckpointSigner::LoadOrCreate(dir.path / "backend.key");
    REQUIRE(backend);
    OffchainEvent event{"offer.posted", "offer-1", Bytes{'{', '}'}, (*backend)->public_key(), {}};
    event.signature = (*backend)->SignHash(OffchainSigningHash(event));

    auto first = ledger->AppendOffchain(event);
    REQUIRE_MESSAGE(first, (first ? "" : first.error()));
    REQUIRE(ledger->Append(Reference(0, 3)));
    auto retry = ledger->AppendOffchain(event);
    REQUIRE(retry);
    CHECK(*retry == *first);
    CHECK(ledger->size() == 4);
    CHECK(ledger->GetTotals(false).offchain_events == 1);

    OffchainEvent conflicting = event;
    conflicting.payload = Bytes{'[', ']'};
    conflicting.signature = (*backend)->SignHash(OffchainSigningHash(conflicting));
    auto conflict = ledger->AppendOffchain(conflicting);
    REQUIRE_FALSE(conflict);
    CHECK(conflict.error_kind() == ErrorKind::Conflict); // the API answers it by kind, not by message

    OffchainEvent forged = event;
    forged.idempotency_key = "offer-2"; // signature no longer covers it
    const auto refused = ledger->AppendOffchain(forged);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("signature") != std::string::npos);
    CHECK(refused.error_kind() == ErrorKind::Invalid);
    CHECK(ledger->size() == 4);
}

TEST_CASE("checkpoints are signed with a 0600 key and reject any change")
{
    TempDir dir("ledger-checkpoint");
    XOnlyPubKey key;
    {
        auto ledger = OpenLedger(dir.path);
        REQUIRE(ledger->Append(Reference(0, 10)));
        key = *ledger->checkpoint_public_key();
    }
    struct stat st{};
    REQUIRE(::stat((dir.path / "checkpoint.key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto ledger = OpenLedger(dir.path);
    CHECK(*ledger->checkpoint_public_key() == key); // the same key after a restart
    auto checkpoint = ledger->SignCheckpoint(1'790'000'000);
    REQUIRE(checkpoint);
    CHECK(checkpoint->tree_size == 10);
    CHECK(checkpoint->root == ledger->root());
    CHECK(VerifyCheckpoint(*checkpoint, key));

    auto other = CheckpointSigner::LoadOrCreate(dir.path / "other.key");
    REQUIRE(other);
    CHECK_FALSE(VerifyCheckpoint(*checkpoint, (*other)->public_key()));
    Checkpoint bad = *checkpoint;
    bad.tree_size = 11;
    CHECK_FALSE(VerifyCheckpoint(bad, key));
    bad = *checkpoint;
    bad.root[0] ^= 1;
    CHECK_FALSE(VerifyCheckpoint(bad, key));
    bad = *checkpoint;
    bad.timestamp += 1;
    CHECK_FALSE(VerifyCheckpoint(bad, key));
    bad = *checkpoint;
    bad.signature[10] ^= 1;
    CHECK_FALSE(VerifyCheckpoint(bad, key));

    std::ofstream(dir.path / "short.key") << "too short";
    CHECK_FALSE(CheckpointSigner::LoadOrCreate(dir.path / "short.key"));
}

TEST_CASE("two ledgers fed the same events reach byte-identical roots and state hashes")
{
    TempDir a("ledger-det-a");
    TempDir b("ledger-det-b");
    auto first = OpenLedger(a.path, false);
    auto second = OpenLedger(b.path, false);
    // Different batchings of the same sequence.
    REQUIRE(first->Append(Reference(0, 500)));
    for (uint64_t i = 0; i < 500; i += 7) REQUIRE(second->Append(Reference(i, std::min<uint64_t>(500, i + 7))));
    CHECK(first->root() == second->root());
    CHECK(*first->StateHash() == *second->StateHash());
    REQUIRE(second->Append(Reference(500, 501)));
    CHECK(*first->StateHash() != *second->StateHash());
}

TEST_CASE("a rebuild from the log reaches the same state hash")
{
    TempDir dir("ledger-rebuild");
    auto ledger = OpenLedger(dir.path, false);
    REQUIRE(ledger->Append(Reference(0, 2000)));
    const Hash256 before = *ledger->StateHash();
    const Totals totals = ledger->GetTotals(false);
    REQUIRE(ledger->RebuildProjections());
    CHECK(*ledger->StateHash() == before);
    CHECK(ledger->GetTotals(false).escrow_locked == totals.escrow_locked);
}

TEST_CASE("a database from a newer release, or with foreign column families, is refused")
{
    TempDir dir("ledger-schema");
    { OpenLedger(dir.path, false); }
    {
        rocksdb::DB* raw = nullptr;
        std::vector<rocksdb::ColumnFamilyDescriptor> families;
        for (const char* name : {"default", keys::kMetaFamily, keys::kEventsFamily, keys::kMerkleFamily, keys::kProjectionsFamily,
                                 keys::kAnchorsFamily}) {
            families.emplace_back(name, rocksdb::ColumnFamilyOptions());
        }
        std::vector<rocksdb::ColumnFamilyHandle*> handles;
        REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), (dir.path / "db").string(), families, &handles, &raw).ok());
        REQUIRE(raw->Put(rocksdb::WriteOptions(), handles[1], std::string(keys::kSchemaVersion), "99").ok());
        for (auto* handle : handles) raw->DestroyColumnFamilyHandle(handle);
        delete raw;
    }
    auto ledger = Ledger::Open(dir.path / "db", {});
    REQUIRE_FALSE(ledger);
    CHECK(ledger.error().find("newer than this bitacorad supports") != std::string::npos);

    LedgerOptions no_create;
    no_create.create_if_missing = false;
    CHECK_FALSE(Ledger::Open(dir.path / "missing", no_create));
}
