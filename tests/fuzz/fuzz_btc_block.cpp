// libFuzzer target for what bitacorad reads from bitcoind and from auditors' files:
// the block and transaction parsers, and the proof-bundle verifier over JSON.
// Properties: no crash; a parsed block's Merkle root matches its header and every
// transaction's branch leads to it; a transaction's stripped bytes parse to the same txid.
#include "common/json_bounds.h"
#include "daemon/proof_tools.h"
#include "indexer/btc/block.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>

using namespace bitacora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::span<const uint8_t> bytes(data, size);
    if (auto block = btc::ParseBlock(bytes)) {
        std::vector<Hash256> txids;
        for (const auto& tx : block->txs) txids.push_back(tx.txid);
        for (size_t i = 0; i < txids.size() && i < 64; ++i) {
            if (btc::RootFromBranch(txids[i], i, btc::MerkleBranch(txids, i)) != block->header.merkle_root) {
                std::fprintf(stderr, "branch of transaction %zu does not lead to the root\n", i);
                std::abort();
            }
        }
    }
    if (auto tx = btc::ParseTransaction(bytes)) {
        const auto again = btc::ParseTransaction(tx->stripped);
        if (!again || again->txid != tx->txid) {
            std::fprintf(stderr, "stripped serialization does not parse to the same txid\n");
            std::abort();
        }
    }
    // As bitacora-cli reads a bundle: bounded in depth.
    const auto bundle = ParseJsonBounded(std::string_view(reinterpret_cast<const char*>(data), size)).value;
    if (!bundle.is_discarded()) {
        (void)VerifyBundle(bundle, std::nullopt);
        (void)ExportOts(bundle);
    }
    return 0;
}
