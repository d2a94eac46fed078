// admin_backup: a consistent copy of the running ledger (ledger::Ledger::Backup) on a
// thread of its own, so that an API worker waits for it a bounded time; with
// BACKUP.json, written last, saying what the copy holds and how to restore it.
#pragma once

#include "common/sync.h"
#include "ledger/ledger.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bitacora {

inline constexpr const char* kBackupManifestName = "BACKUP.json";

// The manifest of a finished backup (also the answer of admin_backup).
// The files of the chain's data dir copied beside the ledger, when present: the EVM
// follower's chain identity, which start-up requires next to a ledger with EVM data.
inline const std::vector<std::string> kBackupSideFiles = {"evm-chain.json"};

nlohmann::json BackupManifest(const std::filesystem::path& dir, const ledger::BackupResult& result,
                              const std::vector<std::string>& files, std::chrono::milliseconds elapsed);

// Why dir cannot receive a backup (not absolute, a file, a non-empty directory), or nullopt.
std::optional<std::string> BackupTargetProblem(const std::filesystem::path& dir);

// One backup at a time; destroyed before the ledger (it lives in the API's method table).
class BackupRunner {
public:
    // netdir: the chain's data dir, whose files beside the ledger (evm-chain.json) the
    // backup copies too.
    BackupRunner(const ledger::Ledger& ledger, std::filesystem::path netdir)
        : m_ledger(ledger), m_netdir(std::move(netdir)) {}
    ~BackupRunner();
    BackupRunner(const BackupRunner&) = delete;
    BackupRunner& operator=(const BackupRunner&) = delete;

    struct Outcome {
        Result<nlohmann::json> answer; // the manifest, {done: false, ...}, or the error
        bool refused{false};           // the error is the request's (dir, a backup running), not the backup's
    };
    // Starts a backup into dir, or waits again for the one running into dir, at most
    // `wait`. A dir that is not absolute, not empty, or another dir while a backup runs
    // is refused.
    Outcome Run(const std::filesystem::path& dir, bool include_key, std::chrono::milliseconds wait)
        LOCKS_EXCLUDED(m_mutex);

private:
    void Work(std::filesystem::path dir, bool include_key) LOCKS_EXCLUDED(m_mutex);

    const ledger::Ledger& m_ledger;
    const std::filesystem::path m_netdir;
    Mutex m_mutex;
    ConditionVariable m_done;
    std::filesystem::path m_dir GUARDED_BY(m_mutex);
    bool m_running GUARDED_BY(m_mutex){false};
    std::optional<Result<nlohmann::json>> m_outcome GUARDED_BY(m_mutex); // of the last run, until answered
    std::thread m_thread GUARDED_BY(m_mutex);
};

} // namespace bitacora
