#include "daemon/backup.h"

#include "common/hex.h"
#include "common/logging.h"
#include "rpc/ledger_json.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace bitacora {
namespace {

namespace fs = std::filesystem;

nlohmann::json MarkedJson(const ledger::MarkedTree& tree)
{
    return {{"size", tree.size}, {"root", HexEncode0x(tree.root)}};
}

// tmp file, fsync, rename, fsync of the directory: the manifest is there whole or not at all.
Status WriteFileDurably(const fs::path& dir, const std::string& name, const std::string& text)
{
    const fs::path tmp = dir / (name + ".tmp");
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Error{fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno))};
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || ::rename(tmp.c_str(), (dir / name).c_str()) != 0) {
        return Error{fmt::format("cannot write {}: {}", (dir / name).string(), std::strerror(errno))};
    }
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool synced = dir_fd >= 0 && ::fsync(dir_fd) == 0;
    if (dir_fd >= 0) ::close(dir_fd);
    if (!synced) return Error{fmt::format("cannot fsync {}", dir.string())};
    return {};
}

// A copy of a small file, fsynced before it counts.
Status CopyFileDurably(const fs::path& from, const fs::path& to)
{
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::none, ec);
    if (ec) return Error{fmt::format("cannot copy {} to {}: {}", from.string(), to.string(), ec.message())};
    const int fd = ::open(to.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced) return Error{fmt::format("cannot fsync {}", to.string())};
    return {};
}

// The ledger's copy, then the side files and, last, the manifest.
Result<nlohmann::json> WriteBackup(const ledger::Ledger& ledger, const fs::path& netdir, const fs::path& dir,
                                   bool include_key)
{
    const auto started = std::chrono::steady_clock::now();
    auto result = ledger.Backup(dir, include_key);
    if (!result) return result.failure();
    std::vector<std::string> files;
    for (const auto& name : kBackupSideFiles) {
        std::error_code ec;
        if (!fs::exists(netdir / name, ec)) continue;
        if (auto copied = CopyFileDurably(netdir / name, dir / name); !copied) return copied.failure();
        files.push_back(name);
    }
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    auto manifest = BackupManifest(dir, *result, files, elapsed);
    if (auto written = WriteFileDurably(dir, kBackupManifestName, manifest.dump(2) + "\n"); !written) {
        return written.failure();
    }
    return manifest;
}

} // namespace

nlohmann::json BackupManifest(const fs::path& dir, const ledger::BackupResult& r, const std::vector<std::string>& files,
                              std::chrono::milliseconds elapsed)
{
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    return {{"done", true},
            {"format", 1},
            {"dir", dir.string()},
            {"bitacoraVersion", BITACORA_VERSION},
            {"createdAt", now.count()},
            {"elapsedMs", elapsed.count()},
            {"ledgerDir", "ledger"},
            {"files", files},
            {"schemaVersion", r.schema_version},
            {"treeSize", r.tree_size},
            {"root", HexEncode0x(r.root)},
            {"anchors", r.anchors},
            {"latestAnchor", r.latest_anchor ? rpc::AnchorJson(*r.latest_anchor) : nlohmann::json(nullptr)},
            {"highWaterMark", {{"synced", MarkedJson(r.mark.synced)},
                               {"checkpoint", MarkedJson(r.mark.checkpoint)},
                               {"anchorId", r.mark.anchor_id},
                               {"anchor", MarkedJson(r.mark.anchor)}}},
            {"checkpointKey", {{"included", r.key_included},
                               {"file", r.key_included ? nlohmann::json("checkpoint.key") : nlohmann::json(nullptr)},
                               {"publicKey", r.checkpoint_public_key ? nlohmann::json(HexEncode0x(*r.checkpoint_public_key))
                                                                     : nlohmann::json(nullptr)}}}};
}

BackupRunner::~BackupRunner()
{
    std::thread thread;
    {
        LOCK(m_mutex);
        if (m_running) LogInfo("Waiting for the backup into {} to finish", m_dir.string());
        thread = std::move(m_thread);
    }
    if (thread.joinable()) thread.join();
}

std::optional<std::string> BackupTargetProblem(const fs::path& dir)
{
    if (!dir.is_absolute()) return fmt::format("dir {} is not an absolute path", dir.string());
    std::error_code ec;
    const auto status = fs::status(dir, ec);
    if (!fs::exists(status)) return std::nullopt;
    if (!fs::is_directory(status)) return fmt::format("{} exists and is not a directory", dir.string());
    if (!fs::is_empty(dir, ec) || ec) return fmt::format("{} is not empty: a backup goes into a new or empty directory", dir.string());
    return std::nullopt;
}

BackupRunner::Outcome BackupRunner::Run(const fs::path& dir, bool include_key, std::chrono::milliseconds wait)
{
    LOCK(m_mutex);
    if (m_running && dir != m_dir) {
        return {Error{fmt::format("a backup into {} is in progress", m_dir.string())}, true};
    }
    // A new run, unless this asks again for the one running (or just finished) into dir.
    if (!m_running && (dir != m_dir || !m_outcome)) {
        if (auto problem = BackupTargetProblem(dir)) return {Error{*problem}, true};
        // A finished thread set m_running under this lock and released it: it only returns now.
        if (m_thread.joinable()) m_thread.join();
        m_dir = dir;
        m_running = true;
        m_outcome.reset();
        m_thread = std::thread([this, dir, include_key] { Work(dir, include_key); });
    }
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (m_running && std::chrono::steady_clock::now() < deadline) m_done.wait_until(m_mutex, deadline);
    if (m_running) {
        return {nlohmann::json{{"done", false},
                              {"dir", dir.string()},
                              {"message", fmt::format("still writing; call again with the same dir to wait for it ({} "
                                                      "appears in it when the backup is complete)",
                                                      kBackupManifestName)}}};
    }
    Outcome outcome{std::move(*m_outcome)};
    m_outcome.reset();
    m_dir.clear();
    return outcome;
}

void BackupRunner::Work(fs::path dir, bool include_key)
{
    Result<nlohmann::json> outcome = Error{"not run"};
    try {
        outcome = WriteBackup(m_ledger, m_netdir, dir, include_key);
    } catch (const std::exception& e) { // a read error of the copy, an allocation failure
        outcome = Error{fmt::format("backup failed: {}", e.what())};
    }
    if (!outcome) LogError("Backup into {} failed: {}", dir.string(), outcome.error());
    LOCK(m_mutex);
    m_outcome = std::move(outcome);
    m_running = false;
    m_done.notify_all();
}

} // namespace bitacora
