// Proof bundles at scale: on a ledger of N events (default 10,000,000, written first
// if the directory holds fewer), anchored by a synthetic but genuine Bitcoin block
// (an OP_RETURN transaction committing to the log, a 2-transaction block, a header
// that meets regtest's proof of work), times
//   - generation: ledger_getProofBundle through the API's dispatcher (JSON request in,
//     JSON text out: anchor lookup, checkpoint signing, inclusion proof, encoding);
//   - verification: bitacora-cli verifyproof's checks (VerifyBundle) on the parsed bundle;
//   - the OpenTimestamps export;
// over random events, and prints mean, p50, p99 and max.
//
//   proof_bench DIR [EVENTS] [SAMPLES]
#include "common/hex.h"
#include "daemon/proof_tools.h"
#include "indexer/btc/block.h"
#include "ledger/ledger.h"
#include "rpc/json_rpc.h"
#include "rpc/methods.h"
#include "tests/unit/ledger_testing.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

using namespace bitacora;
using Clock = std::chrono::steady_clock;

namespace {

void Le32(Bytes& out, uint32_t v)
{
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A non-witness transaction: one input, the OP_RETURN output, one payment output.
Bytes AnchorTransaction(const Bytes& payload, uint8_t salt)
{
    Bytes tx;
    Le32(tx, 2);
    tx.push_back(1);
    for (int i = 0; i < 32; ++i) tx.push_back(static_cast<uint8_t>(salt + i));
    Le32(tx, 0);
    tx.push_back(0);
    Le32(tx, 0xfffffffd);
    tx.push_back(2);
    for (int i = 0; i < 8; ++i) tx.push_back(0);
    tx.push_back(static_cast<uint8_t>(payload.size() + 2));
    tx.push_back(0x6a);
    tx.push_back(static_cast<uint8_t>(payload.size()));
    tx.insert(tx.end(), payload.begin(), payload.end());
    for (int i = 0; i < 8; ++i) tx.push_back(i == 1 ? 0x10 : 0);
    tx.push_back(22);
    tx.push_back(0x00);
    tx.push_back(20);
    for (int i = 0; i < 20; ++i) tx.push_back(0xab);
    Le32(tx, 0);
    return tx;
}

ledger::AnchorRecord MakeAnchor(ledger::Ledger& l, uint64_t id, uint64_t tree_size, uint64_t height)
{
    ledger::AnchorRecord a;
    a.id = id;
    a.state = ledger::AnchorState::Final;
    a.tree_size = tree_size;
    a.root = *l.RootAt(tree_size);
    const Bytes payload = ledger::AnchorPayload(a.tree_size, a.root);
    const Bytes other = AnchorTransaction(Bytes(45, 0x42), 7);
    const Bytes tx = AnchorTransaction(payload, static_cast<uint8_t>(id));
    const auto parsed = btc::ParseTransaction(tx);
    const auto parsed_other = btc::ParseTransaction(other);
    const std::vector<Hash256> txids = {parsed_other->txid, parsed->txid};
    Bytes header;
    Le32(header, 0x20000000);
    header.insert(header.end(), 32, 0x11);
    const Hash256 root = btc::MerkleRoot(txids);
    header.insert(header.end(), root.begin(), root.end());
    Le32(header, 1'800'000'000);
    Le32(header, 0x207fffff);
    Le32(header, 0);
    for (uint32_t nonce = 0;; ++nonce) {
        for (int i = 0; i < 4; ++i) header[76 + i] = static_cast<uint8_t>(nonce >> (8 * i));
        if ((Sha256d(header)[31] & 0x80) == 0) break; // below 0x7fffff << 232
    }
    ledger::AnchorProofMaterial p;
    p.block_height = height;
    p.block_hash = Sha256d(header);
    std::copy(header.begin(), header.end(), p.header.begin());
    p.tx = tx;
    p.txid = parsed->txid;
    p.output_index = 0;
    p.payload_offset = static_cast<uint32_t>(std::search(tx.begin(), tx.end(), payload.begin(), payload.end()) - tx.begin());
    p.tx_index = 1;
    p.branch = btc::MerkleBranch(txids, 1);
    a.txids = {p.txid};
    a.proof = p;
    return a;
}

void Report(const char* what, std::vector<double> us)
{
    std::sort(us.begin(), us.end());
    double sum = 0;
    for (double v : us) sum += v;
    std::printf("%-34s n=%zu mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", what, us.size(),
                sum / static_cast<double>(us.size()), us[us.size() / 2], us[us.size() * 99 / 100], us.back());
}

} // namespace

int main(int argc, char* argv[])
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: proof_bench DIR [EVENTS] [SAMPLES]\n");
        return 2;
    }
    const uint64_t total = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10'000'000;
    const size_t samples = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 10'000;
    ledger::LedgerOptions options;
    options.checkpoint_key_path = std::filesystem::path(argv[1]) / "checkpoint.key";
    auto opened = ledger::Ledger::Open(std::filesystem::path(argv[1]) / "db", options);
    if (!opened) {
        std::fprintf(stderr, "%s\n", opened.error().c_str());
        return 1;
    }
    auto& l = **opened;
    const auto write_started = Clock::now();
    for (uint64_t first = l.size(); first < total; first += 10'000) {
        std::vector<ledger::Event> events;
        for (uint64_t i = first; i < std::min(total, first + 10'000); ++i) events.push_back(ledger::testing::ReferenceEvent(i));
        if (auto appended = l.Append(events); !appended) {
            std::fprintf(stderr, "%s\n", appended.error().c_str());
            return 1;
        }
    }
    std::printf("ledger: %llu events (%.1f s to write what was missing)\n", static_cast<unsigned long long>(l.size()),
                std::chrono::duration<double>(Clock::now() - write_started).count());
    // Ten anchors over the log, as after ten anchoring intervals.
    if (!l.LatestAnchor()) {
        for (uint64_t k = 1; k <= 10; ++k) {
            if (auto saved = l.PutAnchor(MakeAnchor(l, k, total * k / 10, 100 + k), {}); !saved) {
                std::fprintf(stderr, "%s\n", saved.error().c_str());
                return 1;
            }
        }
    }
    rpc::Dispatcher dispatcher;
    rpc::RegisterMethods(dispatcher, rpc::MethodContext{.ledger = &l});
    const rpc::CallContext context{.authenticated = true};
    std::mt19937_64 rng(7);
    std::vector<double> generate_us, verify_us, ots_us;
    size_t bytes = 0;
    for (size_t i = 0; i < samples; ++i) {
        const uint64_t index = rng() % total;
        const std::string request =
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ledger_getProofBundle\",\"params\":[" + std::to_string(index) + "]}";
        auto t0 = Clock::now();
        const auto answer = dispatcher.Handle(request, context);
        auto t1 = Clock::now();
        generate_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        bytes += answer.body.size();
        const auto bundle = nlohmann::json::parse(answer.body)["result"];
        t0 = Clock::now();
        const auto checked = VerifyBundle(bundle, std::nullopt);
        t1 = Clock::now();
        if (!checked || !checked->anchored) {
            std::fprintf(stderr, "bundle %llu does not verify: %s\n", static_cast<unsigned long long>(index),
                         checked ? "not anchored" : checked.error().c_str());
            return 1;
        }
        verify_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        t0 = Clock::now();
        const auto ots = ExportOts(bundle);
        t1 = Clock::now();
        if (!ots) return 1;
        ots_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::printf("%zu random events of %llu, bundles of %zu bytes on average\n", samples,
                static_cast<unsigned long long>(total), bytes / samples);
    Report("generate (ledger_getProofBundle)", generate_us);
    Report("verify (VerifyBundle)", verify_us);
    Report("export .ots (ExportOts, verifies)", ots_us);
    return 0;
}
