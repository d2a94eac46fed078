// Ledger::Backup on a ledger that is being appended to: the copy opens on its own, holds
// exactly the size and root it reports (which the original had at that size), its anchors
// and the marks of what was signed and anchored, and the checkpoint key.
#include "common/hex.h"
#include "daemon/backup.h"
#include "ledger/ledger.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <sys/stat.h>
#include <thread>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

std::unique_ptr<Ledger> OpenAt(const std::filesystem::path& db, const std::filesystem::path& key)
{
    LedgerOptions options;
    options.checkpoint_key_path = key;
    options.create_if_missing = true;
    auto ledger = Ledger::Open(db, options);
    REQUIRE_MESSAGE(ledger, (ledger ? "" : ledger.error()));
    return std::move(ledger.value());
}

void AppendRange(Ledger& ledger, uint64_t begin, uint64_t end)
{
    std::vector<Event> events;
    for (uint64_t i = begin; i < end; ++i) events.push_back(ReferenceEvent(i));
    auto appended = ledger.Append(events);
    REQUIRE_MESSAGE(appended, (appended ? "" : appended.error()));
}

std::string ReadAll(const std::filesystem::path& path)
{
    std::ifstream file(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("a backup taken during appends holds exactly the size and root it reports")
{
    TempDir dir("backup");
    auto ledger = OpenAt(dir.path / "db", dir.path / "checkpoint.key");
    AppendRange(*ledger, 0, 3000);
    AnchorRecord anchor;
    anchor.id = 1;
    anchor.tree_size = 2000;
    anchor.root = *ledger->RootAt(2000);
    REQUIRE(ledger->PutAnchor(anchor, {}));
    const auto signed_checkpoint = ledger->SignCheckpoint(1'700'000'000);
    REQUIRE(signed_checkpoint);

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> next{ledger->size()};
    std::thread appender([&] {
        while (!stop) {
            const uint64_t begin = next.fetch_add(50);
            std::vector<Event> events;
            for (uint64_t i = begin; i < begin + 50; ++i) events.push_back(ReferenceEvent(i));
            if (!ledger->Append(events)) break;
        }
    });
    std::vector<std::pair<std::filesystem::path, BackupResult>> backups;
    for (int i = 0; i < 4; ++i) {
        const auto target = dir.path / ("backup-" + std::to_string(i));
        auto result = ledger->Backup(target, true);
        REQUIRE_MESSAGE(result, (result ? "" : result.error()));
        backups.emplace_back(target, *result);
    }
    stop = true;
    appender.join();

    uint64_t previous_size = 0;
    for (const auto& entry : backups) {
        const auto& target = entry.first; // not a structured binding: INFO captures it (clang 14)
        const auto& result = entry.second;
        INFO(target.string());
        CHECK(result.tree_size >= previous_size);
        CHECK(result.tree_size >= 3001); // the anchor's batch is in every copy
        previous_size = result.tree_size;
        // The original had this root at this size: the copy is a prefix of the log.
        CHECK(*ledger->RootAt(result.tree_size) == result.root);
        CHECK(result.anchors == 1);
        REQUIRE(result.latest_anchor);
        CHECK(result.latest_anchor->root == anchor.root);
        CHECK(result.mark.synced == MarkedTree{result.tree_size, result.root});
        CHECK(result.mark.checkpoint == MarkedTree{signed_checkpoint->tree_size, signed_checkpoint->root});
        CHECK(result.mark.anchor_id == 1);
        CHECK(result.key_included);
        CHECK(result.checkpoint_public_key == ledger->checkpoint_public_key());
        struct stat info{};
        REQUIRE(::stat((target / "checkpoint.key").c_str(), &info) == 0);
        CHECK((info.st_mode & 0777) == 0600);
        CHECK(ReadAll(target / "checkpoint.key") == ReadAll(dir.path / "checkpoint.key"));
    }
    // A restore: the copy opens read-write with its key and goes on from where it was.
    const auto& [target, result] = backups.back();
    auto restored = OpenAt(target / "ledger", target / "checkpoint.key");
    CHECK(restored->size() == result.tree_size);
    CHECK(restored->root() == result.root);
    CHECK(restored->checkpoint_public_key() == ledger->checkpoint_public_key());
    CHECK(restored->GetAnchor(1)->tree_size == 2000);
    CHECK(restored->high_water()->checkpoint.size == signed_checkpoint->tree_size);
    const uint64_t size = restored->size();
    AppendRange(*restored, size, size + 10);
    CHECK(restored->root() == *ledger->RootAt(size + 10)); // the same events, the same tree
    auto report = restored->CheckConsistency();
    REQUIRE(report);
    CHECK_MESSAGE(report->ok(), (report->problems.empty() ? "" : report->problems.front()));
}

TEST_CASE("a backup refuses a relative, non-empty or file target, and can leave the key out")
{
    TempDir dir("backup-refusals");
    auto ledger = OpenAt(dir.path / "db", dir.path / "checkpoint.key");
    AppendRange(*ledger, 0, 10);
    const auto taken = dir.path / "taken";
    std::filesystem::create_directories(taken);
    std::ofstream(taken / "something") << "x";
    auto refused = ledger->Backup(taken, true);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("not empty") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(taken / "ledger"));
    auto relative = ledger->Backup("relative/dir", true);
    REQUIRE_FALSE(relative);
    CHECK(relative.error().find("not an absolute path") != std::string::npos);
    auto file = ledger->Backup(taken / "something", true);
    REQUIRE_FALSE(file);
    CHECK(file.error().find("not a directory") != std::string::npos);

    const auto empty = dir.path / "empty";
    std::filesystem::create_directories(empty);
    auto keyless = ledger->Backup(empty, false);
    REQUIRE_MESSAGE(keyless, (keyless ? "" : keyless.error()));
    CHECK_FALSE(keyless->key_included);
    CHECK(keyless->checkpoint_public_key == ledger->checkpoint_public_key());
    CHECK_FALSE(std::filesystem::exists(empty / "checkpoint.key"));
    CHECK(keyless->tree_size == 10);
}

TEST_CASE("admin_backup's runner: a bounded wait, asked again for the same dir, one backup at a time")
{
    TempDir dir("backup-runner");
    auto ledger = OpenAt(dir.path / "db", dir.path / "checkpoint.key");
    for (uint64_t begin = 0; begin < 200'000; begin += 20'000) AppendRange(*ledger, begin, begin + 20'000);
    std::ofstream(dir.path / "evm-chain.json") << "{\"chainId\": 31337, \"startBlock\": 1}\n";
    BackupRunner runner(*ledger, dir.path);

    const auto target = dir.path / "b1";
    auto first = runner.Run(target, true, std::chrono::milliseconds(0));
    REQUIRE(first.answer);
    // Not waited for: it still runs (a flush and a copy of 200,000 events take far more than no time).
    CHECK(first.answer->at("done") == false);
    CHECK(first.answer->at("message").get<std::string>().find("call again with the same dir") != std::string::npos);
    auto other = runner.Run(dir.path / "b2", true, std::chrono::milliseconds(0));
    REQUIRE_FALSE(other.answer);
    CHECK(other.refused);
    CHECK(other.answer.error().find("a backup into") != std::string::npos);

    auto done = runner.Run(target, true, std::chrono::seconds(60));
    REQUIRE_MESSAGE(done.answer, (done.answer ? "" : done.answer.error()));
    const nlohmann::json& manifest = *done.answer;
    CHECK(manifest.at("done") == true);
    CHECK(manifest.at("treeSize") == 200'000);
    CHECK(manifest.at("root") == HexEncode0x(ledger->root()));
    CHECK(manifest.at("files") == nlohmann::json::array({"evm-chain.json"}));
    CHECK(ReadAll(target / "evm-chain.json") == ReadAll(dir.path / "evm-chain.json"));
    CHECK(nlohmann::json::parse(ReadAll(target / kBackupManifestName)) == manifest);

    // Finished and answered: the same dir again is a new backup, refused (not empty).
    auto again = runner.Run(target, true, std::chrono::seconds(60));
    REQUIRE_FALSE(again.answer);
    CHECK(again.refused);
    CHECK(again.answer.error().find("not empty") != std::string::npos);
    auto relative = runner.Run("relative", true, std::chrono::seconds(1));
    REQUIRE_FALSE(relative.answer);
    CHECK(relative.refused);
}
