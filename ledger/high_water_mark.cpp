#include "ledger/high_water_mark.h"

#include "ledger/encoding.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace bitacora::ledger {
namespace {

constexpr std::array<uint8_t, 8> kMagic = {'B', 'T', 'C', 'R', 'H', 'W', 'M', '1'};
constexpr size_t kSlots = 2;
// magic, sequence, three (size, root) trees, checkpoint time, anchor id
constexpr size_t kBodyBytes = 8 + 8 + 3 * 40 + 8 + 8;

void PutTree(Writer& w, const MarkedTree& tree)
{
    w.U64(tree.size).Raw(tree.root);
}

bool GetTree(Reader& r, MarkedTree& tree)
{
    return r.U64(tree.size) && r.Fixed(tree.root);
}

std::string Errno(const std::string& what, const std::filesystem::path& path)
{
    return fmt::format("{} {}: {}", what, path.string(), std::strerror(errno));
}

// Writes all of data at offset; a short write is retried, an error returned.
bool PwriteAll(int fd, std::span<const uint8_t> data, off_t offset)
{
    while (!data.empty()) {
        const ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data = data.subspan(static_cast<size_t>(n));
        offset += n;
    }
    return true;
}

Status FsyncDirectory(const std::filesystem::path& dir)
{
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Error{Errno("cannot open directory", dir)};
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) return Error{Errno("cannot fsync directory", dir)};
    return {};
}

} // namespace

Bytes EncodeHighWaterSlot(const HighWater& mark)
{
    Bytes out;
    Writer w(out);
    w.Raw(kMagic).U64(mark.sequence);
    PutTree(w, mark.synced);
    PutTree(w, mark.checkpoint);
    w.U64(mark.checkpoint_time).U64(mark.anchor_id);
    PutTree(w, mark.anchor);
    const Hash256 checksum = Sha256(out); // out is kBodyBytes long here
    w.Raw(checksum);
    out.resize(kHighWaterSlotBytes, 0);
    return out;
}

std::optional<HighWater> DecodeHighWaterSlot(std::span<const uint8_t> slot)
{
    if (slot.size() < kBodyBytes + 32) return std::nullopt;
    const Hash256 checksum = Sha256(slot.first(kBodyBytes));
    if (!std::equal(checksum.begin(), checksum.end(), slot.begin() + kBodyBytes)) return std::nullopt;
    Reader r(slot.first(kBodyBytes));
    std::array<uint8_t, 8> magic{};
    HighWater mark;
    if (!r.Fixed(magic) || magic != kMagic || !r.U64(mark.sequence) || !GetTree(r, mark.synced) ||
        !GetTree(r, mark.checkpoint) || !r.U64(mark.checkpoint_time) || !r.U64(mark.anchor_id) ||
        !GetTree(r, mark.anchor) || !r.AtEnd()) {
        return std::nullopt;
    }
    return mark;
}

Result<std::optional<HighWater>> HighWaterFile::Read(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return std::optional<HighWater>{};
    if (fd < 0) return Error{Errno("cannot open the high-water mark", path)};
    Bytes data(kHighWaterSlotBytes * kSlots);
    const ssize_t n = ::pread(fd, data.data(), data.size(), 0);
    ::close(fd);
    if (n < 0) return Error{Errno("cannot read the high-water mark", path)};
    data.resize(static_cast<size_t>(n));
    std::optional<HighWater> best;
    for (size_t slot = 0; slot < kSlots; ++slot) {
        if (data.size() < (slot + 1) * kHighWaterSlotBytes) break;
        const auto mark = DecodeHighWaterSlot(std::span(data).subspan(slot * kHighWaterSlotBytes, kHighWaterSlotBytes));
        if (mark && (!best || mark->sequence > best->sequence)) best = mark;
    }
    if (!best) {
        return Error{fmt::format("the high-water mark {} is corrupt (no valid slot): what this ledger acknowledged "
                                 "cannot be checked; restore the ledger directory from a backup",
                                 path.string())};
    }
    return best;
}

Result<std::unique_ptr<HighWaterFile>> HighWaterFile::Create(const std::filesystem::path& path, const HighWater& mark)
{
    HighWater first = mark;
    first.sequence = std::max<uint64_t>(mark.sequence, 1);
    Bytes data(kHighWaterSlotBytes * kSlots, 0);
    const Bytes slot = EncodeHighWaterSlot(first);
    std::copy(slot.begin(), slot.end(), data.begin() + static_cast<std::ptrdiff_t>((first.sequence % kSlots) * kHighWaterSlotBytes));
    const std::filesystem::path temp = path.string() + ".tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Error{Errno("cannot create the high-water mark", temp)};
    if (!PwriteAll(fd, data, 0) || ::fsync(fd) != 0) {
        const std::string error = Errno("cannot write the high-water mark", temp);
        ::close(fd);
        return Error{error};
    }
    ::close(fd);
    if (::rename(temp.c_str(), path.c_str()) != 0) return Error{Errno("cannot rename the high-water mark to", path)};
    if (auto synced = FsyncDirectory(path.parent_path()); !synced) return synced.failure();
    return Open(path, first);
}

Result<std::unique_ptr<HighWaterFile>> HighWaterFile::Open(const std::filesystem::path& path, const HighWater& current)
{
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Error{Errno("cannot open the high-water mark", path)};
    return std::unique_ptr<HighWaterFile>(new HighWaterFile(fd, path, current));
}

HighWaterFile::HighWaterFile(int fd, std::filesystem::path path, const HighWater& current)
    : m_fd(fd), m_path(std::move(path)), m_current(current)
{
}

HighWaterFile::~HighWaterFile() { ::close(m_fd); }

Status HighWaterFile::Write(HighWater mark)
{
    mark.sequence = m_current.sequence + 1;
    const Bytes slot = EncodeHighWaterSlot(mark);
    const auto offset = static_cast<off_t>((mark.sequence % kSlots) * kHighWaterSlotBytes);
    if (!PwriteAll(m_fd, slot, offset)) return Error{Errno("cannot write the high-water mark", m_path)};
    if (::fdatasync(m_fd) != 0) return Error{Errno("cannot fdatasync the high-water mark", m_path)};
    m_current = mark;
    return {};
}

} // namespace bitacora::ledger
