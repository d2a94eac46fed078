// What one upstream node (the EVM endpoints, bitcoind) did, as it happens: every exchange
// is counted per endpoint when it ends, and watched while it is in flight, so that
// /health and /metrics see a node that refuses connections or hangs without waiting for
// a follower to finish its step (they used to read the clients' totals after each step:
// zero errors while a node was down). A request in flight past hang_after is logged
// once, while it hangs. Thread-safe: the followers' clients write, the API reads.
#pragma once

#include "common/sync.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora {

class UpstreamMonitor {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kEndpointsMax = 32;   // distinct endpoint labels; more share "other"
    static constexpr size_t kInFlightMax = 256;   // exchanges watched at once; more are only counted
    static constexpr size_t kErrorTextBytesMax = 512;
    // Upper bounds of the request duration histogram, in seconds (+Inf is implied).
    static constexpr std::array<double, 12> kDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                             0.5,   1,    2.5,   5,    10,  30};

    struct EndpointStats {
        std::string endpoint;
        uint64_t requests{0};                   // ended exchanges, answered or not
        std::map<std::string, uint64_t> errors; // by kind (transport, http, rpc, ...)
        uint64_t hung{0};                       // exchanges logged as hung
        std::array<uint64_t, kDurationBuckets.size() + 1> duration_counts{}; // per bucket, not cumulative
        double duration_seconds_sum{0};
    };
    struct Snapshot {
        std::string source;
        std::vector<EndpointStats> endpoints;
        Clock::time_point created{};
        std::optional<Clock::time_point> last_answer;   // an exchange that got an answer (an error answer too)
        std::optional<Clock::time_point> failing_since; // the first failure since the last answer
        uint64_t failures_in_row{0};
        std::string last_error;                         // of the last failed exchange
        std::optional<Clock::time_point> oldest_in_flight; // start of the oldest exchange not ended
        std::string oldest_in_flight_what;              // "eth_getLogs to http://host:port"
        size_t in_flight{0};
    };

    // source: "evm", "btc" (a metric label and a log prefix).
    UpstreamMonitor(std::string source, std::chrono::milliseconds hang_after);
    UpstreamMonitor(const UpstreamMonitor&) = delete;
    UpstreamMonitor& operator=(const UpstreamMonitor&) = delete;

    // One exchange: Begin before sending (what: the method, or "batch of n"), Progress
    // while waiting (from curl's progress callback, about once a second), End with its
    // outcome. error_kind empty: it succeeded. answered: the node sent a well-formed
    // answer (a JSON-RPC error object is an answer: the node is alive).
    uint64_t Begin(std::string_view endpoint, std::string_view what) LOCKS_EXCLUDED(m_mutex);
    void Progress(uint64_t token) LOCKS_EXCLUDED(m_mutex);
    void End(uint64_t token, std::string_view error_kind, std::string_view error_text, bool answered)
        LOCKS_EXCLUDED(m_mutex);

    // An answer that arrived whole but was refused (not JSON-RPC, another request's):
    // counted against its endpoint, and the source is failing until the next good one.
    void Refused(std::string_view endpoint, std::string_view error_kind, std::string_view error_text)
        LOCKS_EXCLUDED(m_mutex);

    // A well-formed error answer (a JSON-RPC error object): counted only, the node is alive.
    void CountAnswerError(std::string_view endpoint, std::string_view error_kind) LOCKS_EXCLUDED(m_mutex);

    Snapshot snapshot() const LOCKS_EXCLUDED(m_mutex);
    const std::string& source() const { return m_source; }
    std::chrono::milliseconds hang_after() const { return m_hang_after; }

private:
    struct InFlight {
        std::string endpoint;
        std::string what;
        Clock::time_point started{};
        bool logged_hung{false};
    };
    EndpointStats& StatsFor(std::string_view endpoint) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);
    void NoteFailureLocked(Clock::time_point since, std::string_view error_text) EXCLUSIVE_LOCKS_REQUIRED(m_mutex);

    const std::string m_source;
    const std::chrono::milliseconds m_hang_after;
    const Clock::time_point m_created;
    mutable Mutex m_mutex;
    std::vector<EndpointStats> m_endpoints GUARDED_BY(m_mutex);
    std::map<uint64_t, InFlight> m_in_flight GUARDED_BY(m_mutex);
    uint64_t m_next_token GUARDED_BY(m_mutex){1};
    std::optional<Clock::time_point> m_last_answer GUARDED_BY(m_mutex);
    std::optional<Clock::time_point> m_failing_since GUARDED_BY(m_mutex);
    uint64_t m_failures_in_row GUARDED_BY(m_mutex){0};
    std::string m_last_error GUARDED_BY(m_mutex);
};

// What a snapshot says of the source now: ok; failing (the last exchange failed, or one
// has hung past hang_after) but for less than stall_after; or stalled (failing, and no
// answer at all, for stall_after or longer). A source that is idle is ok.
struct UpstreamVerdict {
    enum class State { Ok, Failing, Stalled };
    State state{State::Ok};
    double failing_s{0};      // since when it has been failing
    double last_answer_s{-1}; // age of the last answer; -1: none yet
    std::string reason;       // the last error, or the request that hangs
};
UpstreamVerdict JudgeUpstream(const UpstreamMonitor::Snapshot& snapshot, UpstreamMonitor::Clock::time_point now,
                              std::chrono::milliseconds hang_after, std::chrono::milliseconds stall_after);
std::string_view UpstreamVerdictName(UpstreamVerdict::State state); // "ok", "failing", "stalled"

} // namespace bitacora
