// RLP (Ethereum's Recursive Length Prefix encoding) and the root of a Merkle-Patricia
// trie: just enough to recompute a block header's hash and a block's receiptsRoot from
// what a node answers. Pure functions, no I/O.
#pragma once

#include "common/hex.h"    // Bytes
#include "common/sha256.h" // Hash256

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace bitacora::evm::rlp {

// A byte string: a single byte below 0x80 is itself, otherwise a length prefix.
void AppendString(Bytes& out, std::span<const uint8_t> bytes);
// An unsigned integer: big-endian without leading zeros (0 is the empty string).
void AppendUint(Bytes& out, uint64_t value);
// A list whose items are already encoded, concatenated in `payload`.
void AppendList(Bytes& out, std::span<const uint8_t> payload);

Bytes EncodeString(std::span<const uint8_t> bytes);
Bytes EncodeUint(uint64_t value);
Bytes EncodeList(std::span<const uint8_t> payload);

// The root hash of Ethereum's hexary Merkle-Patricia trie holding these (key, value)
// pairs; keys must be distinct and values non-empty (as in every trie a block commits to).
Hash256 TrieRoot(std::vector<std::pair<Bytes, Bytes>> entries);
// The trie keyed by rlp(index): a block's transactions, receipts and withdrawals.
Hash256 OrderedTrieRoot(std::span<const Bytes> values);

} // namespace bitacora::evm::rlp
