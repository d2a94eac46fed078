#include "daemon/btc_options.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

namespace bitacora {
namespace {

struct BitcoinNetwork {
    const char* chain;
    uint16_t rpc_port;
    const char* cookie_subdir;
};
constexpr BitcoinNetwork kNetworks[] = {
    {"base", 8332, ""},
    {"base-sepolia", 48332, "testnet4"},
    {"regtest", 18443, "regtest"},
};

std::optional<std::string> ValidateHostPort(std::string_view value)
{
    std::string host;
    uint16_t port = 0;
    if (btc::ParseHostPort(value, host, port)) return std::nullopt;
    return "expected host, host:port or [ipv6]:port";
}

std::optional<std::string> ValidateFeeRate(std::string_view value)
{
    double rate = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), rate);
    // bitcoind takes a fee_rate to 3 decimals and refuses more with -3 "Invalid amount".
    const auto dot = value.find('.');
    const bool decimals_ok = value.find_first_of("eE") == std::string_view::npos &&
                             (dot == std::string_view::npos || value.size() - dot - 1 <= 3);
    if (ec == std::errc() && end == value.data() + value.size() && decimals_ok && rate >= 0.1 && rate <= 10'000) {
        return std::nullopt;
    }
    return "expected a fee rate in sat/vB between 0.1 and 10000, with at most 3 decimals";
}

} // namespace

void RegisterBtcArgs(ArgsManager& args)
{
    const std::string btc = "Bitcoin follower and anchoring options";
    args.AddArg({.name = "btcrpcconnect", .type = ArgType::String,
                 .help = "bitcoind's RPC address (host[:port]); without it the Bitcoin follower and anchoring are off",
                 .category = btc, .validate = ValidateHostPort});
    args.AddArg({.name = "btcrpcport", .type = ArgType::Int, .default_text = "8332 (base), 48332 (base-sepolia), 18443 (regtest)",
                 .help = "bitcoind's RPC port when -btcrpcconnect names none", .category = btc, .min = 1, .max = 65535});
    args.AddArg({.name = "btcrpccookiefile", .type = ArgType::Path, .default_text = "~/.bitcoin/<network>/.cookie",
                 .help = "bitcoind's cookie file (read again when bitcoind restarts); used without -btcrpcuser",
                 .category = btc});
    args.AddArg({.name = "btcrpcuser", .type = ArgType::String, .help = "bitcoind RPC user (with -btcrpcpassword)",
                 .category = btc});
    args.AddArg({.name = "btcrpcpassword", .type = ArgType::String, .help = "bitcoind RPC password", .category = btc});
    args.AddArg({.name = "btcwallet", .type = ArgType::String,
                 .help = "bitcoind wallet that funds and signs anchors (calls go to /wallet/<name>); empty: the node's "
                         "only loaded wallet",
                 .category = btc});
    args.AddArg({.name = "btcrpctimeout", .type = ArgType::Int, .default_text = "30000",
                 .help = "Milliseconds before a bitcoind call is abandoned", .category = btc, .min = 100, .max = 600'000});
    args.AddArg({.name = "btcstartheight", .type = ArgType::Int, .default_text = "the block after the tip at first start",
                 .help = "First Bitcoin block to process; fixed once the data dir has a Bitcoin cursor", .category = btc,
                 .min = 1});
    args.AddArg({.name = "btcpollinterval", .type = ArgType::Int, .default_text = "2000",
                 .help = "Milliseconds between polls of bitcoind's best block without ZMQ (with ZMQ: a 30 s safety net)",
                 .category = btc, .min = 10, .max = 600'000});
    args.AddArg({.name = "btczmq", .type = ArgType::Bool, .default_text = "1",
                 .help = "Subscribe to the ZMQ notifications bitcoind offers (sequence, else hashblock; see its "
                         "getzmqnotifications) to learn of blocks at once",
                 .category = btc});
    args.AddArg({.name = "anchor", .type = ArgType::Bool, .default_text = "1 with -btcrpcconnect",
                 .help = "Anchor the log's root into Bitcoin every -anchorinterval (admin_anchorNow works either way)",
                 .category = btc});
    args.AddArg({.name = "anchorinterval", .type = ArgType::Int, .default_text = "3600",
                 .help = "Seconds between anchors; an anchor is made only when the log grew", .category = btc, .min = 1,
                 .max = 31'536'000});
    args.AddArg({.name = "anchorfeerate", .type = ArgType::String,
                 .help = "Fee rate of anchor transactions in sat/vB; without it bitcoind estimates for -anchorconftarget",
                 .category = btc, .validate = ValidateFeeRate});
    args.AddArg({.name = "anchorconftarget", .type = ArgType::Int, .default_text = "6",
                 .help = "Confirmation target (blocks) for bitcoind's fee estimate", .category = btc, .min = 1, .max = 1008});
    args.AddArg({.name = "anchorbumpblocks", .type = ArgType::Int, .default_text = "3",
                 .help = "Blocks an anchor may wait in the mempool before its fee is bumped (BIP125 replacement)",
                 .category = btc, .min = 1, .max = 1008});
    args.AddArg({.name = "anchorconfirmations", .type = ArgType::Int, .default_text = "6",
                 .help = "Confirmations after which an anchor is final", .category = btc, .min = 1, .max = 1000});
    args.AddArg({.name = "anchorretry", .type = ArgType::Int, .default_text = "30",
                 .help = "Seconds before a failed anchoring step (node down, no funds, no wallet) is tried again",
                 .category = btc, .min = 1, .max = 86'400});
}

Result<std::optional<BtcConfig>> BtcConfigFromArgs(const ArgsManager& args, const std::string& chain)
{
    if (!args.IsSet("btcrpcconnect")) return std::optional<BtcConfig>{};
    const BitcoinNetwork* network = &kNetworks[0];
    for (const auto& n : kNetworks) {
        if (chain == n.chain) network = &n;
    }
    BtcConfig c;
    c.rpc.port = static_cast<uint16_t>(args.GetInt("btcrpcport", network->rpc_port));
    if (!btc::ParseHostPort(args.GetString("btcrpcconnect", ""), c.rpc.host, c.rpc.port)) {
        return Error{"-btcrpcconnect: expected host, host:port or [ipv6]:port"};
    }
    c.rpc.user = args.GetString("btcrpcuser", "");
    c.rpc.password = args.GetString("btcrpcpassword", "");
    if (c.rpc.user.empty() != c.rpc.password.empty()) return Error{"-btcrpcuser and -btcrpcpassword go together"};
    if (args.IsSet("btcrpccookiefile")) {
        c.rpc.cookie_file = args.GetString("btcrpccookiefile", "");
    } else {
        const char* home = std::getenv("HOME");
        c.rpc.cookie_file = std::filesystem::path(home != nullptr && *home != '\0' ? home : "/") / ".bitcoin" /
                            network->cookie_subdir / ".cookie";
    }
    c.rpc.wallet = args.GetString("btcwallet", "");
    c.rpc.timeout_ms = static_cast<uint32_t>(args.GetInt("btcrpctimeout", 30'000));
    c.follower.start_height = args.GetInt("btcstartheight", -1);
    c.follower.poll_interval_ms = static_cast<uint32_t>(args.GetInt("btcpollinterval", 2'000));
    c.follower.use_zmq = args.GetBool("btczmq", true);
    c.anchorer.enabled = args.GetBool("anchor", true);
    c.anchorer.interval_s = static_cast<uint32_t>(args.GetInt("anchorinterval", 3'600));
    if (args.IsSet("anchorfeerate")) {
        const std::string text = args.GetString("anchorfeerate", "");
        double rate = 0;
        std::from_chars(text.data(), text.data() + text.size(), rate);
        c.anchorer.fee_rate_sat_vb = rate;
    }
    c.anchorer.conf_target = static_cast<uint32_t>(args.GetInt("anchorconftarget", 6));
    c.anchorer.bump_after_blocks = static_cast<uint32_t>(args.GetInt("anchorbumpblocks", 3));
    c.anchorer.final_confirmations = static_cast<uint32_t>(args.GetInt("anchorconfirmations", 6));
    c.anchorer.retry_s = static_cast<uint32_t>(args.GetInt("anchorretry", 30));
    return std::optional<BtcConfig>(std::move(c));
}

} // namespace bitacora
