// A RocksDB file system over the real one (FileSystem::Default()) that can cut the
// power and fill the disk, for the deterministic simulator (tests/sim/) and the
// ledger's fault tests.
//
// Power cut model: what a file holds durably is its length at the start of its last
// successful Sync() or Fsync() (a Close() adds nothing; RangeSync() is a hint, not a
// barrier). PowerCut() makes every later write, sync, new file, rename and delete fail
// with an IOError, so the database being torn down cannot write more; after the caller
// destroys it, Restore() cuts every file written through this file system back to its
// durable length (a file never synced: to 0 bytes) and clears the faults. Simplifications:
// directory entries (creations, renames, deletions, hard links) are treated as durable
// at once, as if every directory were fsynced; an overwrite inside the durable length
// (only RandomRW files do that) is kept; unsynced bytes are lost whole, never torn.
// Files the ledger writes outside RocksDB (high_water_mark.*, checkpoint.key) are
// written with POSIX I/O and fsynced, so they survive a power cut whole.
//
// Full disk: FailWritesAfter(n) lets n more writes (appends to any file, and file
// creations) succeed and fails the one after with IOStatus::NoSpace(), and every later
// one, until ClearFaults(). Syncs, renames and deletes still succeed, as on a full disk.
//
// Threads: the file system has none of its own, but RocksDB calls it from its own
// background threads (flushes, compactions, obsolete-file purges). Every call that
// writes runs whole under one Mutex, so a PowerCut() lands between two writes, never
// inside one. Which background writes came before the cut still depends on thread
// timing: for a reproducible run, keep the simulated ledger below its memtable budget
// (LedgerOptions gives 128 MiB; a run of a few thousand events never flushes) so
// that every write happens on the appending thread. After a refused write RocksDB's
// error handler may retry from its own thread (a new WAL), so faults_injected can differ
// between runs; what the ledger answers does not.
//
// Order: PowerCut(), destroy the ledger, Restore(). A clean close syncs nothing (RocksDB
// 7.8: unsynced appends are lost to a cut after a close too), but cutting first keeps the
// teardown from writing or deleting files, as a real power cut would.
// A fault while a ledger is first created (between RocksDB's IDENTITY and CURRENT) is
// retried at the next open (ledger.cpp's creation file; tests/unit/test_fault_fs.cpp).
#pragma once

#include "common/result.h"
#include "common/sync.h"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace bitacora::sim {

struct FaultFsStats {
    uint64_t appends{0};        // writes that succeeded: Append, PositionedAppend, RandomRW Write
    uint64_t appended_bytes{0};
    uint64_t syncs{0};          // Sync/Fsync of a file that succeeded
    uint64_t files_created{0};  // writable files opened (new, reopened, reused, random RW)
    uint64_t faults_injected{0}; // calls refused by a power cut or a full disk
    uint64_t power_cuts{0};
    // Of the last Restore(): bytes cut off, and files that lost any.
    uint64_t bytes_lost{0};
    uint64_t files_truncated{0};
};

class FaultFs : public rocksdb::FileSystemWrapper, public std::enable_shared_from_this<FaultFs> {
public:
    static std::shared_ptr<FaultFs> Create();
    // An Env for LedgerOptions::env: this file system, the default Env's threads and clock.
    // It holds a reference to this file system; keep it alive as long as a ledger uses it.
    std::unique_ptr<rocksdb::Env> NewEnv();

    // From now on every write, sync, file creation, rename and delete fails.
    void PowerCut() LOCKS_EXCLUDED(m_mutex);
    // As PowerCut(), but only once `writes` more writes (as FailWritesAfter counts them)
    // succeeded: the cut lands at that write, whichever thread makes it.
    void PowerCutAfter(uint64_t writes) LOCKS_EXCLUDED(m_mutex);
    bool power_cut() const LOCKS_EXCLUDED(m_mutex);
    // After the database was destroyed: truncates every file written since the last
    // Restore() to its durable length, forgets them and clears every fault. An error
    // only when a file cannot be truncated.
    Status Restore() LOCKS_EXCLUDED(m_mutex);
    // The next `writes` writes succeed; the one after and every later one fail with
    // IOStatus::NoSpace() ("disk full"). 0: the very next write fails.
    void FailWritesAfter(uint64_t writes) LOCKS_EXCLUDED(m_mutex);
    // Clears a full disk and a pending or past power cut (without truncating anything).
    void ClearFaults() LOCKS_EXCLUDED(m_mutex);
    FaultFsStats stats() const LOCKS_EXCLUDED(m_mutex);

    // --- rocksdb::FileSystem ---
    static const char* kClassName() { return "BitacoraFaultFs"; }
    const char* Name() const override { return kClassName(); }
    rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus NewRandomRWFile(const std::string& fname, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                      rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                   std::unique_ptr<rocksdb::FSDirectory>* result,
                                   rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                                 rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus RenameFile(const std::string& src, const std::string& target,
                                 const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override
        LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus LinkFile(const std::string& src, const std::string& target, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus Truncate(const std::string& fname, size_t size, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus CreateDir(const std::string& dirname, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus CreateDirIfMissing(const std::string& dirname, const rocksdb::IOOptions& options,
                                         rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus DeleteDir(const std::string& dirname, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override LOCKS_EXCLUDED(m_mutex);

private:
    friend class FaultWritableFile;
    friend class FaultRandomRWFile;
    friend class FaultDirectory;
    struct FileState; // a file's length written and length durable, shared by its hard links
    using IoCall = std::function<rocksdb::IOStatus()>;

    FaultFs();
    // The file wrappers' calls. A write of `bytes` at the end of the file, or at `offset`.
    rocksdb::IOStatus FileWrite(FileState& file, size_t bytes, std::optional<uint64_t> offset, const IoCall& write)
        LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus FileSync(FileState& file, const IoCall& sync) LOCKS_EXCLUDED(m_mutex);
    rocksdb::IOStatus FileTruncate(FileState& file, uint64_t size, const IoCall& truncate) LOCKS_EXCLUDED(m_mutex);
    // Anything else that writes (a flush, a range sync, a directory fsync): fails after a cut.
    rocksdb::IOStatus Mutation(const char* what, const IoCall& call) LOCKS_EXCLUDED(m_mutex);
    // Refuses a write when the power is cut or the disk is full; counts it otherwise.
    std::optional<rocksdb::IOStatus> RefuseWriteLocked(const char* what) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    std::optional<rocksdb::IOStatus> RefuseMutationLocked(const char* what) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    // Tracks a file opened for writing: a new one from 0 bytes, a reopened one as it was
    // (all durable when it was not tracked yet).
    std::shared_ptr<FileState> TrackLocked(const std::string& fname, bool truncated) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);

    mutable Mutex m_mutex;
    // Files written since the last Restore(), by path; a file not here is all durable.
    std::map<std::string, std::shared_ptr<FileState>> m_files GUARDED_BY(m_mutex);
    bool m_cut GUARDED_BY(m_mutex){false};
    std::optional<uint64_t> m_writes_left GUARDED_BY(m_mutex);     // before a full disk
    std::optional<uint64_t> m_cut_writes_left GUARDED_BY(m_mutex); // before a power cut
    FaultFsStats m_stats GUARDED_BY(m_mutex);
};

} // namespace bitacora::sim
