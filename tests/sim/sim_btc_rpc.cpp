// The simulated bitcoind's JSON-RPC face: HTTP as httprpc.cpp answers (JSON-RPC 2.0
// errors with 200, legacy ones with 404/500), parameter checks as RPCHelpMan makes them,
// and the methods the daemon calls, with the shapes and messages of the captures in
// ../shared/fixtures/bitcoind/rpc.jsonl and of tests/integration/btc_double.py.
#include "indexer/btc/block.h"
#include "tests/sim/sim_btc_node.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>

namespace bitacora::sim::btcsim {
namespace {

using json = ojson;

constexpr std::string_view kWarning =
    "This is a pre-release test build - use at your own risk - do not use for mining or merchant applications";
constexpr std::string_view kNoWalletMessage =
    "No wallet is loaded. Load a wallet using loadwallet or create a new one with createwallet. (Note: A default "
    "wallet is no longer automatically created)";
constexpr std::string_view kWalletNotLoaded = "Requested wallet does not exist or is not loaded";
constexpr std::string_view kWarmupMessage = "Loading block index…";
constexpr std::string_view kRegtestTarget = "7fffff0000000000000000000000000000000000000000000000000000000000";
constexpr double kRegtestDifficulty = 4.656542373906925e-10;
constexpr std::string_view kWalletDir = "/home/bitcoin/.bitcoin/regtest/wallets/";

[[noreturn]] void Fail(int code, std::string message) { throw RpcError{code, std::move(message)}; }

std::string TypeName(const json& v)
{
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "bool";
    if (v.is_number()) return "number";
    if (v.is_string()) return "string";
    if (v.is_array()) return "array";
    return "object";
}

int64_t GetInt(const json& v, int64_t lo = INT32_MIN, int64_t hi = INT32_MAX)
{
    if (!v.is_number()) Fail(-3, fmt::format("JSON value of type {} is not of expected type number", TypeName(v)));
    int64_t n = 0;
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d != std::floor(d) || std::fabs(d) > 9e18) Fail(-1, "JSON integer out of range");
        n = static_cast<int64_t>(d);
    } else if (v.is_number_unsigned()) {
        if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) Fail(-1, "JSON integer out of range");
        n = static_cast<int64_t>(v.get<uint64_t>());
    } else {
        n = v.get<int64_t>();
    }
    if (n < lo || n > hi) Fail(-1, "JSON integer out of range");
    return n;
}

// ParseFixedPoint of a decimal text: `decimals` places, no more; none when not valid.
std::optional<int64_t> ParseFixed(std::string_view text, int decimals)
{
    size_t i = 0;
    const bool negative = i < text.size() && text[i] == '-';
    if (negative) ++i;
    std::string digits;
    int fraction = 0;
    bool point = false;
    for (; i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0 || text[i] == '.'); ++i) {
        if (text[i] == '.') {
            if (point) return std::nullopt;
            point = true;
        } else {
            digits.push_back(text[i]);
            fraction += point ? 1 : 0;
        }
    }
    int exponent = 0;
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        const bool neg_exp = i < text.size() && text[i] == '-';
        if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
        if (i == text.size()) return std::nullopt;
        for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0 && exponent < 1000; ++i) {
            exponent = exponent * 10 + (text[i] - '0');
        }
        exponent = neg_exp ? -exponent : exponent;
    }
    if (i != text.size() || digits.empty()) return std::nullopt;
    int shift = exponent - fraction + decimals;
    while (shift < 0) { // what falls below the last place must be zeros
        if (digits.back() != '0') return std::nullopt;
        digits.pop_back();
        ++shift;
        if (digits.empty()) return 0;
    }
    digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
    if (digits.size() + static_cast<size_t>(shift) > 18) return std::nullopt;
    int64_t value = 0;
    for (const char c : digits) value = value * 10 + (c - '0');
    for (int k = 0; k < shift; ++k) value *= 10;
    return negative ? -value : value;
}

int64_t AmountFromValue(const json& v, int decimals = 8)
{
    if (!v.is_number() && !v.is_string()) Fail(-3, "Amount is not a number or string");
    const auto value = ParseFixed(v.is_string() ? v.get<std::string>() : v.dump(), decimals);
    if (!value) Fail(-3, "Invalid amount");
    if (*value < 0 || *value > kMaxMoneySat) Fail(-3, "Amount out of range");
    return *value;
}

Hash256 ParseHash(const json& v, std::string_view name)
{
    if (!v.is_string()) Fail(-3, fmt::format("JSON value of type {} is not of expected type string", TypeName(v)));
    const std::string text = v.get<std::string>();
    if (text.size() != 64) Fail(-8, fmt::format("{} must be of length 64 (not {}, for '{}')", name, text.size(), text));
    const auto hash = btc::HashFromDisplay(text);
    if (!hash) Fail(-8, fmt::format("{} must be hexadecimal string (not '{}')", name, text));
    return *hash;
}

Bytes ParseHexParam(const json& v, std::string_view name)
{
    if (!v.is_string()) Fail(-3, fmt::format("JSON value of type {} is not of expected type string", TypeName(v)));
    const auto bytes = HexDecode(v.get<std::string>());
    if (!bytes) Fail(-8, fmt::format("{} must be hexadecimal string (not '{}')", name, v.get<std::string>()));
    return *bytes;
}

Tx DecodeParamTx(const json& v, std::string_view message, std::optional<bool> witness = std::nullopt)
{
    if (!v.is_string()) Fail(-3, fmt::format("JSON value of type {} is not of expected type string", TypeName(v)));
    const auto bytes = HexDecode(v.get<std::string>());
    auto tx = bytes ? DecodeTx(*bytes, witness.value_or(true), !witness.value_or(false)) : std::nullopt;
    if (!tx) Fail(-22, std::string(message));
    return std::move(*tx);
}

std::string Hex64(uint64_t n) { return fmt::format("{:064x}", n); }

// --- parameters, as RPCHelpMan declares them: "name[|alias]:type[!]" ---

struct Arg {
    std::vector<std::string> names;
    char kind{'x'}; // n(umber) s(tring) b(ool) o(bject) a(rray) x (checked by the method)
    bool required{false};
};

std::vector<Arg> ParseSpec(std::string_view spec)
{
    std::vector<Arg> args;
    size_t at = 0;
    while (at < spec.size()) {
        size_t end = spec.find(' ', at);
        if (end == std::string_view::npos) end = spec.size();
        const std::string_view item = spec.substr(at, end - at);
        const size_t colon = item.find(':');
        Arg arg;
        std::string_view names = item.substr(0, colon);
        for (size_t bar; (bar = names.find('|')) != std::string_view::npos; names.remove_prefix(bar + 1)) {
            arg.names.emplace_back(names.substr(0, bar));
        }
        arg.names.emplace_back(names);
        arg.kind = item[colon + 1];
        arg.required = item.back() == '!';
        args.push_back(std::move(arg));
        at = end + 1;
    }
    return args;
}

std::string_view KindName(char kind)
{
    switch (kind) {
    case 'n': return "number";
    case 's': return "string";
    case 'b': return "bool";
    case 'o': return "object";
    default: return "array";
    }
}

struct Call {
    std::vector<json> params; // padded with nulls to the spec's length
    std::string path;
    const json& operator[](size_t i) const { return params[i]; }
    bool has(size_t i) const { return !params[i].is_null(); }
};

std::vector<json> NamedParams(const std::vector<Arg>& spec, const json& object)
{
    std::vector<json> out(spec.size());
    size_t used = 0;
    for (const auto& [key, value] : object.items()) {
        bool found = false;
        for (size_t i = 0; i < spec.size() && !found; ++i) {
            if (std::find(spec[i].names.begin(), spec[i].names.end(), key) == spec[i].names.end()) continue;
            out[i] = value;
            used = std::max(used, i + 1);
            found = true;
        }
        if (!found) Fail(-8, fmt::format("Unknown named parameter {}", key));
    }
    out.resize(used);
    return out;
}

void CheckParams(std::string_view method, const std::vector<Arg>& spec, std::vector<json>& params)
{
    size_t required = 0;
    for (size_t i = 0; i < spec.size(); ++i) {
        if (spec[i].required) required = i + 1;
    }
    if (params.size() < required || params.size() > spec.size()) {
        // bitcoind answers with the method's help; its first line is the signature.
        std::string help(method);
        for (const auto& arg : spec) help += arg.required ? " " + arg.names[0] : " ( " + arg.names[0] + " )";
        Fail(-1, help);
    }
    json mismatch = json::object();
    for (size_t i = 0; i < params.size(); ++i) {
        const Arg& arg = spec[i];
        if (arg.kind == 'x' || (params[i].is_null() && !arg.required)) continue;
        if (TypeName(params[i]) != KindName(arg.kind)) {
            std::string names = arg.names[0];
            for (size_t k = 1; k < arg.names.size(); ++k) names += "|" + arg.names[k];
            mismatch[fmt::format("Position {} ({})", i + 1, names)] =
                fmt::format("JSON value of type {} is not of expected type {}", TypeName(params[i]), KindName(arg.kind));
        }
    }
    if (!mismatch.empty()) Fail(-3, "Wrong type passed:\n" + mismatch.dump(4));
    params.resize(spec.size());
}

std::string UrlDecode(std::string_view text)
{
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            const auto byte = HexDecode(text.substr(i + 1, 2));
            if (byte && byte->size() == 1) {
                out.push_back(static_cast<char>((*byte)[0]));
                i += 2;
                continue;
            }
        }
        out.push_back(text[i]);
    }
    return out;
}

void RequireWallet(const Node& n, const std::string& path)
{
    constexpr std::string_view kPrefix = "/wallet/";
    if (path.starts_with(kPrefix)) {
        if (!n.wallet_loaded || UrlDecode(std::string_view(path).substr(kPrefix.size())) != n.cfg.wallet) {
            Fail(-18, std::string(kWalletNotLoaded));
        }
        return;
    }
    if (!n.wallet_loaded) Fail(-18, std::string(kNoWalletMessage));
}

// --- blocks ---

const Block& BlockParam(const Node& n, const json& v, std::string_view name)
{
    const Block* block = n.FindBlock(ParseHash(v, name));
    if (block == nullptr) Fail(-5, "Block not found");
    return *block;
}

json HeaderJson(const Node& n, const Block& b)
{
    const bool active = n.IsCanonical(b);
    json out = {{"hash", Display(b.hash)},
                {"confirmations", active ? static_cast<int64_t>(n.Height() - b.height) + 1 : -1},
                {"height", b.height},
                {"version", b.version},
                {"versionHex", fmt::format("{:08x}", static_cast<uint32_t>(b.version))},
                {"merkleroot", Display(b.merkle_root)},
                {"time", b.time},
                {"mediantime", n.MedianTimePast(b)},
                {"nonce", b.nonce},
                {"bits", fmt::format("{:08x}", kRegtestBits)},
                {"target", std::string(kRegtestTarget)},
                {"difficulty", kRegtestDifficulty},
                {"chainwork", Hex64((b.height + 1) * 2)}, // each regtest block is 2 of work
                {"nTx", b.txids.size()}};
    if (b.parent >= 0) out["previousblockhash"] = Display(n.blocks[static_cast<size_t>(b.parent)].hash);
    if (active && b.height < n.Height()) out["nextblockhash"] = Display(n.blocks[n.canonical[b.height + 1]].hash);
    return out;
}

json GetBlockchainInfo(Node& n, const Call&)
{
    const Block& tip = n.Tip();
    uint64_t size_on_disk = 0;
    for (const auto& b : n.blocks) size_on_disk += b.have_data ? b.raw.size() + 8 : 0;
    json out = {{"chain", "regtest"},
                {"blocks", n.Height()},
                {"headers", n.Height()},
                {"bestblockhash", Display(tip.hash)},
                {"bits", fmt::format("{:08x}", kRegtestBits)},
                {"target", std::string(kRegtestTarget)},
                {"difficulty", kRegtestDifficulty},
                {"time", tip.time},
                {"mediantime", n.MedianTimePast(tip)},
                {"verificationprogress", 1},
                {"initialblockdownload", false},
                {"chainwork", Hex64((tip.height + 1) * 2)},
                {"size_on_disk", size_on_disk},
                {"pruned", n.cfg.pruned}};
    if (n.cfg.pruned) {
        out["pruneheight"] = n.prune_below;
        out["automatic_pruning"] = false;
    }
    out["warnings"] = json::array({std::string(kWarning)});
    return out;
}

json GetBlockCount(Node& n, const Call&) { return n.Height(); }
json GetBestBlockHash(Node& n, const Call&) { return Display(n.Tip().hash); }

json GetBlockHash(Node& n, const Call& c)
{
    const int64_t height = GetInt(c[0]);
    if (height < 0 || static_cast<uint64_t>(height) > n.Height()) Fail(-8, "Block height out of range");
    return Display(n.blocks[n.canonical[static_cast<size_t>(height)]].hash);
}

json GetBlockHeader(Node& n, const Call& c)
{
    const Block& b = BlockParam(n, c[0], "hash");
    if (c[1].is_boolean() && !c[1].get<bool>()) return HexEncode(b.header);
    return HeaderJson(n, b);
}

json GetBlock(Node& n, const Call& c)
{
    const Block& b = BlockParam(n, c[0], "blockhash");
    int64_t verbosity = 1;
    if (c[1].is_boolean()) verbosity = c[1].get<bool>() ? 1 : 0;
    else if (c[1].is_number()) verbosity = GetInt(c[1]);
    else if (!c[1].is_null()) Fail(-1, fmt::format("JSON value of type {} is not of expected type number", TypeName(c[1])));
    if (!b.have_data) Fail(-1, "Block not available (pruned data)");
    ++n.stats.blocks_served;
    if (verbosity <= 0) return HexEncode(b.raw);
    // Verbosity 2 and 3 (transaction objects) are answered as 1.
    json out = HeaderJson(n, b);
    out["strippedsize"] = b.stripped_size;
    out["size"] = b.raw.size();
    out["weight"] = b.weight;
    const Tx& cb = n.txs.at(b.txids[0]);
    json coinbase = {{"version", cb.version}, {"locktime", cb.lock_time}, {"sequence", cb.vin[0].sequence},
                     {"coinbase", HexEncode(cb.vin[0].script_sig)}};
    if (!cb.vin[0].witness.empty()) coinbase["witness"] = HexEncode(cb.vin[0].witness[0]);
    out["coinbase_tx"] = std::move(coinbase);
    json txids = json::array();
    for (const auto& txid : b.txids) txids.push_back(Display(txid));
    out["tx"] = std::move(txids);
    return out;
}

json GetZmqNotifications(Node&, const Call&) { return json::array(); }

// --- the mempool ---

json EntryJson(const Node& n, const Hash256& txid)
{
    const Tx& tx = n.txs.at(txid);
    const MempoolEntry& e = n.mempool.at(txid);
    const auto desc = n.Descendants(txid);
    const auto anc = n.Ancestors(txid);
    int64_t desc_fee = e.fee, anc_fee = e.fee;
    size_t desc_size = tx.vsize, anc_size = tx.vsize, anc_weight = tx.weight;
    for (const auto& t : desc) {
        desc_fee += n.mempool.at(t).fee;
        desc_size += n.txs.at(t).vsize;
    }
    for (const auto& t : anc) {
        anc_fee += n.mempool.at(t).fee;
        anc_size += n.txs.at(t).vsize;
        anc_weight += n.txs.at(t).weight;
    }
    // The chunk: with its ancestors when they pay less (CPFP), else alone (an approximation
    // of the cluster linearization).
    const bool merged = !anc.empty() && e.fee * static_cast<int64_t>(anc_size) > anc_fee * static_cast<int64_t>(tx.vsize);
    json depends = json::array(), spentby = json::array();
    for (const auto& p : n.Parents(tx)) depends.push_back(Display(p));
    for (const auto& ch : n.Children(txid)) spentby.push_back(Display(ch));
    return {{"vsize_adjusted", tx.vsize}, {"vsize", tx.vsize}, {"vsize_bip141", tx.vsize}, {"weight", tx.weight},
            {"time", e.time}, {"height", e.height}, {"descendantcount", 1 + desc.size()}, {"descendantsize", desc_size},
            {"ancestorcount", 1 + anc.size()}, {"ancestorsize", anc_size}, {"wtxid", Display(tx.wtxid)},
            {"chunkweight", merged ? anc_weight : tx.weight},
            {"fees", {{"base", Amount(e.fee)}, {"modified", Amount(e.fee)}, {"ancestor", Amount(anc_fee)},
                      {"descendant", Amount(desc_fee)}, {"chunk", Amount(merged ? anc_fee : e.fee)}}},
            {"depends", depends}, {"spentby", spentby}, {"unbroadcast", e.unbroadcast}};
}

json GetMempoolEntry(Node& n, const Call& c)
{
    const Hash256 txid = ParseHash(c[0], "txid");
    if (!n.mempool.contains(txid)) Fail(-5, "Transaction not in mempool");
    return EntryJson(n, txid);
}

json GetRawMempool(Node& n, const Call& c)
{
    const bool verbose = c[0].is_boolean() && c[0].get<bool>();
    const bool sequence = c[1].is_boolean() && c[1].get<bool>();
    if (verbose && sequence) Fail(-8, "Verbose results cannot contain mempool sequence values.");
    json ids = json::array(), entries = json::object();
    for (const auto& txid : n.MempoolBySeq()) {
        if (verbose) entries[Display(txid)] = EntryJson(n, txid);
        else ids.push_back(Display(txid));
    }
    if (verbose) return entries;
    if (sequence) return {{"txids", ids}, {"mempool_sequence", n.mempool_seq}};
    return ids;
}

json SendRawTransaction(Node& n, const Call& c)
{
    const Tx tx = DecodeParamTx(c[0], "TX decode failed. Make sure the tx has at least one input.");
    const int64_t max_rate = c.has(1) ? AmountFromValue(c[1]) : kMaxRawTxFeeRateSatKvb;
    const int64_t max_burn = c.has(2) ? AmountFromValue(c[2]) : 0;
    for (const auto& out : tx.vout) {
        if ((KindOf(out.script) == ScriptKind::NullData || out.script.size() > 10'000) && out.value > max_burn) {
            Fail(-25, "Unspendable output exceeds maximum configured by user (maxburnamount)");
        }
    }
    if (n.mempool.contains(tx.txid)) return Display(tx.txid);
    if (n.confirmed.contains(tx.txid)) {
        for (uint32_t k = 0; k < tx.vout.size(); ++k) {
            if (KindOf(tx.vout[k].script) != ScriptKind::NullData && !n.chain_spends.contains(Outpoint{tx.txid, k})) {
                Fail(-27, "Transaction outputs already in utxo set");
            }
        }
    }
    if (const auto rejected = n.Accept(tx, false, max_rate)) {
        if (rejected->kind == TxReject::Kind::MaxFee) Fail(-25, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)");
        Fail(rejected->kind == TxReject::Kind::MissingInputs ? -25 : -26, rejected->reason);
    }
    return Display(tx.txid);
}

std::vector<TxIn> RawInputs(const json& inputs, bool rbf, uint32_t locktime)
{
    std::vector<TxIn> vin;
    for (const auto& item : inputs) {
        if (!item.is_object()) Fail(-3, fmt::format("JSON value of type {} is not of expected type object", TypeName(item)));
        TxIn in;
        in.prev.txid = ParseHash(item.contains("txid") ? item["txid"] : json(), "txid");
        if (!item.contains("vout") || !item["vout"].is_number()) Fail(-8, "Invalid parameter, missing vout key");
        const int64_t vout = GetInt(item["vout"]);
        if (vout < 0) Fail(-8, "Invalid parameter, vout cannot be negative");
        in.prev.n = static_cast<uint32_t>(vout);
        in.sequence = rbf ? kSequenceRbf : locktime != 0 ? kSequenceFinalMinus1 : kSequenceFinal;
        if (item.contains("sequence") && !item["sequence"].is_null()) {
            const int64_t seq = GetInt(item["sequence"], INT64_MIN, INT64_MAX);
            if (seq < 0 || seq > 0xffffffffll) Fail(-8, "Invalid parameter, sequence number is out of range");
            in.sequence = static_cast<uint32_t>(seq);
        }
        vin.push_back(std::move(in));
    }
    if (rbf && std::any_of(vin.begin(), vin.end(), [](const TxIn& in) { return in.sequence > kSequenceRbf; })) {
        Fail(-8, "Invalid parameter combination: Sequence number(s) contradict replaceable option");
    }
    return vin;
}

// Outputs: "data" (an OP_RETURN) only; this node decodes no addresses.
std::vector<TxOut> RawOutputs(const json& outputs)
{
    json list = json::array();
    if (outputs.is_object()) {
        for (const auto& [key, value] : outputs.items()) list.push_back(json{{key, value}});
    } else if (outputs.is_array()) {
        list = outputs;
    } else {
        Fail(-3, fmt::format("JSON value of type {} is not of expected type array", TypeName(outputs)));
    }
    std::vector<TxOut> vout;
    bool has_data = false;
    for (const auto& item : list) {
        if (!item.is_object()) Fail(-8, "Invalid parameter, key-value pair not an object as expected");
        if (item.size() != 1) Fail(-8, "Invalid parameter, key-value pair must contain exactly one key");
        const std::string key = item.begin().key();
        const json& value = item.begin().value();
        if (key != "data") Fail(-5, fmt::format("Invalid Bitcoin address: {}", key));
        if (has_data) Fail(-8, "Invalid parameter, duplicate key: data");
        has_data = true;
        Bytes script{0x6a};
        const Bytes data = ParseHexParam(value, "Data");
        const Bytes push = PushData(data);
        script.insert(script.end(), push.begin(), push.end());
        vout.push_back({0, std::move(script)});
    }
    return vout;
}

json CreateRawTransaction(Node&, const Call& c)
{
    uint32_t locktime = 0;
    if (c.has(2)) {
        const int64_t value = GetInt(c[2], INT64_MIN, INT64_MAX);
        if (value < 0 || value > 0xffffffffll) Fail(-8, "Invalid parameter, locktime out of range");
        locktime = static_cast<uint32_t>(value);
    }
    const bool rbf = !(c[3].is_boolean() && !c[3].get<bool>());
    Tx tx;
    if (c.has(4)) {
        const int64_t version = GetInt(c[4]);
        if (version < 1 || version > 3) Fail(-8, "Invalid parameter, version out of range(1~3)");
        tx.version = static_cast<int32_t>(version);
    }
    tx.vin = RawInputs(c[0], rbf, locktime);
    tx.vout = RawOutputs(c[1]);
    tx.lock_time = locktime;
    Seal(tx);
    return HexEncode(tx.raw);
}

// --- wallets ---

json LoadWalletMethod(Node& n, const Call& c)
{
    const std::string name = c[0].get<std::string>();
    if (name != n.cfg.wallet) {
        Fail(-18, fmt::format("Wallet file verification failed. Failed to load database path '{}{}'. Path does not exist.",
                              kWalletDir, name));
    }
    if (n.wallet_loaded) Fail(-35, fmt::format("Wallet \"{}\" is already loaded.", name));
    n.LoadWallet();
    return {{"name", name}};
}

json UnloadWallet(Node& n, const Call& c)
{
    constexpr std::string_view kPrefix = "/wallet/";
    std::optional<std::string> from_uri;
    if (c.path.starts_with(kPrefix)) from_uri = UrlDecode(std::string_view(c.path).substr(kPrefix.size()));
    std::optional<std::string> name;
    if (c.has(0)) name = c[0].get<std::string>();
    if (name && from_uri && *name != *from_uri) Fail(-8, "RPC endpoint wallet and wallet_name parameter specify different wallets");
    if (!name) name = from_uri;
    if (!name) Fail(-8, "Either the RPC endpoint wallet or the wallet name parameter must be provided");
    if (!n.wallet_loaded || *name != n.cfg.wallet) Fail(-18, std::string(kWalletNotLoaded));
    n.wallet_loaded = false;
    return json::object();
}

json ListWallets(Node& n, const Call&)
{
    json out = json::array();
    if (n.wallet_loaded) out.push_back(n.cfg.wallet);
    return out;
}

// The fee rate the wallet pays, in sat/kvB (fee_rate is sat/vB, feeRate BTC/kvB).
int64_t WalletFeeRate(const Node& n, const json& fee_rate, const json& conf_target, const json& estimate_mode,
                      const json& fee_rate_btc = json())
{
    if (!fee_rate.is_null() && !conf_target.is_null()) {
        Fail(-8, "Cannot specify both conf_target and fee_rate. Please provide either a confirmation target in blocks "
                 "for automatic fee estimation, or an explicit fee rate.");
    }
    std::string mode = estimate_mode.is_string() ? estimate_mode.get<std::string>() : "unset";
    std::transform(mode.begin(), mode.end(), mode.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (!fee_rate.is_null() && mode != "unset") Fail(-8, "Cannot specify both estimate_mode and fee_rate");
    if (!conf_target.is_null()) {
        const int64_t target = GetInt(conf_target);
        if (target < 1 || target > 1008) Fail(-8, "Invalid conf_target, must be between 1 and 1008");
    }
    if (mode != "unset" && mode != "economical" && mode != "conservative") {
        Fail(-8, "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"");
    }
    if (!fee_rate.is_null()) return AmountFromValue(fee_rate, 3);
    if (!fee_rate_btc.is_null()) return AmountFromValue(fee_rate_btc);
    return std::max<int64_t>(static_cast<int64_t>(n.cfg.fallback_fee_sat_kvb), kMinRelayFeeSatKvb);
}

bool InsufficientFundsFault(Node& n)
{
    if (n.quiet || !n.fault_prng.Chance(n.faults.insufficient_funds)) return false;
    ++n.stats.insufficient_funds;
    return true;
}

json FundRawTransaction(Node& n, const Call& c)
{
    const std::optional<bool> witness = c[2].is_boolean() ? std::optional<bool>(c[2].get<bool>()) : std::nullopt;
    const Tx tx = DecodeParamTx(c[0], "TX decode failed", witness);
    json options = c[1].is_object() ? c[1] : json::object();
    if (!c[1].is_null() && !c[1].is_boolean() && !c[1].is_object()) {
        Fail(-3, fmt::format("JSON value of type {} is not of expected type object", TypeName(c[1])));
    }
    static const std::vector<std::string> kKnown = {
        "add_inputs", "include_unsafe", "minconf", "maxconf", "changeAddress", "change_address", "changePosition",
        "change_position", "change_type", "includeWatching", "include_watching", "lockUnspents", "lock_unspents",
        "fee_rate", "feeRate", "subtractFeeFromOutputs", "subtract_fee_from_outputs", "replaceable", "conf_target",
        "estimate_mode", "input_weights", "solving_data", "max_tx_weight"};
    for (const auto& [key, _] : options.items()) {
        if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) Fail(-3, fmt::format("Unexpected key {}", key));
    }
    if (options.contains("fee_rate") && options.contains("feeRate")) Fail(-8, "Cannot specify both fee_rate (sat/vB) and feeRate (BTC/kvB)");
    if (options.contains("feeRate") && options.contains("conf_target")) {
        Fail(-8, "Cannot specify both conf_target and feeRate. Please provide either a confirmation target in blocks "
                 "for automatic fee estimation, or an explicit fee rate.");
    }
    if (tx.vout.empty()) Fail(-8, "TX must have at least one output");
    const auto option = [&](const char* key) { return options.contains(key) ? options[key] : json(); };
    const int64_t rate = WalletFeeRate(n, option("fee_rate"), option("conf_target"), option("estimate_mode"), option("feeRate"));
    const bool replaceable = !(options.contains("replaceable") && options["replaceable"].is_boolean() &&
                               !options["replaceable"].get<bool>());
    if (InsufficientFundsFault(n)) Fail(-4, "Insufficient funds");
    const Funded funded = n.Fund(tx, rate, replaceable);
    if (funded.fee > kMaxTxFeeSat) Fail(-4, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)");
    return {{"hex", HexEncode(funded.tx.raw)}, {"fee", Amount(funded.fee)}, {"changepos", funded.changepos}};
}

json SignRawTransactionWithWallet(Node& n, const Call& c)
{
    const Tx tx = DecodeParamTx(c[0], "TX decode failed. Make sure the tx has at least one input.");
    static const std::vector<std::string> kSighash = {"DEFAULT", "ALL", "NONE", "SINGLE", "ALL|ANYONECANPAY",
                                                      "NONE|ANYONECANPAY", "SINGLE|ANYONECANPAY"};
    if (c.has(2) && std::find(kSighash.begin(), kSighash.end(), c[2].get<std::string>()) == kSighash.end()) {
        Fail(-8, fmt::format("'{}' is not a valid sighash parameter.", c[2].get<std::string>()));
    }
    json errors = json::array();
    const Tx signed_tx = n.Sign(tx, errors);
    json out = {{"hex", HexEncode(signed_tx.raw)}, {"complete", errors.empty()}};
    if (!errors.empty()) out["errors"] = std::move(errors);
    return out;
}

json TxDetails(const Node& n, const Tx& tx, const WalletTx& wtx, int64_t depth, int64_t debit)
{
    json details = json::array();
    const bool from_me = debit > 0;
    const int64_t fee = tx.ValueOut() - debit;
    for (uint32_t k = 0; k < tx.vout.size() && from_me; ++k) {
        const TxOut& o = tx.vout[k];
        if (n.IsChange(o.script)) continue;
        json entry = json::object();
        if (const std::string address = SegwitAddress(o.script); !address.empty()) entry["address"] = address;
        entry["category"] = "send";
        entry["amount"] = Amount(-o.value);
        entry["vout"] = k;
        entry["fee"] = Amount(fee);
        entry["abandoned"] = false;
        details.push_back(std::move(entry));
    }
    for (uint32_t k = 0; k < tx.vout.size(); ++k) {
        const TxOut& o = tx.vout[k];
        if (!n.IsMine(o.script) || (from_me && n.IsChange(o.script))) continue;
        json entry = {{"address", SegwitAddress(o.script)}};
        entry["category"] = tx.IsCoinbase() ? (depth < 1 ? "orphan" : depth < 101 ? "immature" : "generate") : "receive";
        entry["amount"] = Amount(o.value);
        entry["vout"] = k;
        entry["abandoned"] = false;
        details.push_back(std::move(entry));
    }
    (void)wtx;
    return details;
}

json GetTransaction(Node& n, const Call& c)
{
    const Hash256 txid = ParseHash(c[0], "txid");
    const auto wtx = n.wallet_txs.find(txid);
    if (wtx == n.wallet_txs.end()) Fail(-5, "Invalid or non-wallet transaction id");
    const Tx& tx = n.txs.at(txid);
    const int64_t depth = n.Depth(txid);
    const int64_t debit = n.Debit(tx);
    int64_t credit = 0;
    for (const auto& o : tx.vout) credit += n.IsMine(o.script) ? o.value : 0;
    if (tx.IsCoinbase() && depth < 101) credit = 0;
    const bool from_me = debit > 0;
    const int64_t fee = from_me ? tx.ValueOut() - debit : 0;
    json out = {{"amount", Amount(credit - debit - fee)}};
    if (from_me) out["fee"] = Amount(fee);
    out["confirmations"] = depth;
    if (tx.IsCoinbase()) out["generated"] = true;
    if (const auto loc = n.confirmed.find(txid); loc != n.confirmed.end()) {
        out["blockhash"] = Display(loc->second.block_hash);
        out["blockheight"] = loc->second.height;
        out["blockindex"] = loc->second.position;
        out["blocktime"] = n.blocks[n.canonical[loc->second.height]].time;
    } else {
        out["trusted"] = n.Trusted(txid);
    }
    out["txid"] = Display(tx.txid);
    out["wtxid"] = Display(tx.wtxid);
    out["alternate_wtxids"] = json::array();
    std::vector<std::pair<uint64_t, Hash256>> conflicts;
    json mempool_conflicts = json::array();
    for (const auto& in : tx.vin) {
        if (const auto spenders = n.wallet_spends.find(in.prev); spenders != n.wallet_spends.end()) {
            for (const auto& other : spenders->second) {
                const std::pair<uint64_t, Hash256> item{n.wallet_txs.at(other).order, other};
                if (other != txid && std::find(conflicts.begin(), conflicts.end(), item) == conflicts.end()) conflicts.push_back(item);
            }
        }
        if (const auto other = n.mempool_spends.find(in.prev); other != n.mempool_spends.end() && other->second != txid) {
            if (std::find(mempool_conflicts.begin(), mempool_conflicts.end(), Display(other->second)) == mempool_conflicts.end()) {
                mempool_conflicts.push_back(Display(other->second));
            }
        }
    }
    std::sort(conflicts.begin(), conflicts.end());
    json wallet_conflicts = json::array();
    for (const auto& item : conflicts) wallet_conflicts.push_back(Display(item.second));
    out["walletconflicts"] = std::move(wallet_conflicts);
    out["mempoolconflicts"] = std::move(mempool_conflicts);
    out["time"] = wtx->second.time;
    out["timereceived"] = wtx->second.time;
    if (wtx->second.replaced_by) out["replaced_by_txid"] = Display(*wtx->second.replaced_by);
    if (wtx->second.replaces) out["replaces_txid"] = Display(*wtx->second.replaces);
    out["details"] = TxDetails(n, tx, wtx->second, depth, debit);
    out["hex"] = HexEncode(tx.raw);
    out["lastprocessedblock"] = {{"hash", Display(n.Tip().hash)}, {"height", n.Height()}};
    return out;
}

// bumpfee's preconditions (feebumper's PreconditionChecks and CheckFeeRate).
void CheckBumpable(const Node& n, const Hash256& txid)
{
    const Tx& tx = n.txs.at(txid);
    for (const auto& in : tx.vin) {
        if (n.Coin(in.prev) == nullptr || n.chain_spends.contains(in.prev)) {
            Fail(-1, fmt::format("{}:{} is already spent", Display(in.prev.txid), in.prev.n));
        }
    }
    for (uint32_t k = 0; k < tx.vout.size(); ++k) {
        const auto spenders = n.wallet_spends.find(Outpoint{txid, k});
        if (spenders == n.wallet_spends.end()) continue;
        for (const auto& s : spenders->second) {
            if (n.Depth(s) >= 0) Fail(-8, "Transaction has descendants in the wallet");
        }
    }
    if (!n.Children(txid).empty()) Fail(-8, "Transaction has descendants in the mempool");
    if (n.Depth(txid) != 0) Fail(-4, "Transaction has been mined, or is conflicted with a mined transaction");
    if (const auto& by = n.wallet_txs.at(txid).replaced_by) {
        Fail(-4, fmt::format("Cannot bump transaction {} which was already bumped by transaction {}", Display(txid), Display(*by)));
    }
    for (const auto& in : tx.vin) {
        const auto parent = n.txs.find(in.prev.txid);
        if (parent == n.txs.end() || !n.IsMine(parent->second.vout[in.prev.n].script)) {
            Fail(-4, "Transaction contains inputs that don't belong to this wallet");
        }
    }
}

json BumpFee(Node& n, const Call& c)
{
    const Hash256 txid = ParseHash(c[0], "txid");
    const json options = c[1].is_object() ? c[1] : json::object();
    static const std::vector<std::string> kKnown = {"conf_target", "fee_rate", "replaceable", "estimate_mode", "outputs",
                                                    "original_change_index"};
    for (const auto& [key, _] : options.items()) {
        if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) Fail(-3, fmt::format("Unexpected key {}", key));
    }
    if (!n.wallet_txs.contains(txid)) Fail(-5, "Invalid or non-wallet transaction id");
    CheckBumpable(n, txid);
    const Tx original = n.txs.at(txid);
    const int64_t old_fee = n.Debit(original) - original.ValueOut();
    const auto option = [&](const char* key) { return options.contains(key) ? options[key] : json(); };
    const bool explicit_rate = options.contains("fee_rate");
    int64_t rate = 0;
    if (explicit_rate) {
        rate = WalletFeeRate(n, option("fee_rate"), option("conf_target"), option("estimate_mode"));
    } else {
        if (options.contains("conf_target")) WalletFeeRate(n, json(), option("conf_target"), option("estimate_mode"));
        rate = old_fee * 1000 / static_cast<int64_t>(original.vsize) + 1 +
               std::max(kIncrementalRelayFeeSatKvb, kWalletIncrementalFeeSatKvb);
        rate = std::max<int64_t>(rate, static_cast<int64_t>(n.cfg.fallback_fee_sat_kvb));
    }
    const bool replaceable = !(options.contains("replaceable") && options["replaceable"].is_boolean() &&
                               !options["replaceable"].get<bool>());
    Tx tmpl;
    tmpl.version = original.version;
    tmpl.lock_time = static_cast<uint32_t>(n.Height());
    for (const auto& in : original.vin) tmpl.vin.push_back({in.prev, {}, replaceable ? kSequenceRbf : kSequenceFinalMinus1, {}});
    for (const auto& o : original.vout) {
        if (!n.IsChange(o.script)) tmpl.vout.push_back(o);
    }
    if (InsufficientFundsFault(n)) Fail(-4, "Insufficient funds");
    Funded funded;
    try {
        funded = n.Fund(tmpl, rate, replaceable);
    } catch (const RpcError& e) {
        Fail(-4, e.message);
    }
    const size_t est_vsize = n.EstimateVsize(funded.tx);
    const int64_t old_part = FeeFor(old_fee * 1000 / static_cast<int64_t>(original.vsize), est_vsize);
    const int64_t incremental = FeeFor(kIncrementalRelayFeeSatKvb, est_vsize);
    if (explicit_rate && funded.fee < old_part + incremental) {
        Fail(-8, fmt::format("Insufficient total fee {}, must be at least {} (oldFee {} + incrementalFee {})",
                             FormatMoney(funded.fee), FormatMoney(old_part + incremental), FormatMoney(old_part),
                             FormatMoney(incremental)));
    }
    if (funded.fee > kMaxTxFeeSat) {
        Fail(-4, fmt::format("Specified or calculated fee {} is too high (cannot be higher than -maxtxfee {})",
                             FormatMoney(funded.fee), FormatMoney(kMaxTxFeeSat)));
    }
    json errors = json::array();
    const Tx signed_tx = n.Sign(funded.tx, errors);
    if (!errors.empty()) Fail(-4, "Can't sign transaction.");
    if (const auto rejected = n.Accept(signed_tx, false, std::nullopt)) Fail(-4, "Transaction rejected: " + rejected->reason);
    n.MarkReplaced(txid, signed_tx.txid);
    return {{"txid", Display(signed_tx.txid)}, {"origfee", Amount(old_fee)}, {"fee", Amount(funded.fee)},
            {"errors", json::array()}};
}

// --- dispatch ---

using Handler = json (*)(Node&, const Call&);
struct Method {
    std::string_view name;
    std::string_view spec;
    bool wallet;
    Handler fn;
};

constexpr Method kMethods[] = {
    {"getblockchaininfo", "", false, GetBlockchainInfo},
    {"getblockcount", "", false, GetBlockCount},
    {"getbestblockhash", "", false, GetBestBlockHash},
    {"getblockhash", "height:n!", false, GetBlockHash},
    {"getblockheader", "blockhash:s! verbose:b", false, GetBlockHeader},
    {"getblock", "blockhash:s! verbosity|verbose:x", false, GetBlock},
    {"getzmqnotifications", "", false, GetZmqNotifications},
    {"getmempoolentry", "txid:s!", false, GetMempoolEntry},
    {"getrawmempool", "verbose:b mempool_sequence:b", false, GetRawMempool},
    {"sendrawtransaction", "hexstring:s! maxfeerate:x maxburnamount:x", false, SendRawTransaction},
    {"createrawtransaction", "inputs:a! outputs:x! locktime:n replaceable:b version:n", false, CreateRawTransaction},
    {"loadwallet", "filename:s! load_on_startup:b", false, LoadWalletMethod},
    {"unloadwallet", "wallet_name:s load_on_startup:b", false, UnloadWallet},
    {"listwallets", "", false, ListWallets},
    {"fundrawtransaction", "hexstring:s! options:x iswitness:b", true, FundRawTransaction},
    {"signrawtransactionwithwallet", "hexstring:s! prevtxs:a sighashtype:s", true, SignRawTransactionWithWallet},
    {"gettransaction", "txid:s! include_watchonly:b verbose:b", true, GetTransaction},
    {"bumpfee", "txid:s! options:o", true, BumpFee},
};

struct Request {
    json id;
    bool has_id{false};
    bool v2{false};
    std::string method;
    json params;
};

// JSONRPCRequest::parse: the id first, so that errors after it still carry it.
void ParseRequest(const json& value, Request& req)
{
    if (!value.is_object()) Fail(-32600, "Invalid Request object");
    req.has_id = value.contains("id");
    req.id = req.has_id ? value["id"] : json();
    req.v2 = false;
    if (value.contains("jsonrpc") && !value["jsonrpc"].is_null()) {
        if (!value["jsonrpc"].is_string()) Fail(-32600, "jsonrpc field must be a string");
        const std::string version = value["jsonrpc"].get<std::string>();
        if (version == "2.0") req.v2 = true;
        else if (version != "1.0") Fail(-32600, "JSON-RPC version not supported");
    }
    if (!value.contains("method") || value["method"].is_null()) Fail(-32600, "Missing method");
    if (!value["method"].is_string()) Fail(-32600, "Method must be a string");
    req.method = value["method"].get<std::string>();
    req.params = value.contains("params") ? value["params"] : json();
    if (!req.params.is_null() && !req.params.is_array() && !req.params.is_object()) {
        Fail(-32600, "Params must be an array or object");
    }
}

json Reply(const Request& req, const json* result, const RpcError* error)
{
    json out = json::object();
    if (req.v2) out["jsonrpc"] = "2.0";
    if (error == nullptr) {
        out["result"] = *result;
        if (!req.v2) out["error"] = nullptr;
    } else {
        if (!req.v2) out["result"] = nullptr;
        out["error"] = {{"code", error->code}, {"message", error->message}};
    }
    if (req.has_id) out["id"] = req.id;
    return out;
}

json Execute(Node& n, const Request& req, const std::string& path, bool warmup)
{
    if (warmup) Fail(-28, std::string(kWarmupMessage));
    const auto method = std::find_if(std::begin(kMethods), std::end(kMethods),
                                     [&](const Method& m) { return m.name == req.method; });
    if (method == std::end(kMethods)) Fail(-32601, "Method not found");
    const std::vector<Arg> spec = ParseSpec(method->spec);
    Call call;
    call.path = path;
    if (req.params.is_object()) call.params = NamedParams(spec, req.params);
    else if (req.params.is_array()) call.params.assign(req.params.begin(), req.params.end());
    CheckParams(req.method, spec, call.params);
    if (method->wallet) RequireWallet(n, path);
    return method->fn(n, call);
}

json ExecOne(Node& n, const Request& req, const std::string& path, bool warmup, bool catch_errors)
{
    ++n.stats.calls;
    try {
        const json result = Execute(n, req, path, warmup);
        return Reply(req, &result, nullptr);
    } catch (const RpcError& e) {
        ++n.stats.rpc_errors;
        if (!catch_errors) throw;
        return Reply(req, nullptr, &e);
    }
}

// (HTTP status, body) for one request body, as httprpc.cpp answers.
std::pair<long, std::string> Respond(Node& n, const std::string& path, const std::string& body, bool warmup)
{
    Request req;
    try {
        const json value = json::parse(body, nullptr, false);
        if (value.is_discarded()) Fail(-32700, "Parse error");
        if (value.is_object()) {
            ParseRequest(value, req);
            const json reply = ExecOne(n, req, path, warmup, req.v2);
            if (req.v2 && !req.has_id) return {204, ""};
            return {200, DumpAnswer(reply) + "\n"};
        }
        if (value.is_array()) {
            json replies = json::array();
            for (size_t i = 0; i < value.size() && i < kBatchCallsMax; ++i) {
                Request item;
                try {
                    ParseRequest(value[i], item);
                    replies.push_back(ExecOne(n, item, path, warmup, true));
                } catch (const RpcError& e) {
                    replies.push_back(Reply(item, nullptr, &e));
                    continue;
                }
                if (item.v2 && !item.has_id) replies.erase(replies.size() - 1);
            }
            if (replies.empty() && !value.empty()) return {204, ""};
            return {200, DumpAnswer(replies) + "\n"};
        }
        Fail(-32700, "Top-level object parse error");
    } catch (const RpcError& e) {
        const long status = e.code == -32600 ? 400 : e.code == -32601 ? 404 : 500;
        return {status, DumpAnswer(Reply(req, nullptr, &e)) + "\n"};
    }
}

std::string PathOf(const std::string& url)
{
    const size_t scheme = url.find("://");
    const size_t start = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    return start == std::string::npos ? "/" : url.substr(start);
}

} // namespace

HttpReply Node::Serve(const std::string& url, const std::string& body, size_t answer_bytes_max)
{
    ++stats.http_requests;
    HttpReply reply;
    if (down_left > 0) { // still starting: nothing listens on the port yet
        --down_left;
        ++stats.down;
        reply.outcome = HttpReply::Outcome::Transport;
        reply.error = "Couldn't connect to server";
        return reply;
    }
    if (!quiet && fault_prng.Chance(faults.transport)) {
        ++stats.transport;
        constexpr const char* kErrors[] = {"Couldn't connect to server", "Connection reset by peer",
                                           "Server returned nothing (no headers, no data)",
                                           "Operation timed out after 30000 milliseconds with 0 bytes received"};
        reply.outcome = HttpReply::Outcome::Transport;
        reply.error = kErrors[fault_prng.Below(std::size(kErrors))];
        return reply;
    }
    if (!quiet && fault_prng.Chance(faults.http_500)) {
        ++stats.http_500;
        reply.status = 500;
        return reply;
    }
    const std::string path = PathOf(url);
    if (path != "/" && !path.starts_with("/wallet/")) {
        reply.status = 404;
        return reply;
    }
    bool warmup = false;
    if (warmup_left > 0) {
        --warmup_left;
        warmup = true;
    } else {
        warmup = !quiet && fault_prng.Chance(faults.warmup);
    }
    stats.warmup += warmup ? 1 : 0;
    std::tie(reply.status, reply.body) = Respond(*this, path, body, warmup);
    if (!quiet && !reply.body.empty() && fault_prng.Chance(faults.truncated)) {
        ++stats.truncated;
        reply.body.resize(fault_prng.Below(reply.body.size()));
        // bitcoind sends a Content-Length, so curl notices; a proxy's chunked answer may not.
        if (fault_prng.Chance(0.5)) {
            reply.outcome = HttpReply::Outcome::Transport;
            reply.error = "Transferred a partial file";
        }
    } else if (reply.body.size() > answer_bytes_max) {
        reply.outcome = HttpReply::Outcome::TooLarge; // as curl cuts the transfer off at the cap
        reply.body.resize(answer_bytes_max);
    }
    stats.bytes_served += reply.body.size();
    return reply;
}

} // namespace bitacora::sim::btcsim
