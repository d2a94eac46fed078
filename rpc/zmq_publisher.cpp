#include "rpc/zmq_publisher.h"

#include "common/hex.h"
#include "common/logging.h"
#include "rpc/ledger_json.h"

#include <fmt/format.h>
#include <zmq.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace bitacora::rpc {

struct ZmqPublisher::Impl {
    ZmqPublisherOptions options;
    zmq::context_t context{1};
    zmq::socket_t socket{context, zmq::socket_type::pub};
    std::thread thread;

    std::mutex mutex;
    std::condition_variable cv;
    std::deque<ledger::LedgerNotice> queue; // GUARDED_BY(mutex)
    size_t queued_events{0};                // GUARDED_BY(mutex)
    bool stopping{false};                   // GUARDED_BY(mutex)
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> published{0};
    std::map<std::string, uint32_t> sequence; // publisher thread only

    void Publish(const std::string& topic, const std::string& body)
    {
        uint32_t& next = sequence[topic];
        const uint8_t seq[4] = {static_cast<uint8_t>(next), static_cast<uint8_t>(next >> 8), static_cast<uint8_t>(next >> 16),
                                static_cast<uint8_t>(next >> 24)};
        ++next;
        try {
            socket.send(zmq::buffer(topic), zmq::send_flags::sndmore);
            socket.send(zmq::buffer(body), zmq::send_flags::sndmore);
            socket.send(zmq::buffer(seq, sizeof(seq)), zmq::send_flags::none);
            ++published;
        } catch (const zmq::error_t& e) {
            ++dropped;
            LogDebug(log::Category::Zmq, "ZMQ send failed: {}", e.what());
        }
    }

    void Run()
    {
        for (;;) {
            ledger::LedgerNotice notice;
            {
                std::unique_lock lock(mutex);
                cv.wait(lock, [&] { return !queue.empty() || stopping; });
                if (queue.empty()) return;
                notice = std::move(queue.front());
                queue.pop_front();
                queued_events -= notice.events.size();
            }
            const bool final = notice.type == ledger::LedgerNotice::Type::Appended;
            for (size_t i = 0; i < notice.events.size(); ++i) {
                const auto& event = notice.events[i];
                nlohmann::json body = {{"status", final ? "final" : "rolledBack"}, {"event", EventJson(event)},
                                       {"leaf", HexEncode0x(ledger::EncodeEvent(event))}};
                if (final) body["index"] = notice.first_index + i;
                else body["source"] = notice.source;
                Publish(fmt::format("{}.{}", final ? "final" : "rollback", ledger::EventKindName(event.kind())), body.dump());
            }
        }
    }
};

ZmqPublisher::ZmqPublisher(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

Result<std::unique_ptr<ZmqPublisher>> ZmqPublisher::Start(const ZmqPublisherOptions& options)
{
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    try {
        impl->socket.set(zmq::sockopt::sndhwm, options.high_water_mark);
        impl->socket.set(zmq::sockopt::linger, 0);
        impl->socket.bind(options.endpoint);
    } catch (const zmq::error_t& e) {
        return Error{fmt::format("cannot bind the ZMQ publisher to {}: {}", options.endpoint, e.what())};
    }
    LogInfo("ZMQ: publishing ledger events on {}", options.endpoint);
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] { raw->Run(); });
    return std::unique_ptr<ZmqPublisher>(new ZmqPublisher(std::move(impl)));
}

ZmqPublisher::~ZmqPublisher() { Stop(); }

void ZmqPublisher::Stop()
{
    Impl& m = *m_impl;
    {
        std::lock_guard lock(m.mutex);
        if (m.stopping) return;
        m.stopping = true;
    }
    m.cv.notify_all();
    if (m.thread.joinable()) m.thread.join();
    m.socket.close();
}

void ZmqPublisher::Notify(const ledger::LedgerNotice& notice)
{
    Impl& m = *m_impl;
    {
        std::lock_guard lock(m.mutex);
        if (m.stopping) return;
        if (m.queued_events + notice.events.size() > m.options.queue_events_max) {
            m.dropped += notice.events.size();
            return;
        }
        m.queue.push_back(notice);
        m.queued_events += notice.events.size();
    }
    m.cv.notify_one();
}

uint64_t ZmqPublisher::dropped() const { return m_impl->dropped.load(); }
uint64_t ZmqPublisher::published() const { return m_impl->published.load(); }

} // namespace bitacora::rpc
