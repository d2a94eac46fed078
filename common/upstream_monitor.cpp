#include "common/upstream_monitor.h"

#include "common/logging.h"

#include <algorithm>

namespace bitacora {
namespace {

double Seconds(UpstreamMonitor::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

} // namespace

UpstreamMonitor::UpstreamMonitor(std::string source, std::chrono::milliseconds hang_after)
    : m_source(std::move(source)), m_hang_after(hang_after), m_created(Clock::now())
{
}

UpstreamMonitor::EndpointStats& UpstreamMonitor::StatsFor(std::string_view endpoint)
{
    for (auto& stats : m_endpoints) {
        if (stats.endpoint == endpoint) return stats;
    }
    // The endpoints come from the configuration, but the labels must stay bounded anyway.
    const std::string_view label = m_endpoints.size() + 1 < kEndpointsMax ? endpoint : std::string_view("other");
    for (auto& stats : m_endpoints) {
        if (stats.endpoint == label) return stats;
    }
    m_endpoints.push_back(EndpointStats{.endpoint = std::string(label)});
    return m_endpoints.back();
}

uint64_t UpstreamMonitor::Begin(std::string_view endpoint, std::string_view what)
{
    LOCK(m_mutex);
    const uint64_t token = m_next_token++;
    if (m_in_flight.size() < kInFlightMax) {
        m_in_flight.emplace(token, InFlight{std::string(endpoint), std::string(what), Clock::now(), false});
    }
    return token;
}

void UpstreamMonitor::Progress(uint64_t token)
{
    std::string endpoint, what;
    double waited_s = 0;
    {
        LOCK(m_mutex);
        const auto it = m_in_flight.find(token);
        if (it == m_in_flight.end() || it->second.logged_hung) return;
        const auto waited = Clock::now() - it->second.started;
        if (waited < m_hang_after) return;
        it->second.logged_hung = true;
        ++StatsFor(it->second.endpoint).hung;
        endpoint = it->second.endpoint;
        what = it->second.what;
        waited_s = Seconds(waited);
    }
    LogWarning("{} node {}: {} has had no complete answer for {:.0f} s; still waiting (the request's timeout ends it)",
               m_source == "evm" ? "EVM" : "Bitcoin", endpoint, what, waited_s);
}

void UpstreamMonitor::End(uint64_t token, std::string_view error_kind, std::string_view error_text, bool answered)
{
    const auto now = Clock::now();
    std::optional<InFlight> ended;
    {
        LOCK(m_mutex);
        if (const auto it = m_in_flight.find(token); it != m_in_flight.end()) {
            ended = std::move(it->second);
            m_in_flight.erase(it);
        }
        EndpointStats& stats = StatsFor(ended ? ended->endpoint : std::string_view("other"));
        ++stats.requests;
        if (!error_kind.empty()) ++stats.errors[std::string(error_kind)];
        if (ended) {
            const double seconds = Seconds(now - ended->started);
            stats.duration_seconds_sum += seconds;
            const auto bucket = std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds);
            ++stats.duration_counts[static_cast<size_t>(bucket - kDurationBuckets.begin())];
        }
        if (answered) m_last_answer = now;
        if (error_kind.empty() || answered) {
            m_failures_in_row = 0;
            m_failing_since.reset();
        } else {
            NoteFailureLocked(ended ? ended->started : now, error_text);
        }
    }
    if (ended && ended->logged_hung) {
        LogInfo("{} node {}: {} ended after {:.1f} s: {}", m_source == "evm" ? "EVM" : "Bitcoin", ended->endpoint,
                ended->what, Seconds(now - ended->started), error_kind.empty() ? std::string_view("answered") : error_text);
    }
}

void UpstreamMonitor::NoteFailureLocked(Clock::time_point since, std::string_view error_text)
{
    ++m_failures_in_row;
    if (!m_failing_since) m_failing_since = since;
    m_last_error = std::string(error_text.substr(0, kErrorTextBytesMax));
}

void UpstreamMonitor::Refused(std::string_view endpoint, std::string_view error_kind, std::string_view error_text)
{
    LOCK(m_mutex);
    ++StatsFor(endpoint).errors[std::string(error_kind)];
    NoteFailureLocked(Clock::now(), error_text);
}

void UpstreamMonitor::CountAnswerError(std::string_view endpoint, std::string_view error_kind)
{
    LOCK(m_mutex);
    ++StatsFor(endpoint).errors[std::string(error_kind)];
}

UpstreamMonitor::Snapshot UpstreamMonitor::snapshot() const
{
    LOCK(m_mutex);
    Snapshot s{.source = m_source, .endpoints = m_endpoints, .created = m_created, .last_answer = m_last_answer,
               .failing_since = m_failing_since, .failures_in_row = m_failures_in_row, .last_error = m_last_error};
    s.in_flight = m_in_flight.size();
    for (const auto& [token, flight] : m_in_flight) {
        if (!s.oldest_in_flight || flight.started < *s.oldest_in_flight) {
            s.oldest_in_flight = flight.started;
            s.oldest_in_flight_what = flight.what + " to " + flight.endpoint;
        }
    }
    return s;
}

UpstreamVerdict JudgeUpstream(const UpstreamMonitor::Snapshot& s, UpstreamMonitor::Clock::time_point now,
                              std::chrono::milliseconds hang_after, std::chrono::milliseconds stall_after)
{
    UpstreamVerdict v;
    if (s.last_answer) v.last_answer_s = Seconds(now - *s.last_answer);
    std::optional<UpstreamMonitor::Clock::time_point> since;
    if (s.failures_in_row > 0 && s.failing_since) {
        since = s.failing_since;
        v.reason = s.last_error;
    }
    // A request that hangs counts from its start, even while the last one succeeded.
    if (s.oldest_in_flight && now - *s.oldest_in_flight >= hang_after &&
        (!since || *s.oldest_in_flight < *since)) {
        since = s.oldest_in_flight;
        v.reason = fmt::format("{} has had no answer for {:.0f} s", s.oldest_in_flight_what, Seconds(now - *s.oldest_in_flight));
    }
    if (!since) return v;
    v.failing_s = Seconds(now - *since);
    // Stalled: failing for the whole bound, and nothing answered within it (another
    // endpoint, or another thread's request, answering keeps the source alive).
    const bool answered_recently = s.last_answer && now - *s.last_answer < stall_after;
    v.state = now - *since >= stall_after && !answered_recently ? UpstreamVerdict::State::Stalled
                                                                 : UpstreamVerdict::State::Failing;
    return v;
}

std::string_view UpstreamVerdictName(UpstreamVerdict::State state)
{
    switch (state) {
    case UpstreamVerdict::State::Ok: return "ok";
    case UpstreamVerdict::State::Failing: return "failing";
    case UpstreamVerdict::State::Stalled: return "stalled";
    }
    return "?";
}

} // namespace bitacora
