#include "common/logging.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace bitacora;
using namespace std::chrono_literals;

namespace {

struct CapturedLog {
    std::vector<std::string> lines;
    std::chrono::system_clock::time_point now{std::chrono::sys_days{std::chrono::year{2026} / 11 / 28} + 4h};

    explicit CapturedLog(log::Logger& logger)
    {
        logger.SetPrintToConsole(false);
        logger.SetClockForTesting([this] { return now; });
        logger.SetCallbackForTesting([this](std::string_view line) { lines.emplace_back(line); });
    }
};

} // namespace

TEST_CASE("lines carry an ISO 8601 UTC timestamp and a level or category tag")
{
    log::Logger logger;
    CapturedLog captured(logger);
    logger.LogLine(log::Level::Info, log::Category::None, __FILE__, __LINE__, "started");
    logger.LogLine(log::Level::Warning, log::Category::None, __FILE__, __LINE__, "careful");
    logger.LogLine(log::Level::Debug, log::Category::Evm, __FILE__, __LINE__, "detail");
    REQUIRE(captured.lines.size() == 3);
    CHECK(captured.lines[0] == "2026-11-28T04:00:00.000000Z started\n");
    CHECK(captured.lines[1] == "2026-11-28T04:00:00.000000Z [warning] careful\n");
    CHECK(captured.lines[2] == "2026-11-28T04:00:00.000000Z [evm] detail\n");
}

TEST_CASE("categories switch debug lines on and off")
{
    log::Logger logger;
    CHECK_FALSE(logger.WillLogCategory(log::Category::Evm));
    logger.EnableCategory(*log::ParseCategory("evm"));
    CHECK(logger.WillLogCategory(log::Category::Evm));
    CHECK_FALSE(logger.WillLogCategory(log::Category::Rpc));
    CHECK(logger.EnabledCategoriesString() == "evm");
    logger.EnableCategory(*log::ParseCategory("all"));
    logger.DisableCategory(log::Category::Db);
    CHECK(logger.WillLogCategory(log::Category::Rpc));
    CHECK_FALSE(logger.WillLogCategory(log::Category::Db));
    CHECK_FALSE(log::ParseCategory("bogus"));
    CHECK(log::ParseCategory("1") == log::Category::All);
}

TEST_CASE("control characters from remote input are escaped")
{
    log::Logger logger;
    CapturedLog captured(logger);
    logger.LogLine(log::Level::Info, log::Category::None, __FILE__, __LINE__, "bad\nfake line\x1b[31m");
    REQUIRE(captured.lines.size() == 1);
    CHECK(captured.lines[0].ends_with(" bad\\x0afake line\\x1b[31m\n"));
}

TEST_CASE("unconditional lines are rate-limited per source location")
{
    log::Logger logger;
    CapturedLog captured(logger);
    // 100 bytes per location per minute; each warning line below is 28 + 10 + 10 + 1 = 49 bytes.
    logger.SetRateLimiting(true, 100, 60s);
    const char* file = "rpc/server.cpp";
    for (int i = 0; i < 10; ++i) logger.LogLine(log::Level::Warning, log::Category::None, file, 7, "0123456789");
    // Another location still logs.
    logger.LogLine(log::Level::Error, log::Category::None, file, 8, "other");
    // Debug lines are never limited.
    logger.EnableCategory(log::Category::Rpc);
    for (int i = 0; i < 5; ++i) logger.LogLine(log::Level::Debug, log::Category::Rpc, file, 7, "0123456789");

    REQUIRE(captured.lines.size() == 2 + 1 + 1 + 5);
    CHECK(captured.lines[2].find("Excessive logging detected from server.cpp:7") != std::string::npos);
    CHECK(captured.lines[3].find("other") != std::string::npos);

    captured.lines.clear();
    captured.now += 61s;
    logger.LogLine(log::Level::Warning, log::Category::None, file, 7, "0123456789");
    REQUIRE(captured.lines.size() == 2);
    // 8 suppressed lines of 49 bytes.
    CHECK_MESSAGE(captured.lines[0].find("Restarting logging from server.cpp:7: 392 bytes were dropped") != std::string::npos, captured.lines[0]);
    CHECK(captured.lines[1].ends_with("[warning] 0123456789\n"));
}

TEST_CASE("the log file is appended to and reopened after rotation")
{
    const auto dir = std::filesystem::temp_directory_path() / ("bitacora-log-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "debug.log";
    {
        log::Logger logger;
        logger.SetPrintToConsole(false);
        REQUIRE(logger.OpenFile(path));
        logger.LogLine(log::Level::Info, log::Category::None, __FILE__, __LINE__, "first");
        std::filesystem::rename(path, dir / "debug.log.1"); // what logrotate does
        logger.LogLine(log::Level::Info, log::Category::None, __FILE__, __LINE__, "still old file");
        REQUIRE(logger.ReopenFile());
        logger.LogLine(log::Level::Info, log::Category::None, __FILE__, __LINE__, "new file");
    }
    auto read = [](const std::filesystem::path& p) {
        std::ifstream in(p);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    };
    const std::string rotated = read(dir / "debug.log.1");
    const std::string current = read(path);
    CHECK(rotated.find("first") != std::string::npos);
    CHECK(rotated.find("still old file") != std::string::npos);
    CHECK(current.find("new file") != std::string::npos);
    CHECK(current.find("first") == std::string::npos);
    CHECK_FALSE(log::Logger().OpenFile(dir / "missing-dir" / "x.log"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("a line rate limiter lets N lines per class and window through and counts the rest")
{
    auto now = std::chrono::steady_clock::time_point{} + 1000h;
    log::LineRateLimiter limiter(5, 1000ms, [&] { return now; });
    for (int i = 0; i < 5; ++i) {
        const auto verdict = limiter.Admit("accept");
        CHECK(verdict.admit);
        CHECK(verdict.suppressed == 0);
    }
    for (int i = 0; i < 100'000; ++i) CHECK_FALSE(limiter.Admit("accept").admit);
    CHECK(limiter.Admit("other class").admit); // classes are limited apart
    now += 999ms;
    CHECK_FALSE(limiter.Admit("accept").admit);
    now += 1ms;
    const auto verdict = limiter.Admit("accept");
    CHECK(verdict.admit);
    CHECK(verdict.suppressed == 100'001); // reported once, with the next line let through
    CHECK(limiter.Admit("accept").suppressed == 0);

    // Distinct classes are bounded; the excess shares one entry.
    for (int i = 0; i < 10'000; ++i) limiter.Admit(fmt::format("class {}", static_cast<char>('a' + i % 26)) + std::to_string(i));
    CHECK(limiter.class_count() <= log::LineRateLimiter::kClassesMax + 1);
}

TEST_CASE("message classes collapse numbers")
{
    CHECK(log::MessageClass("Error from accept() call: fd 12") == log::MessageClass("Error from accept() call: fd 34567"));
    CHECK(log::MessageClass("Error from accept() call: Too many open files") !=
          log::MessageClass("Error from accept() call: Connection reset"));
    CHECK(log::MessageClass(std::string(10'000, 'x')).size() <= 200);
}
