// Bitcoin blocks and transactions as bytes: parsing (segwit included), txids from the
// non-witness serialization, Merkle roots and branches, header hashes. Bounded: a
// parser refuses counts and sizes no valid block can have instead of allocating them.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace bitacora::btc {

inline constexpr size_t kHeaderBytes = 80;
inline constexpr size_t kBlockBytesMax = 4'000'000;   // consensus weight limit bounds the serialization
inline constexpr size_t kBlockTxMax = 1'000'000;
inline constexpr size_t kTxIoMax = 100'000;           // inputs or outputs of one transaction

using Header = std::array<uint8_t, kHeaderBytes>;

struct BlockHeader {
    int32_t version{0};
    Hash256 prev_hash{};    // internal byte order
    Hash256 merkle_root{};  // internal byte order
    uint32_t time{0};
    uint32_t bits{0};
    uint32_t nonce{0};
    Hash256 hash{};         // sha256d of the 80 bytes, internal byte order
};

struct TxOut {
    int64_t value_sat{0};
    Bytes script;
};

struct Transaction {
    int32_t version{0};
    size_t inputs{0};
    std::vector<TxOut> outputs;
    uint32_t lock_time{0};
    bool has_witness{false};
    Bytes stripped;          // the non-witness serialization: its sha256d is the txid
    Hash256 txid{};          // internal byte order
    size_t serialized_size{0};
};

struct Block {
    BlockHeader header;
    Header header_bytes{};
    std::vector<Transaction> txs;
};

Result<BlockHeader> ParseHeader(std::span<const uint8_t> bytes);
Result<Transaction> ParseTransaction(std::span<const uint8_t> bytes);
Result<Block> ParseBlock(std::span<const uint8_t> bytes);

// Bitcoin's Merkle tree (sha256d pairs, the last node of an odd level paired with
// itself). Empty input gives all zeros.
Hash256 MerkleRoot(std::vector<Hash256> leaves);
// The siblings from leaf `index` up to the root, bottom first.
std::vector<Hash256> MerkleBranch(const std::vector<Hash256>& leaves, size_t index);
Hash256 RootFromBranch(Hash256 leaf, size_t index, std::span<const Hash256> branch);

// Display order (reversed) hex, as bitcoind prints hashes, and back.
std::string HashToDisplay(const Hash256& hash);
std::optional<Hash256> HashFromDisplay(std::string_view hex);

// The data pushed by an OP_RETURN script (one push of up to 80 bytes), if it is one.
std::optional<std::span<const uint8_t>> OpReturnData(std::span<const uint8_t> script);

} // namespace bitacora::btc
