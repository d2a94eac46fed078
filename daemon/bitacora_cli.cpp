// bitacora-cli: a client for bitacorad's JSON-RPC API in the spirit of bitcoin-cli, and
// an offline verifier of proof bundles.
//
//   bitacora-cli [-chain=regtest] [-datadir=DIR] [-rpcconnect=HOST] [-rpcport=N]
//                [-rpcuser=U -rpcpassword=P | -rpccookiefile=FILE] [-named] METHOD [ARG...]
//   bitacora-cli help [METHOD]
//   bitacora-cli verifyproof FILE [-checkpointkey=HEX]
#include "common/hex.h"
#include "daemon/init.h"
#include "ledger/checkpoint.h"
#include "ledger/event.h"
#include "ledger/merkle.h"
#include "ledger/merkle_verify.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
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
// literal, else a string; the server turns "7" into 7 where a number is wanted.
json Argument(const std::string& text)
{
    json parsed = json::parse(text, nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array() || parsed.is_boolean())) return parsed;
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
    const json response = json::parse(answer.body, nullptr, false);
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
    std::printf("\nOffline:\nverifyproof FILE ( -checkpointkey=HEX )\n-signkey=FILE signoffchain KIND IDEMPOTENCYKEY PAYLOADJSON\n");
    return 0;
}

template <size_t N>
bool FixedHex(const json& value, std::array<uint8_t, N>& out)
{
    return value.is_string() && HexDecodeExact(value.get<std::string>(), out);
}

// Checks a proof bundle (ledger_getProofBundle) with no node and no daemon: the leaf
// decodes to the event shown, the inclusion path leads to the root, and the
// checkpoint over that root is signed. Prints the first check that fails.
int VerifyProof(const Options& o)
{
    if (o.positional.size() < 2) return Fail("usage: bitacora-cli verifyproof FILE [-checkpointkey=HEX]", kExitUsage);
    std::ifstream file(o.positional[1]);
    if (!file) return Fail("cannot read " + o.positional[1]);
    const json bundle = json::parse(file, nullptr, false);
    auto reject = [](const std::string& check) {
        std::printf("INVALID: %s\n", check.c_str());
        return 1;
    };
    if (!bundle.is_object() || bundle.value("version", 0) != 1 || !bundle.contains("proof") || !bundle.contains("checkpoint")) {
        return reject("not a version 1 proof bundle");
    }
    const json& proof = bundle["proof"];
    const json& cp = bundle["checkpoint"];
    const auto leaf = proof.contains("leaf") && proof["leaf"].is_string() ? HexDecode(proof["leaf"].get<std::string>())
                                                                         : std::nullopt;
    if (!leaf) return reject("proof.leaf is not hex");
    const auto event = ledger::DecodeEvent(*leaf);
    if (!event) return reject("proof.leaf does not decode: " + event.error());
    if (bundle.contains("event") && bundle["event"].value("kind", "") != ledger::EventKindName(event->kind())) {
        return reject("the event shown is not the event in the leaf");
    }
    if (!proof["index"].is_number_unsigned() || !proof["treeSize"].is_number_unsigned() || !proof["path"].is_array()) {
        return reject("proof index, treeSize or path malformed");
    }
    if (bundle.value("index", json()) != proof["index"]) return reject("bundle index differs from proof index");
    std::vector<Hash256> path;
    for (const auto& node : proof["path"]) {
        Hash256 hash{};
        if (!FixedHex(node, hash)) return reject("proof.path holds something that is not a 32-byte hash");
        path.push_back(hash);
    }
    Hash256 root{};
    if (!FixedHex(proof["root"], root)) return reject("proof.root malformed");
    const uint64_t index = proof["index"].get<uint64_t>();
    const uint64_t size = proof["treeSize"].get<uint64_t>();
    if (auto status = ledger::VerifyInclusion(ledger::MerkleLeafHash(*leaf), index, size, path, root); !status) {
        return reject("inclusion proof: " + status.error());
    }
    ledger::Checkpoint checkpoint;
    if (!cp["treeSize"].is_number_unsigned() || !cp["timestamp"].is_number_unsigned() || !FixedHex(cp["root"], checkpoint.root) ||
        !FixedHex(cp["publicKey"], checkpoint.public_key) || !FixedHex(cp["signature"], checkpoint.signature)) {
        return reject("checkpoint malformed");
    }
    checkpoint.tree_size = cp["treeSize"].get<uint64_t>();
    checkpoint.timestamp = cp["timestamp"].get<uint64_t>();
    if (checkpoint.tree_size != size || checkpoint.root != root) return reject("the checkpoint is not over the proof's tree");
    ledger::XOnlyPubKey key = checkpoint.public_key;
    const bool pinned = o.flags.count("checkpointkey") != 0;
    if (pinned && !HexDecodeExact(Flag(o, "checkpointkey"), key)) return Fail("-checkpointkey must be 32 bytes of hex", kExitUsage);
    if (auto status = ledger::VerifyCheckpoint(checkpoint, key); !status) return reject("checkpoint signature: " + status.error());
    std::printf("VALID: event %llu (%s) is in the log of %llu events with root %s, signed at %llu by %s%s\n",
                static_cast<unsigned long long>(index), std::string(ledger::EventKindName(event->kind())).c_str(),
                static_cast<unsigned long long>(size), HexEncode(root).c_str(),
                static_cast<unsigned long long>(checkpoint.timestamp), HexEncode(key).c_str(),
                pinned ? "" : " (the key in the bundle; pass -checkpointkey=HEX to pin the operator's key)");
    return 0;
}

// What the backend does before ledger_submitEvent, for tests and for trying the API:
// canonical payload, signing hash, BIP-340 signature with a key file (created if absent).
int SignOffchain(const Options& o)
{
    if (o.positional.size() != 4 || !o.flags.count("signkey")) {
        return Fail("usage: bitacora-cli -signkey=FILE signoffchain KIND IDEMPOTENCYKEY PAYLOADJSON", kExitUsage);
    }
    const json payload = json::parse(o.positional[3], nullptr, false);
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
    if (o.positional.empty() || o.flags.count("help") || o.flags.count("h")) {
        std::printf("Bitácora RPC client version v%s\n\n"
                    "Usage: bitacora-cli [options] <method> [params]   Send a command to bitacorad\n"
                    "       bitacora-cli [options] -named <method> [name=value]...\n"
                    "       bitacora-cli [options] help [method]       List methods, or describe one\n"
                    "       bitacora-cli verifyproof FILE [-checkpointkey=HEX]   Check a proof bundle offline\n\n"
                    "Options: -chain=<base|base-sepolia|regtest> -datadir=<dir> -rpcconnect=<ip> -rpcport=<port>\n"
                    "         -rpcuser=<user> -rpcpassword=<pw> -rpccookiefile=<file> -named\n",
                    BITACORA_VERSION);
        return o.positional.empty() && !o.flags.count("help") && !o.flags.count("h") ? kExitUsage : 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const std::string& method = o.positional[0];
    if (method == "verifyproof") return VerifyProof(o);
    if (method == "signoffchain") return SignOffchain(o);
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
