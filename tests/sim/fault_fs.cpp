#include "tests/sim/fault_fs.h"

#include <fmt/format.h>
#include <rocksdb/system_clock.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace bitacora::sim {

using rocksdb::FileOptions;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

struct FaultFs::FileState {
    uint64_t size{0};    // bytes written
    uint64_t durable{0}; // of which a power cut keeps
};

// Every call that writes goes through the file system's accounting; reads pass.
class FaultWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
public:
    FaultWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::shared_ptr<FaultFs> fs,
                      std::shared_ptr<FaultFs::FileState> state)
        : FSWritableFileOwnerWrapper(std::move(file)), m_fs(std::move(fs)), m_state(std::move(state))
    {
    }

    IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileWrite(*m_state, data.size(), std::nullopt, [&] { return target()->Append(data, options, dbg); });
    }
    IOStatus Append(const Slice& data, const IOOptions& options, const rocksdb::DataVerificationInfo& info,
                    IODebugContext* dbg) override
    {
        return m_fs->FileWrite(*m_state, data.size(), std::nullopt,
                               [&] { return target()->Append(data, options, info, dbg); });
    }
    IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                              IODebugContext* dbg) override
    {
        return m_fs->FileWrite(*m_state, data.size(), offset,
                               [&] { return target()->PositionedAppend(data, offset, options, dbg); });
    }
    IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                              const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override
    {
        return m_fs->FileWrite(*m_state, data.size(), offset,
                               [&] { return target()->PositionedAppend(data, offset, options, info, dbg); });
    }
    IOStatus Truncate(uint64_t size, const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileTruncate(*m_state, size, [&] { return target()->Truncate(size, options, dbg); });
    }
    IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileSync(*m_state, [&] { return target()->Sync(options, dbg); });
    }
    IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileSync(*m_state, [&] { return target()->Fsync(options, dbg); });
    }
    IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->Mutation("flush", [&] { return target()->Flush(options, dbg); });
    }
    IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->Mutation("range sync", [&] { return target()->RangeSync(offset, nbytes, options, dbg); });
    }
    IOStatus Allocate(uint64_t offset, uint64_t len, const IOOptions& options, IODebugContext* dbg) override
    {
        // Preallocation is only a hint; on tmpfs it costs the simulator a fifth of its time
        // (pages zeroed on fallocate, freed again at close), so it is not passed on.
        (void)offset, (void)len, (void)options, (void)dbg;
        return m_fs->Mutation("allocate", [] { return IOStatus::OK(); });
    }
    // The same for the preallocation the file would make itself before a write.
    void PrepareWrite(size_t, size_t, const IOOptions&, IODebugContext*) override {}
    // Close() passes: it writes nothing of its own, and the descriptor must be released.

private:
    std::shared_ptr<FaultFs> m_fs;
    std::shared_ptr<FaultFs::FileState> m_state;
};

class FaultRandomRWFile : public rocksdb::FSRandomRWFileOwnerWrapper {
public:
    FaultRandomRWFile(std::unique_ptr<rocksdb::FSRandomRWFile> file, std::shared_ptr<FaultFs> fs,
                      std::shared_ptr<FaultFs::FileState> state)
        : FSRandomRWFileOwnerWrapper(std::move(file)), m_fs(std::move(fs)), m_state(std::move(state))
    {
    }

    IOStatus Write(uint64_t offset, const Slice& data, const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileWrite(*m_state, data.size(), offset, [&] { return target()->Write(offset, data, options, dbg); });
    }
    IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileSync(*m_state, [&] { return target()->Sync(options, dbg); });
    }
    IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->FileSync(*m_state, [&] { return target()->Fsync(options, dbg); });
    }
    IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->Mutation("flush", [&] { return target()->Flush(options, dbg); });
    }

private:
    std::shared_ptr<FaultFs> m_fs;
    std::shared_ptr<FaultFs::FileState> m_state;
};

// Directory entries count as durable at once; a directory fsync only fails after a cut.
class FaultDirectory : public rocksdb::FSDirectoryWrapper {
public:
    FaultDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, std::shared_ptr<FaultFs> fs)
        : FSDirectoryWrapper(std::move(dir)), m_fs(std::move(fs))
    {
    }
    IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override
    {
        return m_fs->Mutation("directory fsync", [&] { return FSDirectoryWrapper::Fsync(options, dbg); });
    }
    IOStatus FsyncWithDirOptions(const IOOptions& options, IODebugContext* dbg,
                                 const rocksdb::DirFsyncOptions& dir_options) override
    {
        return m_fs->Mutation("directory fsync",
                              [&] { return FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options); });
    }

private:
    std::shared_ptr<FaultFs> m_fs;
};

FaultFs::FaultFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

std::shared_ptr<FaultFs> FaultFs::Create()
{
    return std::shared_ptr<FaultFs>(new FaultFs());
}

namespace {

// The wall clock, but RocksDB's own sleeps return at once: after a refused write, a
// background compaction waits a second before it gives up, and a close waits for it.
// The simulator has its own clock; nothing in it should wait for the real one.
class NoSleepClock : public rocksdb::SystemClockWrapper {
public:
    NoSleepClock() : SystemClockWrapper(rocksdb::SystemClock::Default()) {}
    static const char* kClassName() { return "BitacoraNoSleepClock"; }
    const char* Name() const override { return kClassName(); }
    void SleepForMicroseconds(int) override {}
};

class SimEnv : public rocksdb::EnvWrapper {
public:
    explicit SimEnv(std::unique_ptr<rocksdb::Env> composite) : EnvWrapper(std::move(composite))
    {
        system_clock_ = std::make_shared<NoSleepClock>();
    }
    void SleepForMicroseconds(int) override {}
};

} // namespace

std::unique_ptr<rocksdb::Env> FaultFs::NewEnv()
{
    return std::make_unique<SimEnv>(rocksdb::NewCompositeEnv(shared_from_this()));
}

namespace {

// A budget of writes: true when this write is the one past it (and so is every later one).
bool Exhausted(std::optional<uint64_t>& left)
{
    if (!left) return false;
    if (*left == 0) return true;
    --*left;
    return false;
}

} // namespace

std::optional<IOStatus> FaultFs::RefuseMutationLocked(const char* what)
{
    if (!m_cut) return std::nullopt;
    ++m_stats.faults_injected;
    return IOStatus::IOError(fmt::format("simulated power cut: {} refused", what));
}

std::optional<IOStatus> FaultFs::RefuseWriteLocked(const char* what)
{
    if (!m_cut && Exhausted(m_cut_writes_left)) {
        m_cut = true;
        ++m_stats.power_cuts;
    }
    if (auto refused = RefuseMutationLocked(what)) return refused;
    if (Exhausted(m_writes_left)) {
        ++m_stats.faults_injected;
        return IOStatus::NoSpace(fmt::format("simulated full disk: {} refused", what));
    }
    return std::nullopt;
}

std::shared_ptr<FaultFs::FileState> FaultFs::TrackLocked(const std::string& fname, bool truncated)
{
    ++m_stats.files_created;
    auto& state = m_files[fname];
    if (truncated || state == nullptr) {
        uint64_t size = 0;
        if (!truncated && !target_->GetFileSize(fname, IOOptions(), &size, nullptr).ok()) size = 0;
        state = std::make_shared<FileState>(FileState{.size = size, .durable = size});
    }
    return state;
}

IOStatus FaultFs::NewWritableFile(const std::string& fname, const FileOptions& options,
                                  std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseWriteLocked("new file")) return *refused;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    IOStatus status = target_->NewWritableFile(fname, options, &file, dbg);
    if (!status.ok()) return status;
    *result = std::make_unique<FaultWritableFile>(std::move(file), shared_from_this(), TrackLocked(fname, true));
    return status;
}

IOStatus FaultFs::ReopenWritableFile(const std::string& fname, const FileOptions& options,
                                     std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseWriteLocked("reopened file")) return *refused;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    IOStatus status = target_->ReopenWritableFile(fname, options, &file, dbg);
    if (!status.ok()) return status;
    *result = std::make_unique<FaultWritableFile>(std::move(file), shared_from_this(), TrackLocked(fname, false));
    return status;
}

// A recycled file is renamed and rewritten from its start; its stale tail would make
// "durable length" meaningless, so it is truncated instead (what a fresh file holds).
IOStatus FaultFs::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                    const FileOptions& options, std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    IODebugContext* dbg)
{
    if (IOStatus renamed = RenameFile(old_fname, fname, options.io_options, dbg); !renamed.ok()) return renamed;
    return NewWritableFile(fname, options, result, dbg);
}

IOStatus FaultFs::NewRandomRWFile(const std::string& fname, const FileOptions& options,
                                  std::unique_ptr<rocksdb::FSRandomRWFile>* result, IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseWriteLocked("random-write file")) return *refused;
    std::unique_ptr<rocksdb::FSRandomRWFile> file;
    IOStatus status = target_->NewRandomRWFile(fname, options, &file, dbg);
    if (!status.ok()) return status;
    *result = std::make_unique<FaultRandomRWFile>(std::move(file), shared_from_this(), TrackLocked(fname, false));
    return status;
}

IOStatus FaultFs::NewDirectory(const std::string& name, const IOOptions& options,
                               std::unique_ptr<rocksdb::FSDirectory>* result, IODebugContext* dbg)
{
    std::unique_ptr<rocksdb::FSDirectory> dir;
    IOStatus status = target_->NewDirectory(name, options, &dir, dbg);
    if (status.ok()) *result = std::make_unique<FaultDirectory>(std::move(dir), shared_from_this());
    return status;
}

IOStatus FaultFs::DeleteFile(const std::string& fname, const IOOptions& options, IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("delete")) return *refused;
    IOStatus status = target_->DeleteFile(fname, options, dbg);
    if (status.ok()) m_files.erase(fname);
    return status;
}

IOStatus FaultFs::RenameFile(const std::string& src, const std::string& target, const IOOptions& options,
                             IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("rename")) return *refused;
    IOStatus status = target_->RenameFile(src, target, options, dbg);
    if (!status.ok()) return status;
    const auto moved = m_files.find(src);
    if (moved == m_files.end()) {
        m_files.erase(target); // replaced by a file that is all durable
    } else {
        m_files[target] = moved->second;
        m_files.erase(moved);
    }
    return status;
}

IOStatus FaultFs::LinkFile(const std::string& src, const std::string& target, const IOOptions& options,
                           IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("link")) return *refused;
    IOStatus status = target_->LinkFile(src, target, options, dbg);
    if (!status.ok()) return status;
    if (const auto linked = m_files.find(src); linked != m_files.end()) m_files[target] = linked->second;
    return status;
}

IOStatus FaultFs::Truncate(const std::string& fname, size_t size, const IOOptions& options, IODebugContext* dbg)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("truncate")) return *refused;
    IOStatus status = target_->Truncate(fname, size, options, dbg);
    if (const auto file = m_files.find(fname); status.ok() && file != m_files.end()) {
        file->second->size = size;
        file->second->durable = std::min<uint64_t>(file->second->durable, size);
    }
    return status;
}

IOStatus FaultFs::CreateDir(const std::string& dirname, const IOOptions& options, IODebugContext* dbg)
{
    return Mutation("create directory", [&] { return target_->CreateDir(dirname, options, dbg); });
}

IOStatus FaultFs::CreateDirIfMissing(const std::string& dirname, const IOOptions& options, IODebugContext* dbg)
{
    return Mutation("create directory", [&] { return target_->CreateDirIfMissing(dirname, options, dbg); });
}

IOStatus FaultFs::DeleteDir(const std::string& dirname, const IOOptions& options, IODebugContext* dbg)
{
    return Mutation("delete directory", [&] { return target_->DeleteDir(dirname, options, dbg); });
}

// The write runs under the lock, so that a power cut falls before or after it, whole.
IOStatus FaultFs::FileWrite(FileState& file, size_t bytes, std::optional<uint64_t> offset, const IoCall& write)
{
    LOCK(m_mutex);
    if (auto refused = RefuseWriteLocked("write")) return *refused;
    IOStatus status = write();
    if (!status.ok()) return status;
    file.size = offset ? std::max<uint64_t>(file.size, *offset + bytes) : file.size + bytes;
    ++m_stats.appends;
    m_stats.appended_bytes += bytes;
    return status;
}

IOStatus FaultFs::FileSync(FileState& file, const IoCall& sync)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("sync")) return *refused;
    IOStatus status = sync();
    if (!status.ok()) return status;
    file.durable = file.size;
    ++m_stats.syncs;
    return status;
}

IOStatus FaultFs::FileTruncate(FileState& file, uint64_t size, const IoCall& truncate)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked("truncate")) return *refused;
    IOStatus status = truncate();
    if (!status.ok()) return status;
    file.size = size;
    file.durable = std::min(file.durable, size);
    return status;
}

IOStatus FaultFs::Mutation(const char* what, const IoCall& call)
{
    LOCK(m_mutex);
    if (auto refused = RefuseMutationLocked(what)) return *refused;
    return call();
}

void FaultFs::PowerCut()
{
    LOCK(m_mutex);
    if (!m_cut) ++m_stats.power_cuts;
    m_cut = true;
}

void FaultFs::PowerCutAfter(uint64_t writes)
{
    LOCK(m_mutex);
    m_cut_writes_left = writes;
}

bool FaultFs::power_cut() const
{
    LOCK(m_mutex);
    return m_cut;
}

Status FaultFs::Restore()
{
    LOCK(m_mutex);
    m_stats.bytes_lost = 0;
    m_stats.files_truncated = 0;
    std::string failures;
    for (const auto& [path, state] : m_files) {
        std::error_code ec;
        const uint64_t size = std::filesystem::file_size(path, ec);
        if (ec || size <= state->durable) continue; // gone (deleted outside RocksDB), or nothing to lose
        std::filesystem::resize_file(path, state->durable, ec);
        if (ec) {
            failures += fmt::format("{}cannot truncate {}: {}", failures.empty() ? "" : "; ", path, ec.message());
            continue;
        }
        m_stats.bytes_lost += size - state->durable;
        ++m_stats.files_truncated;
    }
    m_files.clear();
    m_cut = false;
    m_cut_writes_left.reset();
    m_writes_left.reset();
    if (!failures.empty()) return Error{failures};
    return {};
}

void FaultFs::FailWritesAfter(uint64_t writes)
{
    LOCK(m_mutex);
    m_writes_left = writes;
}

void FaultFs::ClearFaults()
{
    LOCK(m_mutex);
    m_cut = false;
    m_cut_writes_left.reset();
    m_writes_left.reset();
}

FaultFsStats FaultFs::stats() const
{
    LOCK(m_mutex);
    return m_stats;
}

} // namespace bitacora::sim
