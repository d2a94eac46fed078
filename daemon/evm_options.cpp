#include "daemon/evm_options.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <charconv>
#include <memory>

namespace bitacora {
namespace {

constexpr int64_t kPollIntervalMsDefault = 2'000;
constexpr int64_t kRpcTimeoutMsDefault = 30'000;
constexpr int64_t kLogRangeDefault = 10;
constexpr int64_t kLogRangeMaxDefault = 10'000;
constexpr int64_t kLogsPerRequestDefault = 5'000;
constexpr int64_t kPendingBlocksMaxDefault = 2'000;
constexpr int64_t kReconcileIntervalSDefault = 60;

std::optional<std::string> ValidateAddress(std::string_view value)
{
    if (evm::ParseAddress(value)) return std::nullopt;
    return "expected a 0x-prefixed 20-byte hex address";
}

// Parsed by libcurl now, as every request will parse it: a URL that passes here
// cannot then fail on every request (a trailing comment, a typo in the port).
std::optional<std::string> ValidateUrl(std::string_view value)
{
    for (const char c : value) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte >= 0x7f) {
            return "a URL holds no spaces, control or non-ASCII bytes (percent-encode them; a comment goes on a line "
                   "of its own)";
        }
    }
    const std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(), &curl_url_cleanup);
    if (!url) return "cannot parse URLs (out of memory)";
    if (const CURLUcode code = curl_url_set(url.get(), CURLUPART_URL, std::string(value).c_str(), 0); code != CURLUE_OK) {
        return fmt::format("not a valid URL ({}); expected http://host[:port][/path] or https://...", curl_url_strerror(code));
    }
    auto part = [&](CURLUPart which) -> std::optional<std::string> {
        char* text = nullptr;
        if (curl_url_get(url.get(), which, &text, 0) != CURLUE_OK || text == nullptr) return std::nullopt;
        std::string out(text);
        curl_free(text);
        return out;
    };
    const auto scheme = part(CURLUPART_SCHEME);
    if (scheme != "http" && scheme != "https") return "expected an http:// or https:// URL";
    if (part(CURLUPART_HOST).value_or("").empty()) return "the URL names no host";
    if (part(CURLUPART_FRAGMENT)) return "a #fragment is never sent to the node; remove it";
    return std::nullopt;
}

std::optional<std::string> ValidateVerifyMode(std::string_view value)
{
    if (evm::ParseVerifyMode(value)) return std::nullopt;
    return "expected bloom, receipts, quorum or none";
}

std::optional<std::string> ValidateFinality(std::string_view value)
{
    if (value == "finalized" || value == "safe") return std::nullopt;
    uint64_t depth = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), depth);
    if (ec == std::errc() && end == value.data() + value.size() && depth <= 1'000'000) return std::nullopt;
    return "expected finalized, safe, or a number of confirmations (0 to 1000000)";
}

} // namespace

void RegisterEvmArgs(ArgsManager& args)
{
    const std::string evm = "EVM follower options";
    args.AddArg({.name = "evmrpc", .type = ArgType::List,
                 .help = "JSON-RPC endpoint of the EVM node (http:// or https://); repeat for failover, tried in order. "
                         "Without it the follower is off",
                 .category = evm, .validate = ValidateUrl});
    args.AddArg({.name = "evmchainid", .type = ArgType::Int, .default_text = "8453 (base), 84532 (base-sepolia), 31337 (regtest)",
                 .help = "Chain id the node must report; a different one stops start-up", .category = evm, .min = 1});
    args.AddArg({.name = "escrow", .type = ArgType::String, .help = "Address of the P2PEscrow contract",
                 .category = evm, .validate = ValidateAddress});
    args.AddArg({.name = "vault", .type = ArgType::String, .help = "Address of the YieldVault contract",
                 .category = evm, .validate = ValidateAddress});
    args.AddArg({.name = "evmstartblock", .type = ArgType::Int,
                 .help = "First block to index: the contracts' deployment block. Fixed for a data dir",
                 .category = evm, .min = 1});
    args.AddArg({.name = "evmfinality", .type = ArgType::String, .default_text = "finalized",
                 .help = "When a block is final and enters the log: finalized (the node's finalized tag), safe, or a "
                         "number of confirmations N (head - N)",
                 .category = evm, .validate = ValidateFinality});
    args.AddArg({.name = "evmpollinterval", .type = ArgType::Int, .default_text = std::to_string(kPollIntervalMsDefault),
                 .help = "Milliseconds between polls for a new head once caught up", .category = evm, .min = 10,
                 .max = 600'000});
    args.AddArg({.name = "evmrpctimeout", .type = ArgType::Int, .default_text = std::to_string(kRpcTimeoutMsDefault),
                 .help = "Milliseconds before an RPC request is abandoned and retried", .category = evm, .min = 100,
                 .max = 600'000});
    args.AddArg({.name = "evmlogrange", .type = ArgType::Int, .default_text = std::to_string(kLogRangeDefault),
                 .help = "Blocks in the first eth_getLogs request of a catch-up; the range then adapts to the logs "
                         "returned and to the node's limits",
                 .category = evm, .min = 1, .max = 1'000'000});
    args.AddArg({.name = "evmlograngemax", .type = ArgType::Int, .default_text = std::to_string(kLogRangeMaxDefault),
                 .help = "Most blocks in one eth_getLogs request", .category = evm, .min = 1, .max = 1'000'000});
    args.AddArg({.name = "evmlogsperrequest", .type = ArgType::Int, .default_text = std::to_string(kLogsPerRequestDefault),
                 .help = "Logs per eth_getLogs answer the range adapts towards", .category = evm, .min = 10,
                 .max = 100'000});
    args.AddArg({.name = "evmfetchers", .type = ArgType::Int, .default_text = "2",
                 .help = "eth_getLogs ranges fetched at the same time during a catch-up", .category = evm, .min = 1,
                 .max = 8});
    args.AddArg({.name = "evmmaxpending", .type = ArgType::Int, .default_text = std::to_string(kPendingBlocksMaxDefault),
                 .help = "Most unfinalized blocks followed ahead of the final one", .category = evm, .min = 1,
                 .max = 10'000});
    args.AddArg({.name = "evmverify", .type = ArgType::String, .default_text = "bloom",
                 .help = "What is checked of the node's answers beyond block hashes and parents: bloom (every header's "
                         "fields against its hash, every log against its block's logsBloom), receipts (and the receipts "
                         "of blocks with watched logs against receiptsRoot: catches forged and dropped logs), quorum "
                         "(bloom, and every final range as -evmquorum of the -evmrpc endpoints give it), or none",
                 .category = evm, .validate = ValidateVerifyMode});
    args.AddArg({.name = "evmquorum", .type = ArgType::Int, .default_text = "2",
                 .help = "With -evmverify=quorum: how many -evmrpc endpoints must give the same final range",
                 .category = evm, .min = 1, .max = 16});
    args.AddArg({.name = "evmreconcile", .type = ArgType::Bool, .default_text = "1",
                 .help = "At final blocks, compare the escrow's USDC balance and the vault's share supply (eth_call) "
                         "with the projections and report drift",
                 .category = evm});
    args.AddArg({.name = "evmreconcileinterval", .type = ArgType::Int,
                 .default_text = std::to_string(kReconcileIntervalSDefault),
                 .help = "Seconds between reconciliations", .category = evm, .min = 0, .max = 86'400});
}

Result<std::optional<evm::FollowerOptions>> EvmOptionsFromArgs(const ArgsManager& args, uint64_t default_chain_id,
                                                               const std::filesystem::path& netdir)
{
    const auto urls = args.GetList("evmrpc");
    if (urls.empty()) return std::optional<evm::FollowerOptions>{};
    for (const char* required : {"escrow", "vault", "evmstartblock"}) {
        if (!args.IsSet(required)) return Error{fmt::format("-evmrpc is set, so -{} is needed too", required)};
    }
    evm::FollowerOptions o;
    o.rpc.urls = urls;
    o.rpc.timeout_ms = static_cast<uint32_t>(args.GetInt("evmrpctimeout", kRpcTimeoutMsDefault));
    o.chain_id = static_cast<uint64_t>(args.GetInt("evmchainid", static_cast<int64_t>(default_chain_id)));
    o.escrow = *evm::ParseAddress(args.GetString("escrow", ""));
    o.vault = *evm::ParseAddress(args.GetString("vault", ""));
    if (o.escrow == o.vault) return Error{"-escrow and -vault are the same address"};
    o.start_block = static_cast<uint64_t>(args.GetInt("evmstartblock", 1));
    const std::string finality = args.GetString("evmfinality", "finalized");
    if (finality == "finalized") o.finality = evm::FinalityRule::Finalized;
    else if (finality == "safe") o.finality = evm::FinalityRule::Safe;
    else {
        o.finality = evm::FinalityRule::Depth;
        std::from_chars(finality.data(), finality.data() + finality.size(), o.finality_depth);
    }
    o.poll_interval_ms = static_cast<uint32_t>(args.GetInt("evmpollinterval", kPollIntervalMsDefault));
    o.range_blocks_initial = static_cast<uint64_t>(args.GetInt("evmlogrange", kLogRangeDefault));
    o.range_blocks_max = static_cast<uint64_t>(args.GetInt("evmlograngemax", kLogRangeMaxDefault));
    if (o.range_blocks_initial > o.range_blocks_max) o.range_blocks_initial = o.range_blocks_max;
    o.logs_per_request_target = static_cast<uint64_t>(args.GetInt("evmlogsperrequest", kLogsPerRequestDefault));
    o.pending_blocks_max = static_cast<uint64_t>(args.GetInt("evmmaxpending", kPendingBlocksMaxDefault));
    o.fetchers = static_cast<size_t>(args.GetInt("evmfetchers", 2));
    o.verify = *evm::ParseVerifyMode(args.GetString("evmverify", "bloom"));
    o.quorum = static_cast<size_t>(args.GetInt("evmquorum", 2));
    if (o.verify == evm::VerifyMode::Quorum && o.quorum > urls.size()) {
        return Error{fmt::format("-evmverify=quorum needs -evmquorum={} endpoints to agree, but {} -evmrpc {} configured",
                                 o.quorum, urls.size(), urls.size() == 1 ? "is" : "are")};
    }
    o.reconcile = args.GetBool("evmreconcile", true);
    o.reconcile_interval_ms = static_cast<uint32_t>(args.GetInt("evmreconcileinterval", kReconcileIntervalSDefault) * 1000);
    o.identity_path = netdir / "evm-chain.json";
    return std::optional<evm::FollowerOptions>(std::move(o));
}

} // namespace bitacora
