#include "indexer/btc/block.h"

#include <algorithm>
#include <fmt/format.h>

namespace bitacora::btc {
namespace {

// A bounds-checked little-endian reader over a byte span.
class Cursor {
public:
    explicit Cursor(std::span<const uint8_t> in) : m_in(in) {}
    size_t pos() const { return m_pos; }
    size_t left() const { return m_in.size() - m_pos; }
    bool Skip(size_t n)
    {
        if (left() < n) return false;
        m_pos += n;
        return true;
    }
    template <typename T>
    bool Le(T& out)
    {
        if (left() < sizeof(T)) return false;
        uint64_t v = 0;
        for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(m_in[m_pos + i]) << (8 * i);
        out = static_cast<T>(v);
        m_pos += sizeof(T);
        return true;
    }
    // CompactSize, canonical encodings only (as Bitcoin Core requires).
    bool VarInt(uint64_t& out)
    {
        uint8_t first = 0;
        if (!Le(first)) return false;
        if (first < 0xfd) {
            out = first;
            return true;
        }
        if (first == 0xfd) {
            uint16_t v = 0;
            if (!Le(v) || v < 0xfd) return false;
            out = v;
            return true;
        }
        if (first == 0xfe) {
            uint32_t v = 0;
            if (!Le(v) || v <= 0xffff) return false;
            out = v;
            return true;
        }
        uint64_t v = 0;
        if (!Le(v) || v <= 0xffffffffULL) return false;
        out = v;
        return true;
    }
    bool Bytes(size_t n, std::span<const uint8_t>& out)
    {
        if (left() < n) return false;
        out = m_in.subspan(m_pos, n);
        m_pos += n;
        return true;
    }
    uint8_t Peek(size_t ahead) const { return m_in[m_pos + ahead]; }
    std::span<const uint8_t> Slice(size_t from, size_t to) const { return m_in.subspan(from, to - from); }

private:
    std::span<const uint8_t> m_in;
    size_t m_pos{0};
};

void Append(Bytes& out, std::span<const uint8_t> bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }

Status ReadOutputs(Cursor& in, Transaction& tx)
{
    uint64_t outputs = 0;
    if (!in.VarInt(outputs)) return Error{"transaction cut short in its output count"};
    if (outputs > kTxIoMax) return Error{fmt::format("transaction claims {} outputs", outputs)};
    for (uint64_t i = 0; i < outputs; ++i) {
        TxOut out;
        uint64_t script_len = 0;
        std::span<const uint8_t> script;
        if (!in.Le(out.value_sat) || !in.VarInt(script_len) || script_len > kBlockBytesMax || !in.Bytes(script_len, script)) {
            return Error{fmt::format("transaction cut short in output {}", i)};
        }
        out.script.assign(script.begin(), script.end());
        tx.outputs.push_back(std::move(out));
    }
    return {};
}

// One witness stack per input; Bitcoin Core rejects a segwit serialization whose
// witnesses are all empty.
Status SkipWitnesses(Cursor& in, uint64_t inputs)
{
    bool any = false;
    for (uint64_t i = 0; i < inputs; ++i) {
        uint64_t items = 0;
        if (!in.VarInt(items) || items > kTxIoMax) return Error{fmt::format("transaction cut short in witness {}", i)};
        any = any || items > 0;
        for (uint64_t k = 0; k < items; ++k) {
            uint64_t len = 0;
            if (!in.VarInt(len) || len > kBlockBytesMax || !in.Skip(len)) {
                return Error{fmt::format("transaction cut short in witness {}", i)};
            }
        }
    }
    if (!any) return Error{"segwit serialization with empty witnesses"};
    return {};
}

Result<Transaction> ParseTx(Cursor& in)
{
    Transaction tx;
    const size_t start = in.pos();
    if (!in.Le(tx.version)) return Error{"transaction cut short in its version"};
    const size_t after_version = in.pos();
    uint64_t inputs = 0;
    if (!in.VarInt(inputs)) return Error{"transaction cut short in its input count"};
    if (inputs == 0) {
        // BIP144 marker 0x00 then flag 0x01; a transaction with no inputs is not valid otherwise.
        uint8_t flag = 0;
        if (!in.Le(flag) || flag != 1) return Error{"transaction has no inputs and no segwit flag"};
        tx.has_witness = true;
        if (!in.VarInt(inputs)) return Error{"transaction cut short in its input count"};
        if (inputs == 0) return Error{"segwit transaction with no inputs"};
    }
    if (inputs > kTxIoMax) return Error{fmt::format("transaction claims {} inputs", inputs)};
    for (uint64_t i = 0; i < inputs; ++i) {
        uint64_t script_len = 0;
        if (!in.Skip(36) || !in.VarInt(script_len) || script_len > kBlockBytesMax || !in.Skip(script_len) || !in.Skip(4)) {
            return Error{fmt::format("transaction cut short in input {}", i)};
        }
    }
    if (auto read = ReadOutputs(in, tx); !read) return read.failure();
    const size_t io_end = in.pos();
    if (tx.has_witness) {
        if (auto skipped = SkipWitnesses(in, inputs); !skipped) return skipped.failure();
    }
    const size_t lock_pos = in.pos();
    if (!in.Le(tx.lock_time)) return Error{"transaction cut short in its lock time"};
    tx.inputs = inputs;
    tx.serialized_size = in.pos() - start;
    tx.stripped.reserve(tx.serialized_size);
    Append(tx.stripped, in.Slice(start, after_version));
    if (tx.has_witness) {
        // Re-encode the input count without the marker and flag.
        Append(tx.stripped, in.Slice(after_version + 2, io_end));
    } else {
        Append(tx.stripped, in.Slice(after_version, io_end));
    }
    Append(tx.stripped, in.Slice(lock_pos, lock_pos + 4));
    tx.txid = Sha256d(tx.stripped);
    return tx;
}

Hash256 HashPair(const Hash256& a, const Hash256& b)
{
    std::array<uint8_t, 64> buf;
    std::copy(a.begin(), a.end(), buf.begin());
    std::copy(b.begin(), b.end(), buf.begin() + 32);
    return Sha256d(buf);
}

} // namespace

Result<BlockHeader> ParseHeader(std::span<const uint8_t> bytes)
{
    if (bytes.size() < kHeaderBytes) return Error{fmt::format("block header is {} bytes, not 80", bytes.size())};
    Cursor in(bytes.first(kHeaderBytes));
    BlockHeader h;
    std::span<const uint8_t> prev, root;
    in.Le(h.version);
    in.Bytes(32, prev);
    in.Bytes(32, root);
    in.Le(h.time);
    in.Le(h.bits);
    in.Le(h.nonce);
    std::copy(prev.begin(), prev.end(), h.prev_hash.begin());
    std::copy(root.begin(), root.end(), h.merkle_root.begin());
    h.hash = Sha256d(bytes.first(kHeaderBytes));
    return h;
}

Result<Transaction> ParseTransaction(std::span<const uint8_t> bytes)
{
    if (bytes.size() > kBlockBytesMax) return Error{"transaction larger than a block"};
    Cursor in(bytes);
    auto tx = ParseTx(in);
    if (!tx) return tx;
    if (in.left() != 0) return Error{fmt::format("{} bytes after the transaction", in.left())};
    return tx;
}

Result<Block> ParseBlock(std::span<const uint8_t> bytes)
{
    if (bytes.size() > kBlockBytesMax) return Error{fmt::format("block of {} bytes exceeds {}", bytes.size(), kBlockBytesMax)};
    auto header = ParseHeader(bytes);
    if (!header) return header.failure();
    Block block;
    block.header = *header;
    std::copy_n(bytes.begin(), kHeaderBytes, block.header_bytes.begin());
    Cursor in(bytes.subspan(kHeaderBytes));
    uint64_t count = 0;
    if (!in.VarInt(count)) return Error{"block cut short in its transaction count"};
    if (count == 0 || count > kBlockTxMax || count > in.left() / 60 + 1) {
        return Error{fmt::format("block claims {} transactions in {} bytes", count, in.left())};
    }
    block.txs.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
        auto tx = ParseTx(in);
        if (!tx) return Error{fmt::format("transaction {}: {}", i, tx.error())};
        block.txs.push_back(std::move(*tx));
    }
    if (in.left() != 0) return Error{fmt::format("{} bytes after the last transaction", in.left())};
    std::vector<Hash256> txids;
    txids.reserve(block.txs.size());
    for (const auto& tx : block.txs) txids.push_back(tx.txid);
    if (MerkleRoot(std::move(txids)) != block.header.merkle_root) {
        return Error{"the transactions' Merkle root differs from the header's"};
    }
    return block;
}

Hash256 MerkleRoot(std::vector<Hash256> level)
{
    if (level.empty()) return Hash256{};
    while (level.size() > 1) {
        if (level.size() % 2 == 1) level.push_back(level.back());
        for (size_t i = 0; i < level.size() / 2; ++i) level[i] = HashPair(level[2 * i], level[2 * i + 1]);
        level.resize(level.size() / 2);
    }
    return level[0];
}

std::vector<Hash256> MerkleBranch(const std::vector<Hash256>& leaves, size_t index)
{
    std::vector<Hash256> branch;
    std::vector<Hash256> level = leaves;
    while (level.size() > 1) {
        if (level.size() % 2 == 1) level.push_back(level.back());
        branch.push_back(level[index ^ 1]);
        for (size_t i = 0; i < level.size() / 2; ++i) level[i] = HashPair(level[2 * i], level[2 * i + 1]);
        level.resize(level.size() / 2);
        index /= 2;
    }
    return branch;
}

Hash256 RootFromBranch(Hash256 node, size_t index, std::span<const Hash256> branch)
{
    for (const auto& sibling : branch) {
        node = (index & 1) ? HashPair(sibling, node) : HashPair(node, sibling);
        index >>= 1;
    }
    return node;
}

std::string HashToDisplay(const Hash256& hash)
{
    Hash256 reversed;
    std::reverse_copy(hash.begin(), hash.end(), reversed.begin());
    return HexEncode(reversed);
}

std::optional<Hash256> HashFromDisplay(std::string_view hex)
{
    Hash256 hash;
    if (!HexDecodeExact(hex, hash)) return std::nullopt;
    std::reverse(hash.begin(), hash.end());
    return hash;
}

std::optional<std::span<const uint8_t>> OpReturnData(std::span<const uint8_t> script)
{
    if (script.size() < 2 || script[0] != 0x6a) return std::nullopt;
    const uint8_t op = script[1];
    if (op >= 1 && op <= 75) {
        if (script.size() != 2u + op) return std::nullopt;
        return script.subspan(2);
    }
    if (op == 0x4c && script.size() >= 3 && script.size() == 3u + script[2]) return script.subspan(3);
    return std::nullopt;
}

} // namespace bitacora::btc
