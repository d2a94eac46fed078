#include "common/clock.h"

#include <ctime>

namespace bitacora {

void StopSignal::Stop()
{
    {
        LOCK(m_mutex);
        m_stopped.store(true, std::memory_order_release);
    }
    m_cv.notify_all();
}

bool StopSignal::WaitFor(std::chrono::milliseconds duration)
{
    const auto until = std::chrono::steady_clock::now() + duration;
    LOCK(m_mutex);
    while (!stopped()) {
        if (m_cv.wait_until(m_mutex, until) == std::cv_status::timeout) break;
    }
    return !stopped();
}

namespace {

class SystemClockImpl final : public TimeSource {
public:
    TimePoint Now() override { return std::chrono::steady_clock::now(); }
    uint64_t UnixSeconds() override { return static_cast<uint64_t>(std::time(nullptr)); }
    bool SleepFor(std::chrono::milliseconds duration, StopSignal& stop) override { return stop.WaitFor(duration); }
};

} // namespace

TimeSource& SystemClock()
{
    static SystemClockImpl clock;
    return clock;
}

} // namespace bitacora
