// Time and waiting behind an interface, so that the code that decides (the followers,
// the anchorer) runs the same under the system clock and under the simulator's
// (tests/sim), where a wait advances virtual time at once and nothing sleeps.
#pragma once

#include "common/sync.h"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace bitacora {

// Asked to stop: set once, seen by every wait at once (a condition variable, no polling).
class StopSignal {
public:
    void Stop() LOCKS_EXCLUDED(m_mutex);
    bool stopped() const { return m_stopped.load(std::memory_order_acquire); }
    // Waits up to `duration`; false when stopped (before or during the wait).
    bool WaitFor(std::chrono::milliseconds duration) LOCKS_EXCLUDED(m_mutex);

private:
    std::atomic<bool> m_stopped{false};
    Mutex m_mutex;
    ConditionVariable m_cv;
};

class TimeSource {
public:
    using TimePoint = std::chrono::steady_clock::time_point;
    virtual ~TimeSource() = default;
    virtual TimePoint Now() = 0;
    virtual uint64_t UnixSeconds() = 0;
    // Waits `duration` unless `stop` is stopped first; false when stopped.
    virtual bool SleepFor(std::chrono::milliseconds duration, StopSignal& stop) = 0;
};

// The process's clock: steady_clock, the system's wall clock, waits on the StopSignal.
TimeSource& SystemClock();

// Virtual time: starts at a given instant, moves only when told to or when someone
// waits. Single-threaded use (the simulator).
class ManualClock final : public TimeSource {
public:
    explicit ManualClock(uint64_t unix_seconds_start = 1'700'000'000) : m_unix_start(unix_seconds_start) {}
    TimePoint Now() override { return TimePoint{} + m_elapsed; }
    uint64_t UnixSeconds() override
    {
        return m_unix_start + static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(m_elapsed).count());
    }
    bool SleepFor(std::chrono::milliseconds duration, StopSignal& stop) override
    {
        if (stop.stopped()) return false;
        m_elapsed += duration;
        m_slept += duration;
        return !stop.stopped();
    }
    void Advance(std::chrono::milliseconds duration) { m_elapsed += duration; }
    std::chrono::milliseconds elapsed() const { return std::chrono::duration_cast<std::chrono::milliseconds>(m_elapsed); }
    // Time spent in SleepFor: waits the code asked for.
    std::chrono::milliseconds slept() const { return m_slept; }

private:
    uint64_t m_unix_start;
    std::chrono::steady_clock::duration m_elapsed{};
    std::chrono::milliseconds m_slept{0};
};

} // namespace bitacora
