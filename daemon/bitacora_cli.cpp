// bitacora-cli: a client for bitacorad's JSON-RPC API in the spirit of bitcoin-cli, and
// an offline verifier of proof bundles.
//
//   bitacora-cli [-chain=regtest] [-datadir=DIR] [-rpcconnect=HOST] [-rpcport=N]
//                [-rpcuser=U -rpcpassword=P | -rpccookiefile=FILE] [-named] METHOD [ARG...]
//   bitacora-cli help [METHOD]
//   bitacora-cli verifyproof FILE [-checkpointkey=HEX] [-requireanchor] [-btcrpcconnect=... -minconfirmations=N]
//   bitacora-cli exportots BUNDLE.json OUT.ots
//   bitacora-cli backup DIR [-nokey]
#include "common/hex.h"
#include "common/json_bounds.h"
#include "daemon/init.h"
#include "daemon/proof_tools.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "ledger/checkpoint.h"
#include "ledger/event.h"
#include "ledger/merkle.h"
#include "ledger/merkle_verify.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace bitacora;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kExitUsage = 2;
constexpr size_t kBundleBytesMax = 64u << 20; // a proof bundle is a few KB; an .ots export no more

struct Options {
    std::map<std::string, std::string> flags; // -name=value
    std::vector<std::string> positional;
};

Options ParseArgs(int argc, char* argv[])
{
    Options out;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        // Options go before the method (as in bitcoin-cli); "-name" after it is an option
        // too when a letter follows the dash, so that negative numbers stay arguments.
        const bool option = arg.size() > 1 && arg[0] == '-' &&
                            (out.positional.empty() || std::isalpha(static_cast<unsigned char>(arg[1])));
        if (option) {
            arg.erase(0, arg[1] == '-' ? 2 : 1);
            const auto eq = arg.find('=');
            out.flags[arg.substr(0, eq)] = eq == std::string::npos ? "1" : arg.substr(eq + 1);
        } else {
            out.positional.push_back(arg);
        }
    }
    return out;
}

std::string Flag(const Options& o, const std::string& name, const std::string& fallback = "")
{
    auto it = o.flags.find(name);
    return it == o.flags.end() ? fallback : it->second;
}

size_t Collect(char* data, size_t size, size_t count, void* out)
{
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
}

struct HttpAnswer {
    long status{0};
    std::string body;
    std::string error;
};

HttpAnswer Post(const std::string& url, const std::string& credentials, const std::string& body)
{
    HttpAnswer answer;
    CURL* curl = curl_easy_init();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_USERPWD, credentials.c_str());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 900L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
    const CURLcode code = curl_easy_perform(curl);
    if (code != CURLE_OK) answer.error = curl_easy_strerror(code);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return answer;
}

// The chain's data dir and default port, as bitacorad computes them.
std::pair<fs::path, uint16_t> ChainDefaults(const Options& o)
{
    const std::string chain = Flag(o, "chain", "base");
    const char* home = std::getenv("HOME");
    fs::path dir = o.flags.count("datadir") ? fs::path(Flag(o, "datadir")) : fs::path(home ? home : "/") / ".bitacora";
    uint16_t port = 8931;
    for (const auto& info : Chains()) {
        if (info.name != chain) continue;
        if (!info.datadir_subdir.empty()) dir /= info.datadir_subdir;
        port = info.rpc_port;
    }
    return {dir, port};
}

int Fail(const std::string& message, int code = 1)
{
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return code;
}

// An argument as bitcoin-cli sends it: JSON when it parses as an object, array or
// literal, else a string; the server turns "7" into 7 where a number is wanted. `null`
// skips an optional argument to give a later one (an empty string is a value, and no
// list takes an empty cursor).
json Argument(const std::string& text)
{
    json parsed = ParseJsonBounded(text).value;
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array() || parsed.is_boolean() || parsed.is_null())) {
        return parsed;
    }
    return text;
}

int Call(const Options& o, const std::string& method, const json& params, json& result)
{
    const auto [netdir, default_port] = ChainDefaults(o);
    const std::string host = Flag(o, "rpcconnect", "127.0.0.1");
    const std::string port = Flag(o, "rpcport", std::to_string(default_port));
    std::string credentials;
    if (o.flags.count("rpcpassword")) {
        credentials = Flag(o, "rpcuser") + ":" + Flag(o, "rpcpassword");
    } else {
        fs::path cookie(Flag(o, "rpccookiefile", ".cookie"));
        if (!cookie.is_absolute()) cookie = netdir / cookie;
        std::ifstream file(cookie);
        if (!file) {
            return Fail(fmt::format("cannot read the RPC cookie {} (is bitacorad running? use -rpcuser/-rpcpassword, "
                                    "-datadir or -rpccookiefile)",
                                    cookie.string()));
        }
        std::getline(file, credentials);
    }
    const json request = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}};
    const HttpAnswer answer = Post(fmt::format("http://{}:{}/", host, port), credentials, request.dump());
    if (!answer.error.empty()) return Fail(fmt::format("could not connect to {}:{}: {}", host, port, answer.error));
    if (answer.status == 401) return Fail("incorrect rpcuser or rpcpassword (authorization failed)");
    const json response = ParseJsonBounded(answer.body).value;
    if (response.is_discarded() || !response.is_object()) {
        return Fail(fmt::format("HTTP {} with no JSON-RPC answer: {}", answer.status, answer.body.substr(0, 200)));
    }
    if (response.contains("error") && !response["error"].is_null()) {
        const int code = response["error"].value("code", -1);
        std::fprintf(stderr, "error code: %d\nerror message:\n%s\n", code,
                     response["error"].value("message", std::string("?")).c_str());
        return std::min(std::abs(code), 127);
    }
    result = response["result"];
    return 0;
}

void Print(const json& result)
{
    if (result.is_string()) std::printf("%s\n", result.get<std::string>().c_str());
    else std::printf("%s\n", result.dump(2).c_str());
}

int Help(const Options& o)
{
    json methods;
    if (int rc = Call(o, "rpc_methods", json::array(), methods); rc != 0) return rc;
    const std::string wanted = o.positional.size() > 1 ? o.positional[1] : "";
    for (const auto& m : methods) {
        std::string line = m["name"].get<std::string>();
        for (const auto& p : m["params"]) {
            line += p["required"].get<bool>() ? fmt::format(" {}", p["name"].get<std::string>())
                                              : fmt::format(" ( {} )", p["name"].get<std::string>());
        }
        if (wanted.empty()) {
            std::printf("%s\n", line.c_str());
            continue;
        }
        if (m["name"] != wanted) continue;
        std::printf("%s\n\n%s\n", line.c_str(), m["summary"].get<std::string>().c_str());
        if (!m["params"].empty()) std::printf("\nArguments:\n");
        int i = 1;
        for (const auto& p : m["params"]) {
            std::printf("%d. %s (%s, %s) %s\n", i++, p["name"].get<std::string>().c_str(), p["type"].get<std::string>().c_str(),
                        p["required"].get<bool>() ? "required" : "optional", p["help"].get<std::string>().c_str());
        }
        std::printf("\nResult:\n%s\n\nAccess: %s\n", m["result"].get<std::string>().c_str(), m["access"].get<std::string>().c_str());
        return 0;
    }
    if (!wanted.empty()) return Fail(fmt::format("help: unknown command: {}", wanted));
    std::printf("\nOffline:\nverifyproof FILE ( -checkpointkey=HEX -requireanchor -btcrpcconnect=HOST[:PORT] -minconfirmations=N )\nexportots BUNDLE.json OUT.ots\n-signkey=FILE signoffchain KIND IDEMPOTENCYKEY PAYLOADJSON\n");
    return 0;
}

// Checks a proof bundle (ledger_getProofBundle) with no daemon: the leaf, the inclusion
// path, the checkpoint signature and, when anchored, the OP_RETURN payload, the
// transaction, its Merkle branch and the header's proof of work. Given a bitcoind
// (-btcrpcconnect...; a pruned node is enough: only headers are asked for), also that
// the header is in its best chain with -minconfirmations. Prints the first failed check.
bool ParseUnsigned(const std::string& text, uint64_t& out)
{
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// A bundle file, bounded in bytes and depth (a hostile file is refused, not parsed).
Result<json> ReadBundle(const std::string& path)
{
    auto read = ReadJsonFileBounded(path, kBundleBytesMax);
    if (read.status == JsonParseStatus::Unreadable) return Error{"cannot read " + path};
    if (read.status == JsonParseStatus::TooLarge || read.status == JsonParseStatus::TooDeep) {
        return Error{fmt::format("{} is not a proof bundle: over {} bytes or nested over {} deep", path, kBundleBytesMax,
                                 kJsonDepthMax)};
    }
    return std::move(read.value);
}

// How to reach bitcoind for verifyproof's check of the anchor's block; an Error is a usage error.
Result<btc::BitcoindRpcOptions> NodeOptions(const Options& o, uint64_t& min_confirmations)
{
    btc::BitcoindRpcOptions options;
    uint64_t port = 0;
    if (!ParseUnsigned(Flag(o, "btcrpcport", "8332"), port) || port == 0 || port > 65535) {
        return Error{"-btcrpcport must be 1 to 65535"};
    }
    if (!ParseUnsigned(Flag(o, "minconfirmations", "6"), min_confirmations)) return Error{"-minconfirmations must be a number"};
    options.port = static_cast<uint16_t>(port);
    if (!btc::ParseHostPort(Flag(o, "btcrpcconnect"), options.host, options.port)) {
        return Error{"-btcrpcconnect: expected host[:port]"};
    }
    options.user = Flag(o, "btcrpcuser");
    options.password = Flag(o, "btcrpcpassword");
    options.cookie_file = Flag(o, "btcrpccookiefile");
    options.timeout_ms = 10'000;
    return options;
}

// What bitcoind says of the anchor's block: a note for the VALID line, why the bundle is
// INVALID, or why the check could not be made (with the exit code).
struct NodeVerdict {
    std::string note;
    std::optional<std::string> invalid;
    std::optional<std::pair<std::string, int>> failed;
};

NodeVerdict CheckAgainstNode(const Options& o, const BundleCheck& checked, const json& bundle)
{
    uint64_t min_confirmations = 0;
    auto options = NodeOptions(o, min_confirmations);
    if (!options) return {.failed = std::pair{options.error(), kExitUsage}};
    btc::BitcoindRpc node(*options);
    auto at_height = node.Call("getblockhash", {checked.block_height});
    if (!at_height) {
        if (at_height.error().kind != btc::BtcError::Kind::Rpc) return {.failed = std::pair{"bitcoind: " + at_height.error().ToString(), 1}};
        return {.invalid = fmt::format("bitcoind has no block at height {} in its best chain ({})", checked.block_height,
                                       at_height.error().message)};
    }
    if (*at_height != checked.block_hash) {
        return {.invalid = fmt::format("block {} of bitcoind's best chain is {}, not the anchor's {}", checked.block_height,
                                       at_height->is_string() ? at_height->get<std::string>() : "?", checked.block_hash)};
    }
    auto header = node.Call("getblockheader", {checked.block_hash, true});
    if (!header) return {.failed = std::pair{"bitcoind getblockheader: " + header.error().ToString(), 1}};
    const int64_t confirmations = header->value("confirmations", int64_t{-1});
    if (confirmations < static_cast<int64_t>(min_confirmations)) {
        return {.invalid = fmt::format("the anchor's block has {} confirmations, fewer than -minconfirmations={}",
                                       confirmations, min_confirmations)};
    }
    auto raw_header = node.Call("getblockheader", {checked.block_hash, false});
    // As bytes: bitcoind writes hex without the 0x that the bundle has.
    const auto node_header = raw_header && raw_header->is_string() ? HexDecode(raw_header->get<std::string>()) : std::nullopt;
    if (!node_header || *node_header != HexDecode(bundle["anchor"]["header"].get<std::string>())) {
        return {.invalid = "bitcoind's header of the anchor's block differs from the bundle's"};
    }
    return {.note = fmt::format("; bitcoind at {} has it in its best chain with {} confirmations", node.endpoint(),
                                confirmations)};
}

void PrintValid(const BundleCheck& checked, const std::string& node_note, bool pinned)
{
    const std::string key_note = pinned ? "" : " (the key in the bundle; pass -checkpointkey=HEX to pin the operator's key)";
    if (checked.anchored) {
        std::printf("VALID: event %llu (%s) is in the log of %llu events with root %s, anchored by transaction %s in "
                    "Bitcoin block %llu %s%s; checkpoint signed by %s%s\n",
                    static_cast<unsigned long long>(checked.index), checked.event_kind.c_str(),
                    static_cast<unsigned long long>(checked.tree_size), HexEncode0x(checked.root).c_str(),
                    ("0x" + checked.txid).c_str(), static_cast<unsigned long long>(checked.block_height),
                    ("0x" + checked.block_hash).c_str(), node_note.c_str(), HexEncode0x(checked.checkpoint.public_key).c_str(),
                    key_note.c_str());
        return;
    }
    std::printf("VALID: event %llu (%s) is in the log of %llu events with root %s, signed at %llu by %s%s; NOT "
                "ANCHORED in Bitcoin yet\n",
                static_cast<unsigned long long>(checked.index), checked.event_kind.c_str(),
                static_cast<unsigned long long>(checked.tree_size), HexEncode0x(checked.root).c_str(),
                static_cast<unsigned long long>(checked.checkpoint.timestamp),
                HexEncode0x(checked.checkpoint.public_key).c_str(), key_note.c_str());
}

int VerifyProof(const Options& o)
{
    if (o.positional.size() < 2) {
        return Fail("usage: bitacora-cli verifyproof FILE [-checkpointkey=HEX] [-requireanchor] "
                    "[-btcrpcconnect=HOST[:PORT] (-btcrpccookiefile=F | -btcrpcuser=U -btcrpcpassword=P) "
                    "-minconfirmations=N]",
                    kExitUsage);
    }
    const auto bundle_or = ReadBundle(o.positional[1]);
    if (!bundle_or) return Fail(bundle_or.error());
    const json& bundle = *bundle_or;
    auto reject = [](const std::string& check) {
        std::printf("INVALID: %s\n", check.c_str());
        return 1;
    };
    std::optional<ledger::XOnlyPubKey> pinned;
    if (o.flags.count("checkpointkey")) {
        ledger::XOnlyPubKey key{};
        if (!HexDecodeExact(Flag(o, "checkpointkey"), key)) return Fail("-checkpointkey must be 32 bytes of hex", kExitUsage);
        pinned = key;
    }
    const auto checked = VerifyBundle(bundle, pinned);
    if (!checked) return reject(checked.error());
    if (!checked->anchored && o.flags.count("requireanchor")) return reject("the bundle has no Bitcoin anchor (-requireanchor)");
    std::string node_note;
    if (checked->anchored && o.flags.count("btcrpcconnect")) {
        const NodeVerdict verdict = CheckAgainstNode(o, *checked, bundle);
        if (verdict.failed) return Fail(verdict.failed->first, verdict.failed->second);
        if (verdict.invalid) return reject(*verdict.invalid);
        node_note = verdict.note;
    }
    PrintValid(*checked, node_note, pinned.has_value());
    return 0;
}

// Writes an anchored bundle as an OpenTimestamps proof (`ots verify` / python-opentimestamps).
int ExportOtsFile(const Options& o)
{
    if (o.positional.size() != 3) return Fail("usage: bitacora-cli exportots BUNDLE.json OUT.ots", kExitUsage);
    const auto bundle_or = ReadBundle(o.positional[1]);
    if (!bundle_or) return Fail(bundle_or.error());
    const json& bundle = *bundle_or;
    auto ots = ExportOts(bundle);
    if (!ots) return Fail(ots.error());
    std::ofstream out(o.positional[2], std::ios::binary | std::ios::trunc);
    out.write(ots->data(), static_cast<std::streamsize>(ots->size()));
    if (!out) return Fail("cannot write " + o.positional[2]);
    std::printf("wrote %s (%zu bytes): the stamped file is 0x00 || leaf of event %llu\n", o.positional[2].c_str(),
                ots->size(), static_cast<unsigned long long>(bundle["index"].get<uint64_t>()));
    return 0;
}

// admin_backup into DIR (made absolute here: the daemon resolves nothing), asked again
// while the daemon answers that the backup is still being written.
int Backup(const Options& o)
{
    if (o.positional.size() != 2) return Fail("usage: bitacora-cli backup DIR [-nokey]", kExitUsage);
    std::error_code ec;
    const fs::path dir = fs::absolute(o.positional[1], ec);
    if (ec) return Fail(fmt::format("{}: {}", o.positional[1], ec.message()), kExitUsage);
    constexpr int kAsksMax = 1000; // 30 s each: more than eight hours
    for (int ask = 0; ask < kAsksMax; ++ask) {
        json result;
        if (int rc = Call(o, "admin_backup", json{{"dir", dir.string()}, {"includeKey", !o.flags.count("nokey")}}, result); rc != 0) {
            return rc;
        }
        if (result.value("done", false)) {
            Print(result);
            return 0;
        }
        std::fprintf(stderr, "%s\n", result.value("message", std::string("still writing")).c_str());
    }
    return Fail("the backup did not finish; see the daemon's log");
}

// What the backend does before ledger_submitEvent, for tests and for trying the API:
// canonical payload, signing hash, BIP-340 signature with a key file (created if absent).
int SignOffchain(const Options& o)
{
    if (o.positional.size() != 4 || !o.flags.count("signkey")) {
        return Fail("usage: bitacora-cli -signkey=FILE signoffchain KIND IDEMPOTENCYKEY PAYLOADJSON", kExitUsage);
    }
    const json payload = ParseJsonBounded(o.positional[3]).value;
    if (!payload.is_object()) return Fail("PAYLOADJSON must be a JSON object", kExitUsage);
    auto signer = ledger::CheckpointSigner::LoadOrCreate(Flag(o, "signkey"));
    if (!signer) return Fail(signer.error());
    ledger::OffchainEvent event;
    event.kind = o.positional[1];
    event.idempotency_key = o.positional[2];
    const std::string canonical = payload.dump(); // keys sorted, no whitespace
    event.payload.assign(canonical.begin(), canonical.end());
    event.submitter = (*signer)->public_key();
    const auto signature = (*signer)->SignHash(ledger::OffchainSigningHash(event));
    Print(json{{"kind", event.kind}, {"idempotencyKey", event.idempotency_key}, {"payload", payload},
               {"submitter", HexEncode(event.submitter)}, {"signature", HexEncode(signature)}});
    return 0;
}

} // namespace

int main(int argc, char* argv[])
{
    const Options o = ParseArgs(argc, argv);
    if (o.flags.count("version") && o.positional.empty()) {
        std::printf("Bitácora RPC client version v%s\n", BITACORA_VERSION);
        return 0;
    }
    if (o.positional.empty() || o.flags.count("help") || o.flags.count("h")) {
        std::printf("Bitácora RPC client version v%s\n\n"
                    "Usage: bitacora-cli [options] <method> [params]   Send a command to bitacorad\n"
                    "       bitacora-cli [options] -named <method> [name=value]...\n"
                    "       bitacora-cli [options] help [method]       List methods, or describe one\n"
                    "       bitacora-cli verifyproof FILE [-checkpointkey=HEX] [-requireanchor]   Check a proof bundle offline\n"
                    "              [-btcrpcconnect=HOST[:PORT] -btcrpccookiefile=F | -btcrpcuser=U -btcrpcpassword=P "
                    "-minconfirmations=6]   ... and its block against bitcoind\n"
                    "       bitacora-cli exportots BUNDLE.json OUT.ots   Write the proof as an OpenTimestamps file\n"
                    "       bitacora-cli [options] backup DIR [-nokey]   Copy the running ledger into DIR (admin_backup)\n\n"
                    "Options: -chain=<base|base-sepolia|regtest> -datadir=<dir> -rpcconnect=<ip> -rpcport=<port>\n"
                    "         -rpcuser=<user> -rpcpassword=<pw> -rpccookiefile=<file> -named\n"
                    "Params: JSON objects, arrays, true/false as such, else strings; null skips an optional one\n"
                    "        (e.g. escrow_getOrders '{}' null 10)\n",
                    BITACORA_VERSION);
        return o.positional.empty() && !o.flags.count("help") && !o.flags.count("h") ? kExitUsage : 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const std::string& method = o.positional[0];
    if (method == "verifyproof") return VerifyProof(o);
    if (method == "exportots") return ExportOtsFile(o);
    if (method == "signoffchain") return SignOffchain(o);
    if (method == "backup") return Backup(o);
    if (method == "help") return Help(o);
    json params = json::array();
    if (o.flags.count("named")) {
        params = json::object();
        for (size_t i = 1; i < o.positional.size(); ++i) {
            const auto eq = o.positional[i].find('=');
            if (eq == std::string::npos) return Fail(fmt::format("-named needs name=value, got '{}'", o.positional[i]), kExitUsage);
            params[o.positional[i].substr(0, eq)] = Argument(o.positional[i].substr(eq + 1));
        }
    } else {
        for (size_t i = 1; i < o.positional.size(); ++i) params.push_back(Argument(o.positional[i]));
    }
    json result;
    if (int rc = Call(o, method, params, result); rc != 0) return rc;
    Print(result);
    return 0;
}
