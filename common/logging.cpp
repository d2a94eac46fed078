#include "common/logging.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <iterator>

namespace bitacora::log {
namespace {

struct CategoryEntry {
    Category category;
    std::string_view name;
};

constexpr CategoryEntry kCategories[] = {
    {Category::Evm, "evm"},     {Category::Btc, "btc"}, {Category::Ledger, "ledger"},
    {Category::Db, "db"},       {Category::Rpc, "rpc"}, {Category::Zmq, "zmq"},
    {Category::Anchor, "anchor"}, {Category::Config, "config"},
};

std::string_view LevelName(Level level)
{
    switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
    }
    return "?";
}

const char* BaseName(const char* path)
{
    const char* slash = std::strrchr(path, '/');
    return slash == nullptr ? path : slash + 1;
}

} // namespace

std::vector<std::string> CategoryNames()
{
    std::vector<std::string> names;
    for (const auto& entry : kCategories) names.emplace_back(entry.name);
    return names;
}

std::optional<Category> ParseCategory(std::string_view name)
{
    if (name == "1" || name == "all") return Category::All;
    for (const auto& entry : kCategories) {
        if (entry.name == name) return entry.category;
    }
    return std::nullopt;
}

std::string_view CategoryName(Category category)
{
    for (const auto& entry : kCategories) {
        if (entry.category == category) return entry.name;
    }
    return "";
}

std::string EscapeMessage(std::string_view message)
{
    std::string out;
    out.reserve(message.size());
    for (const char c : message) {
        const auto byte = static_cast<unsigned char>(c);
        if ((byte >= 0x20 && byte != 0x7f) || c == '\t') {
            out.push_back(c);
        } else {
            out += fmt::format("\\x{:02x}", byte);
        }
    }
    return out;
}

Logger::Logger() : m_clock([] { return std::chrono::system_clock::now(); }) {}

Logger::~Logger()
{
    CloseFile();
}

void Logger::SetPrintToConsole(bool enabled)
{
    LOCK(m_mutex);
    m_print_to_console = enabled;
}

Status Logger::OpenFile(const std::filesystem::path& path)
{
    LOCK(m_mutex);
    std::FILE* file = std::fopen(path.c_str(), "a");
    if (file == nullptr) {
        return Error{fmt::format("cannot open log file {}: {}", path.string(), std::strerror(errno))};
    }
    std::setvbuf(file, nullptr, _IOLBF, 0);
    if (m_file != nullptr) std::fclose(m_file);
    m_file = file;
    m_file_path = path;
    return {};
}

Status Logger::ReopenFile()
{
    std::filesystem::path path;
    {
        LOCK(m_mutex);
        if (m_file == nullptr) return {};
        path = m_file_path;
    }
    return OpenFile(path);
}

void Logger::CloseFile()
{
    LOCK(m_mutex);
    if (m_file != nullptr) std::fclose(m_file);
    m_file = nullptr;
}

void Logger::SetRateLimiting(bool enabled, uint64_t bytes_per_window_max, std::chrono::seconds window)
{
    LOCK(m_mutex);
    m_rate_limiting = enabled;
    m_bytes_per_window_max = bytes_per_window_max;
    m_window = window;
    m_sources.clear();
    m_window_start = m_clock();
}

void Logger::SetClockForTesting(Clock clock)
{
    LOCK(m_mutex);
    m_clock = std::move(clock);
    m_window_start = m_clock();
}

void Logger::SetCallbackForTesting(std::function<void(std::string_view)> callback)
{
    LOCK(m_mutex);
    m_callback = std::move(callback);
}

std::string Logger::EnabledCategoriesString() const
{
    std::string out;
    for (const auto& entry : kCategories) {
        if (!WillLogCategory(entry.category)) continue;
        if (!out.empty()) out += ",";
        out += entry.name;
    }
    return out.empty() ? "none" : out;
}

std::string Logger::Prefix(std::chrono::system_clock::time_point now, Level level, Category category) const
{
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    std::string prefix = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z ", utc.tm_year + 1900,
                                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                                     micros % 1'000'000);
    if (level == Level::Debug) {
        prefix += fmt::format("[{}] ", CategoryName(category));
    } else if (level != Level::Info) {
        prefix += fmt::format("[{}] ", LevelName(level));
    }
    return prefix;
}

void Logger::WriteLocked(std::string_view text)
{
    if (m_print_to_console) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    }
    if (m_file != nullptr) {
        std::fwrite(text.data(), 1, text.size(), m_file);
    }
    if (m_callback) m_callback(text);
}

void Logger::ResetWindowLocked(std::chrono::system_clock::time_point now)
{
    m_window_start = now;
    for (auto& [key, stats] : m_sources) {
        if (stats.suppressed) {
            const std::string line = Prefix(now, Level::Warning, Category::None) +
                fmt::format("Restarting logging from {}:{}: {} bytes were dropped during the last {} s.\n",
                            BaseName(key.first), key.second, stats.bytes_dropped, m_window.count());
            WriteLocked(line);
        }
        stats = SourceStats{m_bytes_per_window_max, 0, false};
    }
}

void Logger::LogLine(Level level, Category category, const char* file, int line, std::string_view message)
{
    LOCK(m_mutex);
    if (!m_print_to_console && m_file == nullptr && !m_callback) return; // nowhere to write it
    const auto now = m_clock();
    std::string text = Prefix(now, level, category) + EscapeMessage(message) + "\n";

    if (m_rate_limiting && level != Level::Debug) {
        if (now - m_window_start >= m_window) ResetWindowLocked(now);
        auto [it, inserted] = m_sources.try_emplace(SourceKey{file, line}, SourceStats{m_bytes_per_window_max, 0, false});
        SourceStats& stats = it->second;
        if (stats.suppressed) {
            stats.bytes_dropped += text.size();
            return;
        }
        if (text.size() > stats.bytes_available) {
            stats.suppressed = true;
            stats.bytes_dropped += text.size();
            WriteLocked(Prefix(now, Level::Warning, Category::None) +
                        fmt::format("Excessive logging detected from {}:{}: suppressing logging from this "
                                    "location for up to {} s.\n",
                                    BaseName(file), line, m_window.count()));
            return;
        }
        stats.bytes_available -= text.size();
    }
    WriteLocked(text);
}

LineRateLimiter::LineRateLimiter(size_t lines_max, std::chrono::milliseconds window, Clock clock)
    : m_lines_max(lines_max), m_window(window),
      m_clock(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); }))
{
}

LineRateLimiter::Verdict LineRateLimiter::Admit(std::string_view message_class)
{
    LOCK(m_mutex);
    const auto now = m_clock();
    auto it = m_classes.find(message_class);
    if (it == m_classes.end()) {
        const std::string_view key = m_classes.size() < kClassesMax ? message_class : std::string_view("(other)");
        it = m_classes.try_emplace(std::string(key), ClassState{now, 0, 0}).first;
    }
    ClassState& state = it->second;
    if (now - state.window_start >= m_window) {
        state.window_start = now;
        state.lines = 0;
    }
    if (state.lines >= m_lines_max) {
        ++state.suppressed;
        return {};
    }
    ++state.lines;
    const Verdict verdict{true, state.suppressed};
    state.suppressed = 0;
    return verdict;
}

size_t LineRateLimiter::class_count() const
{
    LOCK(m_mutex);
    return m_classes.size();
}

std::string MessageClass(std::string_view message)
{
    constexpr size_t kClassBytesMax = 200; // a class is a prefix of the message
    std::string out;
    for (const char c : message.substr(0, kClassBytesMax)) {
        const bool digit = c >= '0' && c <= '9';
        if (!digit) out.push_back(c);
        else if (out.empty() || out.back() != '#') out.push_back('#');
    }
    return out;
}

Logger& GetLogger()
{
    // Never destroyed: threads may still log during static destruction.
    static Logger* logger = new Logger();
    return *logger;
}

} // namespace bitacora::log
