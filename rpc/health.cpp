#include "rpc/health.h"

#include <fmt/format.h>

#include <algorithm>

namespace bitacora::rpc {
namespace {

enum class Level { Ready, Degraded, Unavailable }; // in order of severity

const char* LevelName(Level level)
{
    switch (level) {
    case Level::Ready: return "ready";
    case Level::Degraded: return "degraded";
    case Level::Unavailable: return "unavailable";
    }
    return "?";
}

// One source's entry in the body, and how bad it is.
std::pair<Level, nlohmann::json> JudgeSource(const SourceHealth& source)
{
    nlohmann::json entry = {{"state", source.state}};
    Level level = Level::Ready;
    std::string error;
    if (source.failed) {
        level = Level::Unavailable;
        error = source.error;
    }
    if (source.upstream) {
        const UpstreamVerdict& u = *source.upstream;
        entry["upstream"] = UpstreamVerdictName(u.state);
        entry["failingSeconds"] = u.failing_s;
        entry["lastAnswerSeconds"] = u.last_answer_s < 0 ? nlohmann::json(nullptr) : nlohmann::json(u.last_answer_s);
        const Level upstream_level = u.state == UpstreamVerdict::State::Stalled   ? Level::Unavailable
                                     : u.state == UpstreamVerdict::State::Failing ? Level::Degraded
                                                                                  : Level::Ready;
        if (upstream_level > level) {
            level = upstream_level;
            error = u.reason;
        }
    }
    if (source.head_age_s) {
        entry["headAgeSeconds"] = *source.head_age_s;
        // A node that answers with the same head for too long is cut off or stuck itself.
        if (source.head_stall_s != 0 && *source.head_age_s >= source.head_stall_s && level == Level::Ready) {
            level = Level::Degraded;
            error = fmt::format("the node's head has not advanced for {} s (the bound is {} s)", *source.head_age_s,
                                source.head_stall_s);
        }
    }
    entry["healthy"] = level == Level::Ready;
    entry["error"] = error;
    return {level, std::move(entry)};
}

} // namespace

HealthAnswer DecideHealth(const ledger::LedgerHealth& ledger, const std::vector<SourceHealth>& sources)
{
    Level level = ledger.state == ledger::LedgerHealth::State::Ok ? Level::Ready : Level::Unavailable;
    nlohmann::json by_name = nlohmann::json::object();
    std::vector<std::string> failing;
    for (const auto& source : sources) {
        auto [source_level, entry] = JudgeSource(source);
        if (source_level != Level::Ready) failing.push_back(source.name);
        level = std::max(level, source_level);
        by_name[source.name] = std::move(entry);
    }
    nlohmann::json body = {{"status", LevelName(level)},
                           {"ledger", {{"state", ledger::LedgerHealthName(ledger.state)}, {"reason", ledger.reason}}},
                           {"sources", std::move(by_name)},
                           {"failing", failing}};
    return {.http_status = level == Level::Unavailable ? 503 : 200, .body = std::move(body)};
}

} // namespace bitacora::rpc
