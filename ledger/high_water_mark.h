// The high-water mark: what the ledger acknowledged, signed and anchored, kept outside
// RocksDB (and its WAL recovery) in a small checksummed file of the ledger directory.
// At open, a log shorter than the mark, or whose root at the mark's size differs, has
// lost acknowledged history and is refused (ledger.cpp).
//
// The file holds two fixed slots, one page each; a write goes to the slot not holding
// the current mark, followed by one fdatasync. The file's size never changes after it
// is created, so that fdatasync writes no metadata, and a torn write leaves the other
// slot, an earlier mark, intact. The valid slot with the higher sequence wins.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>

namespace bitacora::ledger {

// A (tree size, root) pair the outside world may hold us to.
struct MarkedTree {
    uint64_t size{0};
    Hash256 root{};
    bool operator==(const MarkedTree&) const = default;
};

struct HighWater {
    uint64_t sequence{0};  // bumped by every write
    MarkedTree synced;     // the last fsynced append batch (what was acknowledged durable)
    MarkedTree checkpoint; // the largest tree size ever signed
    uint64_t checkpoint_time{0};
    uint64_t anchor_id{0}; // the latest anchor recorded (0: none)
    MarkedTree anchor;
    bool operator==(const HighWater&) const = default;
};

inline constexpr const char* kHighWaterFileName = "HIGH_WATER_MARK";
inline constexpr size_t kHighWaterSlotBytes = 4096;

// One slot's bytes: magic, fields, SHA-256 over them, zero padding.
Bytes EncodeHighWaterSlot(const HighWater& mark);
std::optional<HighWater> DecodeHighWaterSlot(std::span<const uint8_t> slot);

class HighWaterFile {
public:
    // The current mark of the file at path; nullopt when there is no file, an error when
    // the file exists but neither slot is valid.
    static Result<std::optional<HighWater>> Read(const std::filesystem::path& path);
    // Creates the file (write a temporary, fsync, rename, fsync the directory) holding mark.
    static Result<std::unique_ptr<HighWaterFile>> Create(const std::filesystem::path& path, const HighWater& mark);
    // Opens an existing file for writing; `current` is what Read() returned.
    static Result<std::unique_ptr<HighWaterFile>> Open(const std::filesystem::path& path, const HighWater& current);
    ~HighWaterFile();
    HighWaterFile(const HighWaterFile&) = delete;
    HighWaterFile& operator=(const HighWaterFile&) = delete;

    const HighWater& current() const { return m_current; }
    // Writes `mark` (its sequence is set here) into the other slot and fdatasyncs.
    Status Write(HighWater mark);

private:
    HighWaterFile(int fd, std::filesystem::path path, const HighWater& current);
    int m_fd;
    std::filesystem::path m_path;
    HighWater m_current;
};

} // namespace bitacora::ledger
