// Logging with timestamps and categories, in the manner of Bitcoin Core:
// LogInfo/LogWarning/LogError always print (and are rate-limited per source
// location, because remote peers can trigger many of them); LogDebug prints only
// for categories switched on with -debug=<category>.
#pragma once

#include "common/result.h"
#include "common/sync.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bitacora::log {

enum class Category : uint32_t {
    None = 0,
    Evm = 1u << 0,    // EVM JSON-RPC follower
    Btc = 1u << 1,    // bitcoind RPC/ZMQ follower
    Ledger = 1u << 2, // event log, projections, Merkle log
    Db = 1u << 3,     // RocksDB
    Rpc = 1u << 4,    // JSON-RPC API server
    Zmq = 1u << 5,    // ZMQ publisher
    Anchor = 1u << 6, // Bitcoin anchoring
    Config = 1u << 7, // configuration parsing
    All = ~0u,
};

enum class Level { Debug, Info, Warning, Error };

// "evm", "btc", ... in declaration order (without "none"/"all").
std::vector<std::string> CategoryNames();
std::optional<Category> ParseCategory(std::string_view name); // also "1"/"all"
std::string_view CategoryName(Category category);

class Logger {
public:
    using Clock = std::function<std::chrono::system_clock::time_point()>;

    // Per source location, at most this many bytes of unconditional log lines per window.
    static constexpr uint64_t kRateLimitBytesPerWindow = 1024 * 1024;
    static constexpr std::chrono::seconds kRateLimitWindow{3600};

    Logger();
    ~Logger();

    void SetPrintToConsole(bool enabled) LOCKS_EXCLUDED(m_mutex);
    // Opens (appends to) the log file; SIGHUP's ReopenFile() reopens the same path.
    Status OpenFile(const std::filesystem::path& path) LOCKS_EXCLUDED(m_mutex);
    Status ReopenFile() LOCKS_EXCLUDED(m_mutex);
    void CloseFile() LOCKS_EXCLUDED(m_mutex);
    void SetRateLimiting(bool enabled, uint64_t bytes_per_window_max = kRateLimitBytesPerWindow,
                         std::chrono::seconds window = kRateLimitWindow) LOCKS_EXCLUDED(m_mutex);
    void SetClockForTesting(Clock clock) LOCKS_EXCLUDED(m_mutex);
    // Every formatted line (with newline) is also handed to the callback; for tests.
    void SetCallbackForTesting(std::function<void(std::string_view)> callback) LOCKS_EXCLUDED(m_mutex);

    void EnableCategory(Category category) { m_categories.fetch_or(static_cast<uint32_t>(category)); }
    void DisableCategory(Category category) { m_categories.fetch_and(~static_cast<uint32_t>(category)); }
    bool WillLogCategory(Category category) const
    {
        return (m_categories.load(std::memory_order_relaxed) & static_cast<uint32_t>(category)) != 0;
    }
    std::string EnabledCategoriesString() const;

    void LogLine(Level level, Category category, const char* file, int line, std::string_view message)
        LOCKS_EXCLUDED(m_mutex);

private:
    struct SourceStats {
        uint64_t bytes_available{0};
        uint64_t bytes_dropped{0};
        bool suppressed{false};
    };
    using SourceKey = std::pair<const char*, int>; // file literal and line: a call site

    void WriteLocked(std::string_view text) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    void ResetWindowLocked(std::chrono::system_clock::time_point now) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    std::string Prefix(std::chrono::system_clock::time_point now, Level level, Category category) const;

    std::atomic<uint32_t> m_categories{0};
    mutable Mutex m_mutex;
    bool m_print_to_console GUARDED_BY(m_mutex){true};
    std::FILE* m_file GUARDED_BY(m_mutex){nullptr};
    std::filesystem::path m_file_path GUARDED_BY(m_mutex);
    Clock m_clock GUARDED_BY(m_mutex);
    std::function<void(std::string_view)> m_callback GUARDED_BY(m_mutex);
    bool m_rate_limiting GUARDED_BY(m_mutex){true};
    uint64_t m_bytes_per_window_max GUARDED_BY(m_mutex){kRateLimitBytesPerWindow};
    std::chrono::seconds m_window GUARDED_BY(m_mutex){kRateLimitWindow};
    std::chrono::system_clock::time_point m_window_start GUARDED_BY(m_mutex){};
    // Bounded by the number of call sites in the program.
    std::map<SourceKey, SourceStats> m_sources GUARDED_BY(m_mutex);
};

Logger& GetLogger();

// Lets through at most lines_max lines of one message class per window and counts
// the rest, so that a flood (libevent at the descriptor limit wrote ~125,000 lines/s)
// costs a few lines; the next line let through says how many were dropped.
class LineRateLimiter {
public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;
    // Distinct classes tracked; later ones share one entry, so memory stays bounded.
    static constexpr size_t kClassesMax = 64;

    struct Verdict {
        bool admit{false};
        uint64_t suppressed{0}; // lines of this class dropped before this admitted one
    };

    LineRateLimiter(size_t lines_max, std::chrono::milliseconds window, Clock clock = {});
    Verdict Admit(std::string_view message_class) LOCKS_EXCLUDED(m_mutex);
    size_t class_count() const LOCKS_EXCLUDED(m_mutex);

private:
    struct ClassState {
        std::chrono::steady_clock::time_point window_start;
        size_t lines{0};
        uint64_t suppressed{0};
    };
    const size_t m_lines_max;
    const std::chrono::milliseconds m_window;
    const Clock m_clock;
    mutable Mutex m_mutex;
    std::map<std::string, ClassState, std::less<>> m_classes GUARDED_BY(m_mutex);
};

// A message's class for rate limiting: runs of digits count as one, so that
// "fd 12" and "fd 345" are the same class.
std::string MessageClass(std::string_view message);

// Replaces control characters so that remote input cannot forge log lines.
std::string EscapeMessage(std::string_view message);

template <typename... Args>
void Print(Level level, Category category, const char* file, int line, fmt::format_string<Args...> format,
           Args&&... args)
{
    GetLogger().LogLine(level, category, file, line, fmt::format(format, std::forward<Args>(args)...));
}

} // namespace bitacora::log

#define LogInfo(...) \
    ::bitacora::log::Print(::bitacora::log::Level::Info, ::bitacora::log::Category::None, __FILE__, __LINE__, __VA_ARGS__)
#define LogWarning(...) \
    ::bitacora::log::Print(::bitacora::log::Level::Warning, ::bitacora::log::Category::None, __FILE__, __LINE__, __VA_ARGS__)
#define LogError(...) \
    ::bitacora::log::Print(::bitacora::log::Level::Error, ::bitacora::log::Category::None, __FILE__, __LINE__, __VA_ARGS__)
// Arguments are evaluated only when the category is enabled.
#define LogDebug(category, ...)                                                                            \
    do {                                                                                                    \
        if (::bitacora::log::GetLogger().WillLogCategory(category)) {                                       \
            ::bitacora::log::Print(::bitacora::log::Level::Debug, category, __FILE__, __LINE__, __VA_ARGS__); \
        }                                                                                                   \
    } while (0)
