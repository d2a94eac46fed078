// The compiled ABI in contracts/out is the contract between contracts/ and the
// indexer: every event the indexer decodes must have the artifact's topic0 and
// parameter layout (types, indexed flags, names), and every artifact event must be
// decoded or deliberately ignored.
#include "common/hex.h"
#include "indexer/evm/platform_events.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

using namespace bitacora;
using namespace bitacora::evm;

namespace {

std::filesystem::path ArtifactsDir()
{
    const char* dir = std::getenv("BITACORA_CONTRACTS_OUT");
    REQUIRE_MESSAGE(dir != nullptr, "BITACORA_CONTRACTS_OUT is not set (meson test sets it)");
    return dir;
}

nlohmann::json LoadAbi(PlatformContract contract)
{
    const std::string name(ContractName(contract));
    const auto path = ArtifactsDir() / (name + ".sol") / (name + ".json");
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "missing artifact " << path.string() << ": run `forge build` in contracts/ (scripts/setup.sh does)");
    return nlohmann::json::parse(in).at("abi");
}

} // namespace

TEST_CASE("every decoded event matches the compiled artifact")
{
    for (const auto contract : {PlatformContract::Escrow, PlatformContract::Vault}) {
        const auto compiled = EventsFromAbiJson(LoadAbi(contract));
        REQUIRE_MESSAGE(compiled, (compiled ? "" : compiled.error()));

        std::set<std::string> decoded_names;
        for (const auto& ours : PlatformEvents()) {
            if (ours.contract != contract) continue;
            decoded_names.insert(ours.abi.name);
            const EventAbi* theirs = nullptr;
            for (const auto& event : *compiled) {
                if (event.name == ours.abi.name) theirs = &event;
            }
            REQUIRE_MESSAGE(theirs != nullptr, ContractName(contract) << " has no event " << ours.abi.name);
            CHECK_MESSAGE(HexEncode(theirs->Topic0()) == HexEncode(ours.abi.Topic0()), ours.abi.Signature());
            CHECK(theirs->anonymous == ours.abi.anonymous);
            REQUIRE(theirs->params.size() == ours.abi.params.size());
            for (size_t i = 0; i < ours.abi.params.size(); ++i) {
                INFO(ours.abi.name << " parameter " << i);
                CHECK(theirs->params[i].name == ours.abi.params[i].name);
                CHECK(theirs->params[i].type.Canonical() == ours.abi.params[i].type.Canonical());
                CHECK(theirs->params[i].indexed == ours.abi.params[i].indexed);
            }
        }
        for (const auto& event : *compiled) {
            bool ignored = false;
            for (const auto name : IgnoredEvents(contract)) ignored = ignored || name == event.name;
            CHECK_MESSAGE((decoded_names.count(event.name) == 1 || ignored),
                          ContractName(contract) << " emits " << event.Signature()
                                                 << ", which the indexer neither decodes nor ignores");
        }
    }
}

TEST_CASE("platform event signatures are unique per contract")
{
    std::set<std::pair<int, std::string>> seen;
    for (const auto& event : PlatformEvents()) {
        CHECK(seen.insert({static_cast<int>(event.contract), HexEncode(event.abi.Topic0())}).second);
    }
}
