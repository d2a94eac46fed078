// bitacora-inspect: reads a stopped bitacorad's ledger and answers queries on stdin, one
// JSON object per line on stdout. For operators (what is in this data dir?) and for the
// integration tests, which compare the projections with the contracts' own state.
//
//   bitacora-inspect <datadir>/regtest/ledger <<< $'summary\norder 7\nposition 0xabc...\ntotals'
//   bitacora-inspect <datadir>/regtest/ledger check    (the full consistency check; exit 1 if it fails)
//
// The ledger is opened read-only, so that a damaged one (refused by bitacorad) can still
// be looked at: `health` says what its opening found.
#include "common/hex.h"
#include "common/logging.h"
#include "indexer/evm/chain.h"
#include "ledger/ledger.h"
#include "rpc/ledger_json.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

using namespace bitacora;
using nlohmann::json;

namespace {

json Answer(ledger::Ledger& ledger, const std::string& line)
{
    std::istringstream in(line);
    std::string command, argument;
    in >> command >> argument;
    if (command == "summary") {
        json out = {{"size", ledger.size()}, {"root", HexEncode0x(ledger.root())}, {"schemaVersion", ledger.schema_version()}};
        if (auto hash = ledger.StateHash()) out["stateHash"] = HexEncode0x(*hash);
        if (auto cursor = ledger.GetCursor("evm")) {
            out["evmCursor"] = {{"block", cursor->block_number}, {"hash", HexEncode0x(cursor->block_hash)}};
        }
        return out;
    }
    if (command == "totals") {
        return rpc::TotalsJson(ledger.GetTotals(false));
    }
    if (command == "order") {
        const auto id = UInt256::FromDecimal(argument);
        if (!id) return {{"error", "order needs a decimal id"}};
        const auto order = ledger.GetOrder(*id, false);
        return order ? rpc::OrderJson(*order) : json{{"orderId", argument}, {"found", false}};
    }
    if (command == "position" || command == "reputation") {
        const auto address = evm::ParseAddress(argument);
        if (!address) return {{"error", address.error()}};
        if (command == "reputation") {
            const auto reputation = ledger.GetReputation(*address, false);
            return {{"seller", argument}, {"reputation", reputation ? json(*reputation) : json(nullptr)}};
        }
        const auto p = ledger.GetPosition(*address, false);
        if (!p) return {{"owner", argument}, {"found", false}};
        json out = rpc::PositionJson(*p);
        out["owner"] = argument;
        return out;
    }
    if (command == "health") return rpc::HealthJson(ledger.health());
    if (command == "check") {
        const auto report = ledger.CheckConsistency();
        if (!report) return {{"error", report.error()}};
        return rpc::ConsistencyReportJson(*report);
    }
    if (command == "leaf") {
        const auto index = std::strtoull(argument.c_str(), nullptr, 10);
        const auto leaf = ledger.GetLeaf(index);
        if (!leaf) return {{"error", leaf.error()}};
        return {{"index", index}, {"leaf", HexEncode0x(*leaf)}};
    }
    return {{"error", "unknown command '" + command + "'; expected summary, totals, order, position, reputation, leaf, health, check"}};
}

constexpr const char* kUsage =
    "Usage: bitacora-inspect <ledger directory> [check] < queries\n"
    "Queries, one per line: summary | totals | order <id> | position <address> | "
    "reputation <address> | leaf <index> | health | check\n"
    "check alone: the full consistency check, exit status 1 when it finds a problem.\n"
    "The daemon should be stopped (a running one: admin_checkLedger).\n"
    "Options: -help, -version. A ledger directory whose name starts with - is given as ./-name.\n";

// -help and -version as the daemon spells them; any other -option is not a directory.
std::optional<int> Option(const std::string& arg)
{
    if (arg.empty() || arg[0] != '-') return std::nullopt;
    const std::string name = arg.substr(arg.starts_with("--") ? 2 : 1);
    if (name == "help" || name == "h" || name == "?") {
        std::printf("Bitácora ledger inspector version v%s\n\n%s", BITACORA_VERSION, kUsage);
        return 0;
    }
    if (name == "version") {
        std::printf("Bitácora ledger inspector version v%s\n", BITACORA_VERSION);
        return 0;
    }
    std::fprintf(stderr, "Error: unknown option '%s'\n%s", arg.c_str(), kUsage);
    return 2;
}

} // namespace

int main(int argc, char* argv[])
{
    for (int i = 1; i < argc; ++i) {
        if (auto code = Option(argv[i])) return *code;
    }
    const bool check_only = argc == 3 && std::string(argv[2]) == "check";
    if (argc != 2 && !check_only) {
        std::fprintf(stderr, "%s", kUsage);
        return 2;
    }
    // stdout carries the answers only; the ledger's own log lines go to stderr.
    log::GetLogger().SetPrintToConsole(false);
    ledger::LedgerOptions options;
    options.create_if_missing = false;
    options.read_only = true;
    auto opened = ledger::Ledger::Open(argv[1], options);
    if (!opened) {
        std::fprintf(stderr, "Error: %s\n", opened.error().c_str());
        return 1;
    }
    if (check_only) {
        const json report = Answer(*opened.value(), "check");
        std::cout << report.dump(2) << "\n";
        return report.value("consistent", false) ? 0 : 1;
    }
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.empty()) continue;
        std::cout << Answer(*opened.value(), line).dump() << "\n";
    }
    return 0;
}
