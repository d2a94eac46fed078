// The simulated bitcoind: transactions and blocks as bytes, the chain, the mempool and
// the wallet. The JSON-RPC face is in sim_btc_rpc.cpp.
#include "tests/sim/sim_btc.h"

#include "indexer/btc/block.h"
#include "tests/sim/sim_btc_node.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <unordered_set>

namespace bitacora::sim {
namespace btcsim {
namespace {

void PutU32(Bytes& out, uint32_t v)
{
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(Bytes& out, uint64_t v)
{
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutVarInt(Bytes& out, uint64_t n)
{
    if (n < 0xfd) {
        out.push_back(static_cast<uint8_t>(n));
    } else if (n <= 0xffff) {
        out.push_back(0xfd);
        for (int i = 0; i < 2; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
    } else if (n <= 0xffffffff) {
        out.push_back(0xfe);
        PutU32(out, static_cast<uint32_t>(n));
    } else {
        out.push_back(0xff);
        PutU64(out, n);
    }
}
void PutBytes(Bytes& out, std::span<const uint8_t> data) { out.insert(out.end(), data.begin(), data.end()); }
void PutVarBytes(Bytes& out, std::span<const uint8_t> data)
{
    PutVarInt(out, data.size());
    PutBytes(out, data);
}
size_t VarIntSize(uint64_t n) { return n < 0xfd ? 1 : n <= 0xffff ? 3 : n <= 0xffffffff ? 5 : 9; }

class Reader {
public:
    explicit Reader(std::span<const uint8_t> data) : m_data(data) {}
    size_t left() const { return m_data.size() - m_pos; }
    bool Take(size_t n, std::span<const uint8_t>& out)
    {
        if (n > left()) return false;
        out = m_data.subspan(m_pos, n);
        m_pos += n;
        return true;
    }
    bool U8(uint8_t& v)
    {
        std::span<const uint8_t> s;
        if (!Take(1, s)) return false;
        v = s[0];
        return true;
    }
    bool UInt(size_t bytes, uint64_t& v)
    {
        std::span<const uint8_t> s;
        if (!Take(bytes, s)) return false;
        v = 0;
        for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(s[i]) << (8 * i);
        return true;
    }
    bool U32(uint32_t& v)
    {
        uint64_t x = 0;
        if (!UInt(4, x)) return false;
        v = static_cast<uint32_t>(x);
        return true;
    }
    // Non-canonical sizes are refused, as ReadCompactSize does.
    bool VarInt(uint64_t& v)
    {
        uint8_t first = 0;
        if (!U8(first)) return false;
        if (first < 0xfd) {
            v = first;
            return true;
        }
        const size_t bytes = first == 0xfd ? 2 : first == 0xfe ? 4 : 8;
        if (!UInt(bytes, v)) return false;
        const uint64_t floor = first == 0xfd ? 0xfd : first == 0xfe ? 0x10000 : 0x100000000ull;
        return v >= floor;
    }
    bool VarBytes(Bytes& out)
    {
        uint64_t n = 0;
        std::span<const uint8_t> s;
        if (!VarInt(n) || n > left() || !Take(static_cast<size_t>(n), s)) return false;
        out.assign(s.begin(), s.end());
        return true;
    }

private:
    std::span<const uint8_t> m_data;
    size_t m_pos{0};
};

bool ReadInputs(Reader& in, std::vector<TxIn>& vin)
{
    uint64_t count = 0;
    if (!in.VarInt(count) || count > kTxIoCountMax || count > in.left() / 41) return false;
    vin.resize(static_cast<size_t>(count));
    for (auto& input : vin) {
        std::span<const uint8_t> txid;
        if (!in.Take(32, txid) || !in.U32(input.prev.n) || !in.VarBytes(input.script_sig) || !in.U32(input.sequence)) {
            return false;
        }
        std::copy(txid.begin(), txid.end(), input.prev.txid.begin());
    }
    return true;
}

bool ReadOutputs(Reader& in, std::vector<TxOut>& vout)
{
    uint64_t count = 0;
    if (!in.VarInt(count) || count > kTxIoCountMax || count > in.left() / 9) return false;
    vout.resize(static_cast<size_t>(count));
    for (auto& output : vout) {
        uint64_t value = 0;
        if (!in.UInt(8, value) || !in.VarBytes(output.script)) return false;
        output.value = static_cast<int64_t>(value);
    }
    return true;
}

bool ReadWitnesses(Reader& in, std::vector<TxIn>& vin)
{
    for (auto& input : vin) {
        uint64_t items = 0;
        if (!in.VarInt(items) || items > in.left()) return false;
        input.witness.resize(static_cast<size_t>(items));
        for (auto& item : input.witness) {
            if (!in.VarBytes(item)) return false;
        }
    }
    return true;
}

// One form, as UnserializeTransaction reads it (flags after an empty input list).
std::optional<Tx> ParseTxForm(std::span<const uint8_t> bytes, bool allow_witness)
{
    Reader in(bytes);
    Tx tx;
    uint32_t version = 0;
    uint8_t flags = 0;
    if (!in.U32(version) || !ReadInputs(in, tx.vin)) return std::nullopt;
    tx.version = static_cast<int32_t>(version);
    if (tx.vin.empty() && allow_witness) {
        if (!in.U8(flags)) return std::nullopt;
        if (flags != 0 && (!ReadInputs(in, tx.vin) || !ReadOutputs(in, tx.vout))) return std::nullopt;
    } else if (!ReadOutputs(in, tx.vout)) {
        return std::nullopt;
    }
    if ((flags & 1) != 0 && allow_witness) {
        flags ^= 1;
        if (!ReadWitnesses(in, tx.vin) || !tx.HasWitness()) return std::nullopt; // superfluous witness record
    }
    if (flags != 0 || !in.U32(tx.lock_time) || in.left() != 0) return std::nullopt;
    Seal(tx);
    return tx;
}

// Regtest's target (nBits 0x207fffff): 7fffff followed by 29 zero bytes, big-endian.
bool MeetsTarget(const Hash256& hash)
{
    std::array<uint8_t, 32> target{};
    target[0] = 0x7f;
    target[1] = 0xff;
    target[2] = 0xff;
    for (size_t i = 0; i < 32; ++i) {
        const uint8_t byte = hash[31 - i];
        if (byte != target[i]) return byte < target[i];
    }
    return true;
}

constexpr std::string_view kBech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

uint32_t Bech32Polymod(const std::vector<uint8_t>& values)
{
    constexpr uint32_t kGen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t chk = 1;
    for (const uint8_t v : values) {
        const uint32_t top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ v;
        for (int i = 0; i < 5; ++i) chk ^= ((top >> i) & 1) != 0 ? kGen[i] : 0;
    }
    return chk;
}

Bytes Tagged(std::string_view tag, std::span<const uint8_t> a, std::span<const uint8_t> b = {})
{
    Bytes data(tag.begin(), tag.end());
    PutBytes(data, a);
    PutBytes(data, b);
    return data;
}

Hash256 Sha256Of(std::string_view text)
{
    return Sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// A DER-shaped ECDSA signature with SIGHASH_ALL: 71 bytes, low r and s.
Bytes FakeDerSignature(const Hash256& secret, const Hash256& msg)
{
    Hash256 r = Sha256(Tagged("r", secret, msg));
    Hash256 s = Sha256(Tagged("s", secret, msg));
    r[0] = static_cast<uint8_t>((r[0] & 0x7f) | 0x01);
    s[0] = static_cast<uint8_t>((s[0] & 0x3f) | 0x01);
    Bytes sig{0x30, 0x44, 0x02, 0x20};
    PutBytes(sig, r);
    sig.insert(sig.end(), {0x02, 0x20});
    PutBytes(sig, s);
    sig.push_back(0x01);
    return sig;
}

Bytes FakePubkey(const Hash256& secret)
{
    const Hash256 x = Sha256(Tagged("pub", secret));
    Bytes key{0x02};
    PutBytes(key, x);
    return key;
}

Bytes P2wpkh(const Hash256& h)
{
    Bytes script{0x00, 0x14};
    script.insert(script.end(), h.begin(), h.begin() + 20);
    return script;
}

Bytes P2pkh(const Hash256& h)
{
    Bytes script{0x76, 0xa9, 0x14};
    script.insert(script.end(), h.begin(), h.begin() + 20);
    script.insert(script.end(), {0x88, 0xac});
    return script;
}

// Maximum signed input sizes as the wallet estimates them: (non-witness bytes, witness bytes).
std::pair<size_t, size_t> InputSize(std::span<const uint8_t> script)
{
    switch (KindOf(script)) {
    case ScriptKind::P2tr: return {41, 67};
    case ScriptKind::P2pkh: return {148, 1};
    case ScriptKind::P2sh: return {64, 108};
    default: return {41, 108};
    }
}

} // namespace

bool Tx::HasWitness() const
{
    return std::any_of(vin.begin(), vin.end(), [](const TxIn& in) { return !in.witness.empty(); });
}
bool Tx::IsCoinbase() const { return vin.size() == 1 && vin[0].prev.txid == Hash256{} && vin[0].prev.n == 0xffffffff; }
int64_t Tx::ValueOut() const
{
    int64_t total = 0;
    for (const auto& out : vout) total += out.value;
    return total;
}

Bytes SerializeTx(const Tx& tx, bool witness)
{
    const bool with_witness = witness && tx.HasWitness();
    Bytes out;
    out.reserve(16 + tx.vin.size() * 150 + tx.vout.size() * 40);
    PutU32(out, static_cast<uint32_t>(tx.version));
    if (with_witness) out.insert(out.end(), {0x00, 0x01});
    PutVarInt(out, tx.vin.size());
    for (const auto& in : tx.vin) {
        PutBytes(out, in.prev.txid);
        PutU32(out, in.prev.n);
        PutVarBytes(out, in.script_sig);
        PutU32(out, in.sequence);
    }
    PutVarInt(out, tx.vout.size());
    for (const auto& o : tx.vout) {
        PutU64(out, static_cast<uint64_t>(o.value));
        PutVarBytes(out, o.script);
    }
    if (with_witness) {
        for (const auto& in : tx.vin) {
            PutVarInt(out, in.witness.size());
            for (const auto& item : in.witness) PutVarBytes(out, item);
        }
    }
    PutU32(out, tx.lock_time);
    return out;
}

void Seal(Tx& tx)
{
    tx.raw = SerializeTx(tx, true);
    const Bytes stripped = SerializeTx(tx, false);
    tx.txid = Sha256d(stripped);
    tx.wtxid = tx.HasWitness() ? Sha256d(tx.raw) : tx.txid;
    tx.stripped_size = stripped.size();
    tx.weight = stripped.size() * 3 + tx.raw.size();
    tx.vsize = (tx.weight + 3) / 4;
}

std::optional<Tx> DecodeTx(std::span<const uint8_t> bytes, bool try_witness, bool try_legacy)
{
    if (try_witness) {
        if (auto tx = ParseTxForm(bytes, true)) return tx;
    }
    if (try_legacy) return ParseTxForm(bytes, false);
    return std::nullopt;
}

Bytes PushData(std::span<const uint8_t> data)
{
    Bytes out;
    if (data.size() < 0x4c) {
        out.push_back(static_cast<uint8_t>(data.size()));
    } else if (data.size() <= 0xff) {
        out = {0x4c, static_cast<uint8_t>(data.size())};
    } else if (data.size() <= 0xffff) {
        out = {0x4d, static_cast<uint8_t>(data.size()), static_cast<uint8_t>(data.size() >> 8)};
    } else {
        out = {0x4e};
        PutU32(out, static_cast<uint32_t>(data.size()));
    }
    PutBytes(out, data);
    return out;
}

// CScript() << n: OP_0, OP_1NEGATE, OP_1..OP_16, or a minimal script number.
Bytes PushInt(int64_t n)
{
    if (n == 0) return {0x00};
    if (n == -1) return {0x4f};
    if (n >= 1 && n <= 16) return {static_cast<uint8_t>(0x50 + n)};
    Bytes num;
    const bool negative = n < 0;
    uint64_t abs = negative ? static_cast<uint64_t>(-n) : static_cast<uint64_t>(n);
    while (abs != 0) {
        num.push_back(static_cast<uint8_t>(abs & 0xff));
        abs >>= 8;
    }
    if ((num.back() & 0x80) != 0) {
        num.push_back(negative ? 0x80 : 0x00);
    } else if (negative) {
        num.back() |= 0x80;
    }
    return PushData(num);
}

std::string Display(const Hash256& hash) { return btc::HashToDisplay(hash); }

int64_t FeeFor(int64_t rate_sat_kvb, size_t vsize)
{
    if (rate_sat_kvb <= 0) return 0;
    const int64_t product = rate_sat_kvb * static_cast<int64_t>(vsize);
    return (product + 999) / 1000;
}

ScriptKind KindOf(std::span<const uint8_t> s)
{
    if (s.size() == 22 && s[0] == 0x00 && s[1] == 0x14) return ScriptKind::P2wpkh;
    if (s.size() == 34 && s[0] == 0x00 && s[1] == 0x20) return ScriptKind::P2wsh;
    if (s.size() == 34 && s[0] == 0x51 && s[1] == 0x20) return ScriptKind::P2tr;
    if (s.size() == 25 && s[0] == 0x76 && s[1] == 0xa9 && s[2] == 0x14 && s[23] == 0x88 && s[24] == 0xac) {
        return ScriptKind::P2pkh;
    }
    if (s.size() == 23 && s[0] == 0xa9 && s[1] == 0x14 && s[22] == 0x87) return ScriptKind::P2sh;
    if (!s.empty() && s[0] == 0x6a) return ScriptKind::NullData;
    return ScriptKind::NonStandard;
}

int64_t DustThreshold(std::span<const uint8_t> script)
{
    const ScriptKind kind = KindOf(script);
    if (kind == ScriptKind::NullData) return 0;
    size_t size = 8 + VarIntSize(script.size()) + script.size();
    const bool witness = kind == ScriptKind::P2wpkh || kind == ScriptKind::P2wsh || kind == ScriptKind::P2tr;
    size += witness ? (32 + 4 + 1 + 26 + 4) : (32 + 4 + 1 + 107 + 4);
    return static_cast<int64_t>(size) * kDustRelayFeeSatKvb / 1000;
}

std::string SegwitAddress(std::span<const uint8_t> script)
{
    const ScriptKind kind = KindOf(script);
    if (kind != ScriptKind::P2wpkh && kind != ScriptKind::P2wsh && kind != ScriptKind::P2tr) return "";
    const uint8_t version = kind == ScriptKind::P2tr ? 1 : 0;
    std::vector<uint8_t> data{version};
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 2; i < script.size(); ++i) {
        acc = (acc << 8) | script[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            data.push_back(static_cast<uint8_t>((acc >> bits) & 31));
        }
    }
    if (bits > 0) data.push_back(static_cast<uint8_t>((acc << (5 - bits)) & 31));
    const std::string hrp = "bcrt";
    std::vector<uint8_t> values;
    for (const char c : hrp) values.push_back(static_cast<uint8_t>(c >> 5));
    values.push_back(0);
    for (const char c : hrp) values.push_back(static_cast<uint8_t>(c & 31));
    values.insert(values.end(), data.begin(), data.end());
    values.insert(values.end(), 6, 0);
    const uint32_t constant = version == 0 ? 1 : 0x2bc830a3; // bech32, bech32m
    const uint32_t mod = Bech32Polymod(values) ^ constant;
    std::string out = hrp + "1";
    for (const uint8_t d : data) out.push_back(kBech32Charset[d]);
    for (int i = 0; i < 6; ++i) out.push_back(kBech32Charset[(mod >> (5 * (5 - i))) & 31]);
    return out;
}

std::string FormatMoney(int64_t sat)
{
    const uint64_t abs = sat < 0 ? static_cast<uint64_t>(-sat) : static_cast<uint64_t>(sat);
    std::string text = fmt::format("{}{}.{:08}", sat < 0 ? "-" : "", abs / kCoin, abs % kCoin);
    // As bitcoind: trailing zeros go, two decimals stay.
    while (text.size() > 2 && text.back() == '0' && std::isdigit(static_cast<unsigned char>(text[text.size() - 3])) != 0) {
        text.pop_back();
    }
    return text;
}

// Amounts are numbers with eight decimals in bitcoind's JSON ("fee": -0.00000890), which
// a double cannot hold: they travel as marked strings that DumpAnswer turns into numbers.
ojson Amount(int64_t sat)
{
    const uint64_t abs = sat < 0 ? static_cast<uint64_t>(-sat) : static_cast<uint64_t>(sat);
    return fmt::format("\x01{}{}.{:08}", sat < 0 ? "-" : "", abs / kCoin, abs % kCoin);
}

std::string DumpAnswer(const ojson& value)
{
    std::string text = value.dump();
    constexpr std::string_view kMark = "\"\\u0001";
    std::string out;
    out.reserve(text.size());
    size_t at = 0;
    for (size_t found = text.find(kMark); found != std::string::npos; found = text.find(kMark, at)) {
        out.append(text, at, found - at);
        const size_t end = text.find('"', found + kMark.size());
        out.append(text, found + kMark.size(), end - found - kMark.size());
        at = end + 1;
    }
    out.append(text, at, std::string::npos);
    return out;
}

// --- the chain ---

namespace {
constexpr std::string_view kGenesisCoinbaseHex =
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468"
    "652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261"
    "696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e0"
    "3909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";
constexpr uint32_t kGenesisTime = 1296688602;
constexpr uint32_t kGenesisNonce = 2;
constexpr uint64_t kFundingHeight = 102; // spends block 1's coinbase once it matured (100 blocks)
constexpr size_t kBackgroundMempoolMax = 2000; // other users stop sending while the mempool is this full

uint64_t StreamSeed(uint64_t seed, uint64_t stream) { return seed ^ (stream * 0x9e3779b97f4a7c15ull); }

std::array<uint8_t, 80> HeaderBytes(const Block& b, const Hash256& prev)
{
    Bytes out;
    PutU32(out, static_cast<uint32_t>(b.version));
    PutBytes(out, prev);
    PutBytes(out, b.merkle_root);
    PutU32(out, b.time);
    PutU32(out, kRegtestBits);
    PutU32(out, b.nonce);
    std::array<uint8_t, 80> header{};
    std::copy(out.begin(), out.end(), header.begin());
    return header;
}

// The header, its nonce ground until the hash meets the target (two tries on average),
// and the block's serialization.
void SealBlock(Block& b, const Hash256& prev, const std::vector<const Tx*>& txs)
{
    for (b.nonce = 0;; ++b.nonce) {
        b.header = HeaderBytes(b, prev);
        b.hash = Sha256d(b.header);
        if (MeetsTarget(b.hash)) break;
    }
    b.raw.assign(b.header.begin(), b.header.end());
    PutVarInt(b.raw, txs.size());
    b.stripped_size = b.raw.size();
    for (const Tx* tx : txs) {
        PutBytes(b.raw, tx->raw);
        b.stripped_size += tx->stripped_size;
    }
    b.weight = b.stripped_size * 3 + b.raw.size();
}
} // namespace

Node::Node(const BtcConfig& config)
    : cfg(config), chain_prng(StreamSeed(config.seed, 1)), wallet_prng(StreamSeed(config.seed, 2)),
      fault_prng(StreamSeed(config.seed, 3)), restart_prng(StreamSeed(config.seed, 4)), faults(config.faults)
{
    cfg.initial_blocks = std::max<uint32_t>(cfg.initial_blocks, 2);
    cfg.block_time_s = std::max<uint32_t>(cfg.block_time_s, 2);
    miner_script = P2wpkh(chain_prng.Hash());
    MakeGenesis();
    funding_height = std::min<uint64_t>(kFundingHeight, cfg.initial_blocks);
    for (uint64_t height = 1; height <= cfg.initial_blocks; ++height) {
        if (height == funding_height) FundWallet();
        MineBlock(true);
    }
}

void Node::MakeGenesis()
{
    const auto bytes = HexDecode(kGenesisCoinbaseHex);
    auto coinbase = DecodeTx(*bytes);
    assert(coinbase.has_value());
    Block genesis;
    genesis.version = 1;
    genesis.time = kGenesisTime;
    genesis.nonce = kGenesisNonce;
    genesis.merkle_root = coinbase->txid;
    genesis.txids = {coinbase->txid};
    genesis.header = HeaderBytes(genesis, Hash256{});
    genesis.hash = Sha256d(genesis.header);
    genesis.raw.assign(genesis.header.begin(), genesis.header.end());
    PutVarInt(genesis.raw, 1);
    PutBytes(genesis.raw, coinbase->raw);
    genesis.stripped_size = genesis.raw.size();
    genesis.weight = genesis.raw.size() * 4;
    txs.emplace(coinbase->txid, *coinbase);
    by_hash.emplace(genesis.hash, 0);
    blocks.push_back(std::move(genesis));
    canonical.push_back(0);
    confirmed[coinbase->txid] = {0, blocks[0].hash, 0};
}

// The wallet's coins: block 1's coinbase split into wallet_coins outputs of seeded amounts.
void Node::FundWallet()
{
    const Hash256 source = blocks[canonical[1]].txids[0];
    const int64_t input = txs.at(source).vout[0].value;
    Tx tx;
    const Hash256 miner_secret = Sha256(miner_script);
    tx.vin.push_back({Outpoint{source, 0}, {}, kSequenceFinalMinus1, {FakeDerSignature(miner_secret, source), FakePubkey(miner_secret)}});
    const uint32_t coins = std::max<uint32_t>(cfg.wallet_coins, 1);
    const int64_t cap = std::max<int64_t>((input - kCoin / 100) / coins, 1000);
    int64_t total = 0;
    for (uint32_t i = 0; i < coins; ++i) {
        Bytes script = P2wpkh(Sha256Of(fmt::format("bitacora-sim receive {} {}", cfg.seed, i)));
        wallet_keys[script] = WalletKey{Sha256(script), false};
        const int64_t lo = std::min(cfg.wallet_coin_sat_min, cap);
        const int64_t value = static_cast<int64_t>(chain_prng.Between(
            static_cast<uint64_t>(lo), static_cast<uint64_t>(std::clamp(cfg.wallet_coin_sat_max, lo, cap))));
        tx.vout.push_back({value, std::move(script)});
        total += value;
    }
    tx.vout.push_back({0, miner_script});
    Seal(tx);
    tx.vout.back().value = input - total - FeeFor(10'000, tx.vsize);
    Seal(tx);
    [[maybe_unused]] const auto rejected = Accept(tx, true, std::nullopt);
    assert(!rejected.has_value());
}

const Block* Node::FindBlock(const Hash256& hash) const
{
    const auto it = by_hash.find(hash);
    return it == by_hash.end() ? nullptr : &blocks[it->second];
}

bool Node::IsCanonical(const Block& block) const
{
    return block.height < canonical.size() && canonical[block.height] == block.index;
}

uint32_t Node::MedianTimePast(const Block& block) const
{
    std::vector<uint32_t> times;
    for (const Block* b = &block; b != nullptr && times.size() < 11;
         b = b->parent < 0 ? nullptr : &blocks[static_cast<size_t>(b->parent)]) {
        times.push_back(b->time);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

Tx Node::Coinbase(uint64_t height, int64_t fees, const std::vector<Hash256>& wtxids)
{
    Tx cb;
    TxIn in;
    in.prev = {Hash256{}, 0xffffffff};
    in.script_sig = PushInt(static_cast<int64_t>(height));
    const auto extra_nonce = chain_prng.Bytes<4>(); // branches at one height never share a coinbase
    PutBytes(in.script_sig, PushData(extra_nonce));
    in.sequence = kSequenceFinalMinus1;
    in.witness = {Bytes(32, 0)}; // the witness reserved value
    cb.vin.push_back(std::move(in));
    std::vector<Hash256> leaves{Hash256{}};
    leaves.insert(leaves.end(), wtxids.begin(), wtxids.end());
    Bytes commitment_input;
    PutBytes(commitment_input, btc::MerkleRoot(std::move(leaves)));
    commitment_input.resize(64, 0);
    Bytes commitment{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed};
    PutBytes(commitment, Sha256d(commitment_input));
    const uint64_t halvings = height / kHalvingInterval;
    const int64_t subsidy = halvings >= 64 ? 0 : (50 * kCoin) >> halvings;
    cb.vout.push_back({subsidy + fees, miner_script});
    cb.vout.push_back({0, std::move(commitment)});
    cb.lock_time = static_cast<uint32_t>(height - 1);
    Seal(cb);
    return cb;
}

std::vector<Hash256> Node::SelectForBlock(bool take_mempool) const
{
    std::vector<Hash256> ids;
    for (const auto& id : MempoolBySeq()) {
        if (take_mempool || mempool.at(id).background) ids.push_back(id);
    }
    std::stable_sort(ids.begin(), ids.end(), [&](const Hash256& a, const Hash256& b) {
        const auto& ea = mempool.at(a);
        const auto& eb = mempool.at(b);
        return ea.fee * static_cast<int64_t>(txs.at(b).vsize) > eb.fee * static_cast<int64_t>(txs.at(a).vsize);
    });
    std::vector<Hash256> chosen;
    std::unordered_set<Hash256, HashKey> placed;
    size_t vbytes = 0;
    // Parents first: a pass places what it can; another pass only if one did.
    for (bool progress = true; progress;) {
        progress = false;
        for (const auto& id : ids) {
            const Tx& tx = txs.at(id);
            if (placed.contains(id) || vbytes + tx.vsize > cfg.block_vbytes_max) continue;
            const auto parents = Parents(tx);
            if (!std::all_of(parents.begin(), parents.end(), [&](const Hash256& p) { return placed.contains(p); })) continue;
            placed.insert(id);
            chosen.push_back(id);
            vbytes += tx.vsize;
            progress = true;
        }
    }
    return chosen;
}

Hash256 Node::MineBlock(bool take_mempool)
{
    AddBackgroundTxs();
    const std::vector<Hash256> chosen = SelectForBlock(take_mempool);
    int64_t fees = 0;
    std::vector<Hash256> wtxids;
    std::vector<const Tx*> block_txs;
    for (const auto& id : chosen) {
        fees += mempool.at(id).fee;
        wtxids.push_back(txs.at(id).wtxid);
    }
    const Block& parent = Tip();
    Block b;
    b.index = static_cast<uint32_t>(blocks.size());
    b.parent = parent.index;
    b.height = parent.height + 1;
    const Hash256 prev = parent.hash;
    const uint32_t spacing = static_cast<uint32_t>(chain_prng.Between(cfg.block_time_s / 2, cfg.block_time_s * 3 / 2));
    b.time = std::max(MedianTimePast(parent) + 1, parent.height == 0 ? cfg.start_time : parent.time + spacing);
    Tx cb = Coinbase(b.height, fees, wtxids);
    b.txids.push_back(cb.txid);
    b.txids.insert(b.txids.end(), chosen.begin(), chosen.end());
    b.merkle_root = btc::MerkleRoot(b.txids);
    const Hash256 cb_txid = cb.txid;
    txs.emplace(cb_txid, std::move(cb));
    for (const auto& id : b.txids) block_txs.push_back(&txs.at(id));
    SealBlock(b, prev, block_txs);
    const Hash256 hash = b.hash;
    by_hash.emplace(hash, b.index);
    blocks.push_back(std::move(b));
    Connect(blocks.back().index);
    ++stats.blocks_mined;
    return hash;
}

void Node::Connect(uint32_t index)
{
    const Block& b = blocks[index];
    assert(b.parent == static_cast<int64_t>(canonical.back()));
    canonical.push_back(index);
    for (uint32_t pos = 0; pos < b.txids.size(); ++pos) {
        const Hash256& txid = b.txids[pos];
        confirmed[txid] = {b.height, b.hash, pos};
        const Tx& tx = txs.at(txid);
        if (mempool.contains(txid)) RemoveOne(txid);
        if (!tx.IsCoinbase()) {
            for (const auto& in : tx.vin) {
                chain_spends[in.prev] = txid;
                // What else spent it conflicts with the block: out, with its descendants.
                const auto other = mempool_spends.find(in.prev);
                if (other != mempool_spends.end()) RemoveRecursive(Hash256(other->second));
            }
        }
        WalletNotify(tx);
    }
}

std::vector<Hash256> Node::DisconnectTip()
{
    assert(canonical.size() > 1);
    const Block& b = blocks[canonical.back()];
    for (size_t pos = 0; pos < b.txids.size(); ++pos) {
        const Hash256& txid = b.txids[pos];
        const Tx& tx = txs.at(txid);
        if (!tx.IsCoinbase()) {
            for (const auto& in : tx.vin) {
                const auto it = chain_spends.find(in.prev);
                if (it != chain_spends.end() && it->second == txid) chain_spends.erase(it);
            }
        }
        confirmed.erase(txid);
    }
    canonical.pop_back();
    return {b.txids.begin() + 1, b.txids.end()};
}

BtcReorgReport Node::Reorg(uint32_t depth, bool keep_mempool_txs, uint32_t new_blocks)
{
    BtcReorgReport report;
    // Blocks without data (pruned) cannot be disconnected, and the wallet's coins stay.
    const uint64_t floor = std::max<uint64_t>({funding_height + 1, prune_below, 1});
    const uint64_t depth_max = Height() >= floor ? Height() - floor + 1 : 0;
    if (depth > depth_max) {
        depth = static_cast<uint32_t>(depth_max);
        report.clamped = true;
    }
    if (depth == 0) return report;
    report.fork_height = Height() - depth + 1;
    std::vector<std::vector<Hash256>> out_of_blocks;
    for (uint32_t i = 0; i < depth; ++i) out_of_blocks.push_back(DisconnectTip());
    report.disconnected = depth;
    for (auto block = out_of_blocks.rbegin(); block != out_of_blocks.rend(); ++block) {
        for (const auto& txid : *block) {
            // As MaybeUpdateMempoolForReorg: back in with bypass_limits, unless forgotten.
            const Tx tx = txs.at(txid);
            const bool back = keep_mempool_txs && !Accept(tx, true, std::nullopt).has_value();
            ++(back ? report.txs_returned : report.txs_dropped);
            const bool background = std::all_of(tx.vin.begin(), tx.vin.end(), [&](const TxIn& in) { return foreign.contains(in.prev); });
            if (back && background) mempool.at(txid).background = true;
        }
    }
    EvictInvalid();
    const uint32_t count = new_blocks != 0 ? new_blocks : depth + 1;
    for (uint32_t i = 0; i < count; ++i) MineBlock(chain_prng.Chance(0.5));
    report.connected = count;
    return report;
}

void Node::Restart(bool forget_mempool)
{
    if (forget_mempool) {
        mempool.clear();
        mempool_spends.clear();
    }
    wallet_loaded = false;
    down_left = static_cast<uint32_t>(restart_prng.Between(0, cfg.restart_down_requests_max));
    warmup_left = static_cast<uint32_t>(restart_prng.Between(0, cfg.restart_warmup_requests_max));
    ++stats.restarts;
}

void Node::Prune(uint64_t height)
{
    const uint64_t limit = std::min(height, Height()); // the tip keeps its data
    if (limit <= prune_below) return;
    for (auto& b : blocks) {
        if (b.height >= 1 && b.height < limit) b.have_data = false;
    }
    prune_below = limit;
}

// --- other users' transactions ---

Tx Node::BackgroundTx()
{
    Tx tx;
    const uint64_t inputs = chain_prng.Between(1, 2);
    int64_t value_in = 0;
    const bool legacy = chain_prng.Chance(0.2);
    for (uint64_t i = 0; i < inputs; ++i) {
        const Outpoint op{chain_prng.Hash(), static_cast<uint32_t>(chain_prng.Below(4))};
        const auto value = static_cast<int64_t>(chain_prng.Between(100'000, 5 * kCoin));
        const Hash256 secret = chain_prng.Hash();
        TxIn in{op, {}, chain_prng.Chance(0.5) ? kSequenceRbf : kSequenceFinal, {}};
        if (legacy) {
            in.script_sig = PushData(FakeDerSignature(secret, op.txid));
            PutBytes(in.script_sig, PushData(FakePubkey(secret)));
            foreign[op] = {value, P2pkh(secret)};
        } else {
            in.witness = {FakeDerSignature(secret, op.txid), FakePubkey(secret)};
            foreign[op] = {value, P2wpkh(secret)};
        }
        value_in += value;
        tx.vin.push_back(std::move(in));
    }
    const uint64_t outputs = chain_prng.Between(1, 3);
    for (uint64_t i = 0; i < outputs; ++i) {
        const Hash256 h = chain_prng.Hash();
        Bytes script;
        switch (chain_prng.Below(4)) {
        case 0: script = P2wpkh(h); break;
        case 1: script = {0x51, 0x20}; script.insert(script.end(), h.begin(), h.end()); break;
        case 2: script = P2pkh(h); break;
        default: script = {0xa9, 0x14}; script.insert(script.end(), h.begin(), h.begin() + 20); script.push_back(0x87); break;
        }
        tx.vout.push_back({0, std::move(script)});
    }
    if (chain_prng.Chance(cfg.background_op_return_probability)) {
        // Some look like another instance's anchors ("BTCR" 0x01 …): never ours.
        Bytes data = chain_prng.Chance(0.3) ? Bytes{'B', 'T', 'C', 'R', 0x01} : Bytes{};
        const size_t extra = chain_prng.Below(data.empty() ? 81 : 41);
        for (size_t i = 0; i < extra; ++i) data.push_back(static_cast<uint8_t>(chain_prng.Next()));
        Bytes script{0x6a};
        PutBytes(script, PushData(data));
        tx.vout.insert(tx.vout.begin() + static_cast<ptrdiff_t>(chain_prng.Below(tx.vout.size() + 1)), {0, std::move(script)});
    }
    Seal(tx); // the vsize does not depend on the values
    const int64_t fee = FeeFor(static_cast<int64_t>(chain_prng.Between(1'000, 60'000)), tx.vsize);
    int64_t left = value_in - fee;
    const size_t paid = static_cast<size_t>(std::count_if(tx.vout.begin(), tx.vout.end(),
                                                          [](const TxOut& o) { return KindOf(o.script) != ScriptKind::NullData; }));
    for (auto& out : tx.vout) {
        if (KindOf(out.script) == ScriptKind::NullData) continue;
        out.value = left / static_cast<int64_t>(paid);
    }
    Seal(tx);
    return tx;
}

void Node::AddBackgroundTxs()
{
    const uint64_t count = chain_prng.Between(0, cfg.background_txs_max);
    for (uint64_t i = 0; i < count && mempool.size() < kBackgroundMempoolMax; ++i) {
        const Tx tx = BackgroundTx();
        if (!Accept(tx, false, std::nullopt)) mempool.at(tx.txid).background = true;
    }
}

// --- the mempool ---

const TxOut* Node::Coin(const Outpoint& op) const
{
    if (const auto it = foreign.find(op); it != foreign.end()) return &it->second;
    const auto tx = txs.find(op.txid);
    if (tx == txs.end() || op.n >= tx->second.vout.size()) return nullptr;
    if (!confirmed.contains(op.txid) && !mempool.contains(op.txid)) return nullptr;
    return &tx->second.vout[op.n];
}

std::vector<Hash256> Node::MempoolBySeq() const
{
    std::vector<std::pair<uint64_t, Hash256>> order;
    order.reserve(mempool.size());
    for (const auto& [txid, entry] : mempool) order.emplace_back(entry.seq, txid);
    std::sort(order.begin(), order.end());
    std::vector<Hash256> out;
    out.reserve(order.size());
    for (const auto& item : order) out.push_back(item.second);
    return out;
}

std::vector<Hash256> Node::Parents(const Tx& tx) const
{
    std::vector<Hash256> out;
    for (const auto& in : tx.vin) {
        if (mempool.contains(in.prev.txid) && std::find(out.begin(), out.end(), in.prev.txid) == out.end()) {
            out.push_back(in.prev.txid);
        }
    }
    return out;
}

std::vector<Hash256> Node::Children(const Hash256& txid) const
{
    std::vector<Hash256> out;
    const auto tx = txs.find(txid);
    if (tx == txs.end() || !mempool.contains(txid)) return out;
    for (uint32_t n = 0; n < tx->second.vout.size(); ++n) {
        const auto child = mempool_spends.find(Outpoint{txid, n});
        if (child != mempool_spends.end() && std::find(out.begin(), out.end(), child->second) == out.end()) {
            out.push_back(child->second);
        }
    }
    return out;
}

std::vector<Hash256> Node::Descendants(const Hash256& txid) const
{
    std::vector<Hash256> out;
    for (size_t i = 0; i <= out.size() && out.size() <= kMempoolTxsMax; ++i) {
        const Hash256 at = i == 0 ? txid : out[i - 1];
        for (const auto& child : Children(at)) {
            if (child != txid && std::find(out.begin(), out.end(), child) == out.end()) out.push_back(child);
        }
    }
    return out;
}

std::vector<Hash256> Node::Ancestors(const Hash256& txid) const
{
    std::vector<Hash256> out;
    for (size_t i = 0; i <= out.size() && out.size() <= kMempoolTxsMax; ++i) {
        const Hash256 at = i == 0 ? txid : out[i - 1];
        if (!mempool.contains(at)) continue;
        for (const auto& parent : Parents(txs.at(at))) {
            if (parent != txid && std::find(out.begin(), out.end(), parent) == out.end()) out.push_back(parent);
        }
    }
    return out;
}

void Node::RemoveOne(const Hash256& txid)
{
    const auto it = mempool.find(txid);
    if (it == mempool.end()) return;
    for (const auto& in : txs.at(txid).vin) {
        const auto spend = mempool_spends.find(in.prev);
        if (spend != mempool_spends.end() && spend->second == txid) mempool_spends.erase(spend);
    }
    mempool.erase(it);
}

void Node::RemoveRecursive(const Hash256& txid)
{
    const auto descendants = Descendants(txid);
    RemoveOne(txid);
    for (const auto& d : descendants) RemoveOne(d);
}

void Node::EvictInvalid()
{
    for (bool changed = true; changed;) {
        changed = false;
        for (const auto& txid : MempoolBySeq()) {
            if (!mempool.contains(txid)) continue;
            const Tx& tx = txs.at(txid);
            const bool invalid = std::any_of(tx.vin.begin(), tx.vin.end(), [&](const TxIn& in) {
                return Coin(in.prev) == nullptr || chain_spends.contains(in.prev);
            });
            if (invalid) {
                RemoveRecursive(txid);
                changed = true;
            }
        }
    }
}

std::optional<TxReject> Node::CheckStandard(const Tx& tx) const
{
    const auto reject = [](std::string reason) { return TxReject{TxReject::Kind::Invalid, std::move(reason)}; };
    if (tx.vin.empty()) return reject("bad-txns-vin-empty");
    if (tx.vout.empty()) return reject("bad-txns-vout-empty");
    if (tx.stripped_size * 4 > btc::kBlockBytesMax) return reject("bad-txns-oversize");
    int64_t total = 0;
    for (const auto& out : tx.vout) {
        if (out.value < 0) return reject("bad-txns-vout-negative");
        if (out.value > kMaxMoneySat) return reject("bad-txns-vout-toolarge");
        total += out.value;
        if (total > kMaxMoneySat) return reject("bad-txns-txouttotal-toolarge");
    }
    std::vector<Outpoint> prevs;
    for (const auto& in : tx.vin) prevs.push_back(in.prev);
    std::sort(prevs.begin(), prevs.end());
    if (std::adjacent_find(prevs.begin(), prevs.end()) != prevs.end()) return reject("bad-txns-inputs-duplicate");
    if (tx.IsCoinbase()) return reject("coinbase");
    if (tx.version < 1 || tx.version > 3) return reject("version");
    if (tx.weight > 400'000) return reject("tx-size");
    if (tx.stripped_size < 65) return reject("tx-size-small");
    for (const auto& in : tx.vin) {
        if (in.script_sig.size() > 1650) return reject("scriptsig-size");
    }
    for (const auto& out : tx.vout) {
        const ScriptKind kind = KindOf(out.script);
        if (kind == ScriptKind::NonStandard) return reject("scriptpubkey");
        if (kind != ScriptKind::NullData && out.value < DustThreshold(out.script)) return reject("dust");
    }
    const uint64_t height = Height() + 1;
    const bool final = tx.lock_time == 0 ||
                       tx.lock_time < (tx.lock_time < 500'000'000 ? height : MedianTimePast(Tip())) ||
                       std::all_of(tx.vin.begin(), tx.vin.end(), [](const TxIn& in) { return in.sequence == kSequenceFinal; });
    if (!final) return reject("non-final");
    return std::nullopt;
}

// The shapes a signature check would need (the signatures themselves are not checked).
std::optional<TxReject> Node::CheckWitnesses(const Tx& tx) const
{
    for (const auto& in : tx.vin) {
        if (foreign.contains(in.prev)) continue;
        const TxOut* coin = Coin(in.prev);
        std::string error;
        switch (KindOf(coin->script)) {
        case ScriptKind::P2wpkh:
            if (in.witness.empty()) error = "Witness program was passed an empty witness";
            else if (in.witness.size() != 2 || in.witness[1].size() != 33) error = "Witness program hash mismatch";
            break;
        case ScriptKind::P2tr:
            if (in.witness.empty()) error = "Witness program was passed an empty witness";
            else if (in.witness[0].size() != 64 && in.witness[0].size() != 65) error = "Invalid Schnorr signature";
            break;
        case ScriptKind::P2pkh:
            if (!in.witness.empty()) error = "Witness provided for non-witness script";
            else if (in.script_sig.empty()) error = "Operation not valid with the current stack size";
            break;
        default: break;
        }
        if (!error.empty()) return TxReject{TxReject::Kind::Invalid, "mempool-script-verify-flag-failed (" + error + ")"};
    }
    return std::nullopt;
}

std::optional<TxReject> Node::CheckReplacement(const Tx& tx, int64_t fee, const std::vector<Hash256>& conflicts,
                                               const std::vector<Hash256>& all_conflicts) const
{
    const auto reject = [](std::string reason) { return TxReject{TxReject::Kind::Invalid, std::move(reason)}; };
    const std::string txid = Display(tx.txid);
    if (all_conflicts.size() > 100) {
        return reject(fmt::format("too many potential replacements, rejecting replacement {}; too many potential "
                                  "replacements ({} > 100)", txid, all_conflicts.size()));
    }
    int64_t old_fees = 0;
    for (const auto& t : all_conflicts) old_fees += mempool.at(t).fee;
    if (fee < old_fees) {
        return reject(fmt::format("insufficient fee, rejecting replacement {}, less fees than conflicting txs; {} < {}",
                                  txid, FormatMoney(fee), FormatMoney(old_fees)));
    }
    const int64_t needed = FeeFor(kIncrementalRelayFeeSatKvb, tx.vsize);
    if (fee - old_fees < needed) {
        return reject(fmt::format("insufficient fee, rejecting replacement {}, not enough additional fees to relay; "
                                  "{} < {}", txid, FormatMoney(fee - old_fees), FormatMoney(needed)));
    }
    for (const auto& c : conflicts) {
        const int64_t old_vsize = static_cast<int64_t>(txs.at(c).vsize);
        if (fee * old_vsize <= mempool.at(c).fee * static_cast<int64_t>(tx.vsize)) {
            return reject("insufficient feerate: does not improve feerate diagram");
        }
    }
    return std::nullopt;
}

// AcceptToMemoryPool, in its order of checks (btc_double.py's accept_to_mempool).
std::optional<TxReject> Node::Accept(const Tx& tx, bool bypass_limits, std::optional<int64_t> max_fee_rate_sat_kvb)
{
    const auto reject = [](std::string reason) { return TxReject{TxReject::Kind::Invalid, std::move(reason)}; };
    if (auto bad = CheckStandard(tx)) return bad;
    if (const auto it = mempool.find(tx.txid); it != mempool.end()) {
        return reject(txs.at(tx.txid).wtxid == tx.wtxid ? "txn-already-in-mempool" : "txn-same-nonwitness-data-in-mempool");
    }
    if (mempool.size() >= kMempoolTxsMax) return reject("mempool full");
    std::vector<Hash256> conflicts;
    bool missing = false;
    int64_t value_in = 0;
    for (const auto& in : tx.vin) {
        const auto other = mempool_spends.find(in.prev);
        if (other != mempool_spends.end() && std::find(conflicts.begin(), conflicts.end(), other->second) == conflicts.end()) {
            conflicts.push_back(other->second);
        }
        const TxOut* coin = Coin(in.prev);
        if (coin == nullptr || chain_spends.contains(in.prev)) missing = true;
        else value_in += coin->value;
    }
    if (missing) {
        if (confirmed.contains(tx.txid)) return reject("txn-already-known");
        return TxReject{TxReject::Kind::MissingInputs, "bad-txns-inputs-missingorspent"};
    }
    std::vector<Hash256> all_conflicts;
    for (const auto& c : conflicts) {
        if (std::find(all_conflicts.begin(), all_conflicts.end(), c) == all_conflicts.end()) all_conflicts.push_back(c);
        for (const auto& d : Descendants(c)) {
            if (std::find(all_conflicts.begin(), all_conflicts.end(), d) == all_conflicts.end()) all_conflicts.push_back(d);
        }
    }
    for (const auto& in : tx.vin) {
        if (std::find(all_conflicts.begin(), all_conflicts.end(), in.prev.txid) != all_conflicts.end()) {
            return reject("bad-txns-spends-conflicting-tx");
        }
    }
    if (value_in < tx.ValueOut()) {
        return reject(fmt::format("bad-txns-in-belowout, value in ({}) < value out ({})", FormatMoney(value_in),
                                  FormatMoney(tx.ValueOut())));
    }
    const int64_t fee = value_in - tx.ValueOut();
    const int64_t min_fee = FeeFor(kMinRelayFeeSatKvb, tx.vsize);
    if (!bypass_limits && fee < min_fee) return reject(fmt::format("min relay fee not met, {} < {}", fee, min_fee));
    if (!all_conflicts.empty()) {
        if (auto bad = CheckReplacement(tx, fee, conflicts, all_conflicts)) return bad;
    }
    if (auto bad = CheckWitnesses(tx)) return bad;
    if (max_fee_rate_sat_kvb && *max_fee_rate_sat_kvb > 0 && fee > FeeFor(*max_fee_rate_sat_kvb, tx.vsize)) {
        return TxReject{TxReject::Kind::MaxFee, "max-fee-exceeded"};
    }
    for (const auto& t : all_conflicts) RemoveOne(t);
    Commit(tx, fee, all_conflicts);
    return std::nullopt;
}

void Node::Commit(const Tx& tx, int64_t fee, const std::vector<Hash256>& replaced)
{
    auto [it, inserted] = txs.try_emplace(tx.txid, tx);
    if (!inserted && !confirmed.contains(tx.txid)) it->second = tx; // the witness may differ
    mempool[tx.txid] = MempoolEntry{fee, Now(), Height(), ++mempool_seq, true, false};
    for (const auto& in : tx.vin) mempool_spends[in.prev] = tx.txid;
    WalletNotify(tx);
    for (const auto& r : replaced) MarkReplaced(r, tx.txid);
    ++stats.txs_accepted;
    if (!replaced.empty()) ++stats.replacements;
}

// --- the wallet ---

bool Node::IsMine(std::span<const uint8_t> script) const { return wallet_keys.contains(Bytes(script.begin(), script.end())); }

bool Node::IsChange(std::span<const uint8_t> script) const
{
    const auto it = wallet_keys.find(Bytes(script.begin(), script.end()));
    return it != wallet_keys.end() && it->second.change;
}

// Every transaction is seen, loaded or not (a wallet rescans what it missed when loaded).
void Node::WalletNotify(const Tx& tx)
{
    bool relevant = std::any_of(tx.vout.begin(), tx.vout.end(), [&](const TxOut& o) { return IsMine(o.script); });
    if (!relevant && !tx.IsCoinbase()) relevant = Debit(tx) > 0;
    if (!relevant) return;
    auto [it, inserted] = wallet_txs.try_emplace(tx.txid);
    if (!inserted) return;
    it->second.order = ++wallet_order;
    it->second.time = Now();
    if (tx.IsCoinbase()) return;
    for (const auto& in : tx.vin) wallet_spends[in.prev].push_back(tx.txid);
}

void Node::MarkReplaced(const Hash256& old_txid, const Hash256& new_txid)
{
    const auto old_tx = wallet_txs.find(old_txid);
    const auto new_tx = wallet_txs.find(new_txid);
    if (old_tx == wallet_txs.end() || new_tx == wallet_txs.end() || old_tx->second.replaced_by) return;
    old_tx->second.replaced_by = new_txid;
    if (!new_tx->second.replaces) new_tx->second.replaces = old_txid;
}

// Confirmations; negative: conflicted by a transaction that many blocks deep.
int64_t Node::Depth(const Hash256& txid, int level) const
{
    if (const auto loc = confirmed.find(txid); loc != confirmed.end()) return static_cast<int64_t>(Height() - loc->second.height) + 1;
    const auto tx = txs.find(txid);
    if (tx == txs.end() || tx->second.IsCoinbase()) return 0;
    std::optional<uint64_t> deepest;
    for (const auto& in : tx->second.vin) {
        const auto spender = chain_spends.find(in.prev);
        if (spender == chain_spends.end() || spender->second == txid) continue;
        const uint64_t height = confirmed.at(spender->second).height;
        deepest = deepest ? std::min(*deepest, height) : height;
    }
    if (deepest) return -(static_cast<int64_t>(Height() - *deepest) + 1);
    if (level < 32) {
        for (const auto& in : tx->second.vin) {
            if (!wallet_txs.contains(in.prev.txid) || confirmed.contains(in.prev.txid)) continue;
            if (const int64_t d = Depth(in.prev.txid, level + 1); d < 0) return d;
        }
    }
    return 0;
}

bool Node::Trusted(const Hash256& txid, int level) const
{
    const int64_t d = Depth(txid);
    if (d >= 1) return true;
    if (d < 0 || !mempool.contains(txid) || level > 32) return false;
    for (const auto& in : txs.at(txid).vin) {
        const auto parent = txs.find(in.prev.txid);
        if (!wallet_txs.contains(in.prev.txid) || parent == txs.end() || in.prev.n >= parent->second.vout.size() ||
            !IsMine(parent->second.vout[in.prev.n].script)) {
            return false;
        }
        if (!Trusted(in.prev.txid, level + 1)) return false;
    }
    return true;
}

int64_t Node::Debit(const Tx& tx) const
{
    int64_t total = 0;
    for (const auto& in : tx.vin) {
        const auto parent = txs.find(in.prev.txid);
        if (parent == txs.end() || in.prev.n >= parent->second.vout.size()) continue;
        const TxOut& out = parent->second.vout[in.prev.n];
        if (IsMine(out.script)) total += out.value;
    }
    return total;
}

bool Node::WalletSpent(const Outpoint& op) const
{
    if (chain_spends.contains(op) || mempool_spends.contains(op)) return true;
    const auto spenders = wallet_spends.find(op);
    if (spenders == wallet_spends.end()) return false;
    return std::any_of(spenders->second.begin(), spenders->second.end(), [&](const Hash256& t) { return Depth(t) >= 0; });
}

std::vector<std::pair<Outpoint, TxOut>> Node::AvailableCoins() const
{
    std::vector<std::pair<uint64_t, Hash256>> order;
    for (const auto& [txid, wtx] : wallet_txs) order.emplace_back(wtx.order, txid);
    std::sort(order.begin(), order.end());
    std::vector<std::pair<Outpoint, TxOut>> out;
    for (const auto& [_, txid] : order) {
        const int64_t d = Depth(txid);
        if (d < 0 || (d == 0 && !Trusted(txid))) continue;
        const Tx& tx = txs.at(txid);
        if (tx.IsCoinbase() && d < 100) continue;
        for (uint32_t n = 0; n < tx.vout.size(); ++n) {
            if (IsMine(tx.vout[n].script) && !WalletSpent({txid, n})) out.emplace_back(Outpoint{txid, n}, tx.vout[n]);
        }
    }
    return out;
}

int64_t Node::Balance() const
{
    int64_t total = 0;
    for (const auto& coin : AvailableCoins()) total += coin.second.value;
    return total;
}

// Change pays to a new taproot key (bech32m, as bitcoind picks for an OP_RETURN-only spend).
Bytes Node::ChangeScript(uint32_t index) const
{
    const Hash256 key = Sha256Of(fmt::format("bitacora-sim change {} {}", cfg.seed, index));
    Bytes script{0x51, 0x20};
    PutBytes(script, key);
    return script;
}

namespace {

using Candidate = std::pair<Outpoint, TxOut>;
using InputSizes = std::vector<std::pair<size_t, size_t>>;

// What coin selection weighs: the fee at `rate` of the inputs chosen, with or without change.
struct Selection {
    InputSizes preset_sizes;
    int64_t preset_value{0};
    int64_t recipients{0};
    size_t outputs{0};
    size_t out_bytes{0};
    size_t change_bytes{0};
    int64_t change_dust{0};
    int64_t rate{0};

    size_t VSize(const InputSizes& sizes, bool with_change) const
    {
        size_t nonwit = 8 + VarIntSize(sizes.size()) + VarIntSize(outputs + (with_change ? 1 : 0)) + out_bytes +
                        (with_change ? change_bytes : 0);
        size_t witness = 0;
        bool segwit = false;
        for (const auto& [base, wit] : sizes) {
            nonwit += base;
            witness += wit;
            segwit = segwit || wit > 1;
        }
        return (nonwit * 4 + (segwit ? 2 + witness : 0) + 3) / 4;
    }
    // (fee, change) when the coins pay for it all; change 0: none (the rest goes to the fee).
    std::optional<std::pair<int64_t, int64_t>> Evaluate(const std::vector<Candidate>& selected) const
    {
        InputSizes sizes = preset_sizes;
        int64_t total = preset_value;
        for (const auto& c : selected) {
            sizes.push_back(InputSize(c.second.script));
            total += c.second.value;
        }
        const int64_t fee_change = FeeFor(rate, VSize(sizes, true));
        const int64_t change = total - recipients - fee_change;
        if (change >= change_dust) return std::make_pair(fee_change, change);
        if (total - recipients >= FeeFor(rate, VSize(sizes, false))) return std::make_pair(total - recipients, int64_t{0});
        return std::nullopt;
    }
};

// The preset inputs alone if they pay; else the cheapest single coin that pays (the
// smallest of those); else the largest coins until they pay.
std::optional<std::vector<Candidate>> Choose(const Selection& sel, bool has_preset, std::vector<Candidate> candidates)
{
    if (has_preset && sel.Evaluate({})) return std::vector<Candidate>{};
    std::vector<Candidate> singles;
    for (const auto& c : candidates) {
        if (sel.Evaluate({c})) singles.push_back(c);
    }
    if (!singles.empty()) {
        std::sort(singles.begin(), singles.end(), [](const Candidate& a, const Candidate& b) {
            const auto sa = InputSize(a.second.script), sb = InputSize(b.second.script);
            const size_t wa = sa.first * 4 + sa.second, wb = sb.first * 4 + sb.second;
            if (wa != wb) return wa < wb;
            if (a.second.value != b.second.value) return a.second.value < b.second.value;
            return a.first < b.first;
        });
        return std::vector<Candidate>{singles.front()};
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
        return a.second.value != b.second.value ? a.second.value > b.second.value : a.first < b.first;
    });
    std::vector<Candidate> acc;
    for (const auto& c : candidates) {
        acc.push_back(c);
        if (sel.Evaluate(acc)) return acc;
    }
    return std::nullopt;
}

} // namespace

// The wallet's coins a new spend of tmpl's inputs may add: not the preset ones, nor what
// a transaction spending them made (bumpfee's original and its change).
std::vector<std::pair<Outpoint, TxOut>> Node::FundingCandidates(const Tx& tmpl) const
{
    std::vector<Hash256> conflicting;
    for (const auto& in : tmpl.vin) {
        if (const auto it = wallet_spends.find(in.prev); it != wallet_spends.end()) {
            conflicting.insert(conflicting.end(), it->second.begin(), it->second.end());
        }
    }
    std::vector<Candidate> candidates;
    for (auto& coin : AvailableCoins()) {
        const bool preset = std::any_of(tmpl.vin.begin(), tmpl.vin.end(), [&](const TxIn& in) { return in.prev == coin.first; });
        const bool made_by_conflict = std::find(conflicting.begin(), conflicting.end(), coin.first.txid) != conflicting.end();
        if (!preset && !made_by_conflict) candidates.push_back(std::move(coin));
    }
    return candidates;
}

// fundrawtransaction's coin selection, as btc_double.py's Wallet.fund does it.
Funded Node::Fund(const Tx& tmpl, int64_t rate, bool replaceable)
{
    Selection sel;
    sel.rate = rate;
    for (const auto& in : tmpl.vin) {
        const TxOut* coin = Coin(in.prev);
        if (coin == nullptr) throw RpcError{-4, "Unable to find UTXO for external input"};
        sel.preset_sizes.push_back(InputSize(coin->script));
        sel.preset_value += coin->value;
    }
    for (const auto& o : tmpl.vout) {
        if (o.value < 0) throw RpcError{-4, "Transaction amounts must not be negative"};
        if (o.value < DustThreshold(o.script)) throw RpcError{-4, "Transaction amount too small"};
        sel.recipients += o.value;
        sel.out_bytes += 8 + VarIntSize(o.script.size()) + o.script.size();
    }
    sel.outputs = tmpl.vout.size();
    if (sel.recipients == 0 && rate == 0 && tmpl.vin.empty()) {
        throw RpcError{-4, "Transaction requires one destination of non-zero value, a non-zero feerate, or a pre-selected input"};
    }
    const Bytes change_script = ChangeScript(next_change);
    sel.change_bytes = 8 + 1 + change_script.size();
    sel.change_dust = DustThreshold(change_script);
    const auto candidates = FundingCandidates(tmpl);
    const auto selected = Choose(sel, !tmpl.vin.empty(), candidates);
    if (!selected) {
        int64_t available = sel.preset_value;
        for (const auto& c : candidates) available += c.second.value;
        if (available < sel.recipients) throw RpcError{-4, "Insufficient funds"};
        const int64_t not_input_fees = FeeFor(rate, 10 + VarIntSize(sel.outputs) + sel.out_bytes);
        throw RpcError{-4, fmt::format("The total exceeds your balance when the {} transaction fee is included.",
                                       FormatMoney(not_input_fees))};
    }
    const auto [fee, change] = *sel.Evaluate(*selected);
    Funded funded;
    funded.tx = tmpl;
    for (const auto& c : *selected) funded.tx.vin.push_back({c.first, {}, replaceable ? kSequenceRbf : kSequenceFinalMinus1, {}});
    if (change > 0) {
        const auto pos = static_cast<size_t>(wallet_prng.Below(funded.tx.vout.size() + 1)); // bitcoind places it at random
        funded.tx.vout.insert(funded.tx.vout.begin() + static_cast<ptrdiff_t>(pos), {change, change_script});
        funded.changepos = static_cast<int>(pos);
        wallet_keys[change_script] = WalletKey{Sha256(change_script), true};
        ++next_change;
    }
    funded.fee = fee;
    Seal(funded.tx);
    return funded;
}

size_t Node::EstimateVsize(const Tx& tx) const
{
    size_t nonwit = 8 + VarIntSize(tx.vin.size()) + VarIntSize(tx.vout.size());
    size_t witness = 0;
    bool segwit = false;
    for (const auto& in : tx.vin) {
        const TxOut* coin = Coin(in.prev);
        const auto [base, wit] = coin != nullptr ? InputSize(coin->script) : std::pair<size_t, size_t>{41, 108};
        nonwit += base;
        witness += wit;
        segwit = segwit || wit > 1;
    }
    for (const auto& o : tx.vout) nonwit += 8 + VarIntSize(o.script.size()) + o.script.size();
    return (nonwit * 4 + (segwit ? 2 + witness : 0) + 3) / 4;
}

Tx Node::Sign(const Tx& tx, ojson& errors) const
{
    Tx blank = tx;
    for (auto& in : blank.vin) {
        in.script_sig.clear();
        in.witness.clear();
    }
    const Bytes blank_bytes = SerializeTx(blank, false);
    Tx signed_tx = tx;
    for (uint32_t idx = 0; idx < signed_tx.vin.size(); ++idx) {
        TxIn& in = signed_tx.vin[idx];
        const TxOut* coin = Coin(in.prev);
        const auto key = coin != nullptr ? wallet_keys.find(coin->script) : wallet_keys.end();
        if (coin == nullptr || chain_spends.contains(in.prev) || key == wallet_keys.end()) {
            ojson witness = ojson::array();
            for (const auto& item : in.witness) witness.push_back(HexEncode(item));
            errors.push_back({{"txid", Display(in.prev.txid)}, {"vout", in.prev.n}, {"witness", witness},
                              {"scriptSig", HexEncode(in.script_sig)}, {"sequence", in.sequence},
                              {"error", coin == nullptr || chain_spends.contains(in.prev)
                                            ? "Input not found or already spent"
                                            : "Unable to sign input, invalid stack size (possibly missing key)"}});
            continue;
        }
        Bytes msg_input = blank_bytes;
        PutU32(msg_input, idx);
        PutU64(msg_input, static_cast<uint64_t>(coin->value));
        PutBytes(msg_input, coin->script);
        const Hash256 msg = Sha256d(msg_input);
        const Hash256& secret = key->second.secret;
        in.script_sig.clear();
        if (KindOf(coin->script) == ScriptKind::P2tr) {
            Bytes sig;
            PutBytes(sig, Sha256(Tagged("R", secret, msg)));
            PutBytes(sig, Sha256(Tagged("S", secret, msg)));
            in.witness = {std::move(sig)};
        } else {
            in.witness = {FakeDerSignature(secret, msg), FakePubkey(secret)};
        }
    }
    Seal(signed_tx);
    return signed_tx;
}

// loadwallet; then, as CWallet::postInitProcess, its unconfirmed transactions go back to
// the mempool in the order the wallet learnt them (a replacement after what it replaced).
void Node::LoadWallet()
{
    wallet_loaded = true;
    ++stats.wallet_loads;
    std::vector<std::pair<uint64_t, Hash256>> order;
    for (const auto& [txid, wtx] : wallet_txs) order.emplace_back(wtx.order, txid);
    std::sort(order.begin(), order.end());
    for (const auto& [_, txid] : order) {
        const Tx& tx = txs.at(txid);
        if (tx.IsCoinbase() || Depth(txid) != 0 || mempool.contains(txid)) continue;
        [[maybe_unused]] const auto rejected = Accept(Tx(tx), false, std::nullopt);
    }
}

} // namespace btcsim

// --- the public face ---

BtcFaults BtcFaults::FromSeed(uint64_t seed, double intensity)
{
    Prng prng(seed ^ 0xb7c0'fa17'0000'0001ull);
    const auto scaled = [&](double base) { return intensity * base * (0.5 + prng.Unit()); };
    BtcFaults f;
    f.transport = scaled(0.02);
    f.warmup = scaled(0.01);
    f.http_500 = scaled(0.01);
    f.truncated = scaled(0.01);
    f.insufficient_funds = scaled(0.05);
    return f;
}

BtcConfig BtcConfig::FromSeed(uint64_t seed, double fault_intensity)
{
    Prng prng(seed ^ 0xb7c0'c0f1'0000'0002ull);
    BtcConfig c;
    c.seed = seed;
    c.wallet_coins = static_cast<uint32_t>(prng.Between(1, 12));
    c.background_txs_max = static_cast<uint32_t>(prng.Between(0, 8));
    // Half the seeds congested: the anchor waits behind better-paying transactions.
    c.block_vbytes_max = prng.Chance(0.5) ? 1'000'000 : static_cast<uint32_t>(prng.Between(600, 4000));
    c.background_op_return_probability = prng.Unit() * 0.5;
    c.restart_down_requests_max = static_cast<uint32_t>(prng.Between(0, 4));
    c.restart_warmup_requests_max = static_cast<uint32_t>(prng.Between(0, 4));
    c.faults = BtcFaults::FromSeed(seed, fault_intensity);
    return c;
}

uint64_t BtcNodeStats::faults() const { return down + transport + warmup + http_500 + truncated + insufficient_funds; }

std::string BtcNodeStats::ToString() const
{
    return fmt::format("http_requests={} calls={} rpc_errors={} blocks_mined={} blocks_served={} bytes_served={} "
                       "txs_accepted={} replacements={} wallet_loads={} restarts={} down={} transport={} warmup={} "
                       "http_500={} truncated={} insufficient_funds={}",
                       http_requests, calls, rpc_errors, blocks_mined, blocks_served, bytes_served, txs_accepted,
                       replacements, wallet_loads, restarts, down, transport, warmup, http_500, truncated,
                       insufficient_funds);
}

SimBitcoind::SimBitcoind(BtcConfig config)
    : m_config(std::move(config)), m_node(std::make_unique<btcsim::Node>(m_config))
{
}

SimBitcoind::~SimBitcoind() = default;

HttpReply SimBitcoind::Post(const std::string& url, const std::string& body, size_t answer_bytes_max)
{
    LOCK(m_mutex);
    return m_node->Serve(url, body, answer_bytes_max);
}

std::vector<Hash256> SimBitcoind::Mine(uint32_t blocks)
{
    LOCK(m_mutex);
    std::vector<Hash256> hashes;
    for (uint32_t i = 0; i < blocks; ++i) hashes.push_back(m_node->MineBlock(true));
    return hashes;
}

BtcReorgReport SimBitcoind::Reorg(uint32_t depth, bool keep_mempool_txs, uint32_t new_blocks)
{
    LOCK(m_mutex);
    return m_node->Reorg(depth, keep_mempool_txs, new_blocks);
}

void SimBitcoind::Restart(bool forget_mempool)
{
    LOCK(m_mutex);
    m_node->Restart(forget_mempool);
}

void SimBitcoind::Prune(uint64_t height)
{
    LOCK(m_mutex);
    m_node->Prune(height);
}

void SimBitcoind::SetFaults(const BtcFaults& faults)
{
    LOCK(m_mutex);
    m_node->faults = faults;
}

void SimBitcoind::SetQuiet(bool quiet)
{
    LOCK(m_mutex);
    m_node->quiet = quiet;
}

uint64_t SimBitcoind::Height() const
{
    LOCK(m_mutex);
    return m_node->Height();
}

Hash256 SimBitcoind::CanonicalHash(uint64_t height) const
{
    LOCK(m_mutex);
    return m_node->blocks[m_node->canonical.at(height)].hash;
}

std::optional<BtcTxLocation> SimBitcoind::Confirmed(const Hash256& txid) const
{
    LOCK(m_mutex);
    const auto it = m_node->confirmed.find(txid);
    if (it == m_node->confirmed.end()) return std::nullopt;
    return it->second;
}

namespace {

// The OP_RETURNs of one block outside its coinbase: the data of one push after
// OP_RETURN, or whatever follows it.
std::vector<BtcPayload> BlockPayloads(const btcsim::Node& node, const btcsim::Block& block, uint64_t height)
{
    std::vector<BtcPayload> out;
    for (uint32_t pos = 1; pos < block.txids.size(); ++pos) {
        const auto& tx = node.txs.at(block.txids[pos]);
        for (uint32_t n = 0; n < tx.vout.size(); ++n) {
            const Bytes& script = tx.vout[n].script;
            if (btcsim::KindOf(script) != btcsim::ScriptKind::NullData) continue;
            Bytes data(script.begin() + 1, script.end());
            if (script.size() >= 2 && script[1] >= 1 && script[1] <= 0x4b && script.size() == 2u + script[1]) {
                data.erase(data.begin());
            } else if (script.size() >= 3 && script[1] == 0x4c && script.size() == 3u + script[2]) {
                data.erase(data.begin(), data.begin() + 2);
            }
            out.push_back({height, block.hash, tx.txid, pos, n, std::move(data)});
        }
    }
    return out;
}

} // namespace

std::vector<BtcPayload> SimBitcoind::ConfirmedPayloads() const
{
    LOCK(m_mutex);
    std::vector<BtcPayload> out;
    const auto& node = *m_node;
    for (uint64_t height = 1; height <= node.Height(); ++height) {
        const auto& block = node.blocks[node.canonical[height]];
        auto cached = node.payloads_of.find(block.hash);
        if (cached == node.payloads_of.end()) cached = node.payloads_of.emplace(block.hash, BlockPayloads(node, block, height)).first;
        out.insert(out.end(), cached->second.begin(), cached->second.end());
    }
    return out;
}

bool SimBitcoind::InMempool(const Hash256& txid) const
{
    LOCK(m_mutex);
    return m_node->mempool.contains(txid);
}

size_t SimBitcoind::MempoolSize() const
{
    LOCK(m_mutex);
    return m_node->mempool.size();
}

bool SimBitcoind::WalletLoaded() const
{
    LOCK(m_mutex);
    return m_node->wallet_loaded;
}

uint64_t SimBitcoind::PruneHeight() const
{
    LOCK(m_mutex);
    return m_node->prune_below;
}

std::optional<Bytes> SimBitcoind::BlockBytes(const Hash256& hash) const
{
    LOCK(m_mutex);
    const auto* block = m_node->FindBlock(hash);
    if (block == nullptr) return std::nullopt;
    return block->raw;
}

int64_t SimBitcoind::WalletBalanceSat() const
{
    LOCK(m_mutex);
    return m_node->Balance();
}

BtcNodeStats SimBitcoind::stats() const
{
    LOCK(m_mutex);
    return m_node->stats;
}

} // namespace bitacora::sim
