#include "rpc/zmq_publisher.h"

#include "common/hex.h"
#include "common/logging.h"
#include "common/sync.h"
#include "rpc/ledger_json.h"

#include <fmt/format.h>
#include <zmq.hpp>

#include <openssl/rand.h>

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <utility>

namespace bitacora::rpc {

namespace {

// A random id per process: sequence numbers restart with it, so a subscriber tells a
// restart (new epoch, nothing to conclude) from a gap (same epoch, messages lost).
std::string NewEpoch()
{
    std::array<uint8_t, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        std::random_device device;
        for (auto& b : bytes) b = static_cast<uint8_t>(device());
    }
    return HexEncode(bytes);
}

// The kind part of a topic: each off-chain kind has its own ("offchain.offer.posted"),
// so "final.offchain" still selects them all by prefix.
std::string TopicKind(const ledger::Event& event)
{
    if (const auto* e = std::get_if<ledger::OffchainEvent>(&event.body)) return "offchain." + e->kind;
    return std::string(ledger::EventKindName(event.kind()));
}

// What a notice's events are published as: topic prefix and body status.
struct PublishedKind {
    const char* topic;
    const char* status;
};

PublishedKind PublishedKindOf(ledger::LedgerNotice::Type type)
{
    switch (type) {
    case ledger::LedgerNotice::Type::Appended: return {"final", "final"};
    case ledger::LedgerNotice::Type::Pending: return {"pending", "pending"};
    case ledger::LedgerNotice::Type::RolledBack: return {"rollback", "rolledBack"};
    }
    return {"final", "final"};
}

std::string TopicOf(ledger::LedgerNotice::Type type, const ledger::Event& event)
{
    return fmt::format("{}.{}", PublishedKindOf(type).topic, TopicKind(event));
}

} // namespace

std::vector<ZmqMessage> ZmqMessagesOf(const ledger::LedgerNotice& notice, const std::string& epoch)
{
    const PublishedKind kind = PublishedKindOf(notice.type);
    const bool final = notice.type == ledger::LedgerNotice::Type::Appended;
    std::vector<ZmqMessage> out;
    out.reserve(notice.events.size());
    for (size_t i = 0; i < notice.events.size(); ++i) {
        const auto& event = notice.events[i];
        nlohmann::json body = {{"status", kind.status}, {"epoch", epoch}, {"event", EventJson(event)},
                               {"leaf", HexEncode0x(ledger::EncodeEvent(event))}};
        body["index"] = final ? nlohmann::json(notice.first_index + i) : nlohmann::json(nullptr);
        // On-chain events carry their pending id in every state, final included, so that a
        // subscriber matches a final event to the pending one it saw.
        if (const auto id = ledger::PendingIdOf(event)) body["pendingId"] = ledger::PendingIdText(*id);
        if (!final) body["source"] = notice.source;
        out.push_back({TopicOf(notice.type, event), body.dump()});
    }
    return out;
}

namespace {

// Messages dropped per topic: their sequence numbers are still taken, so that a subscriber
// sees the gap where the messages would have been.
using Skipped = std::map<std::string, uint32_t>;

void CountSkipped(Skipped& skipped, const ledger::LedgerNotice& notice)
{
    for (const auto& event : notice.events) ++skipped[TopicOf(notice.type, event)];
}

} // namespace

struct ZmqPublisher::Impl {
    struct Queued {
        ledger::LedgerNotice notice;
        Skipped skipped_after; // dropped after this notice was queued, before the next
    };

    ZmqPublisherOptions options;
    const std::string epoch{NewEpoch()};
    zmq::context_t context{1};
    zmq::socket_t socket{context, zmq::socket_type::pub};
    std::thread thread;

    Mutex mutex;
    ConditionVariable cv;
    std::deque<Queued> queue GUARDED_BY(mutex);
    Skipped skipped_now GUARDED_BY(mutex); // dropped while the queue was empty
    size_t queued_events GUARDED_BY(mutex){0};
    bool stopping GUARDED_BY(mutex){false};
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> published{0};
    std::map<std::string, uint32_t> sequence; // publisher thread only

    void Skip(const Skipped& skipped)
    {
        for (const auto& [topic, count] : skipped) sequence[topic] += count;
    }

    void Publish(const ZmqMessage& message)
    {
        uint32_t& next = sequence[message.topic];
        const uint8_t seq[4] = {static_cast<uint8_t>(next), static_cast<uint8_t>(next >> 8), static_cast<uint8_t>(next >> 16),
                                static_cast<uint8_t>(next >> 24)};
        ++next;
        try {
            socket.send(zmq::buffer(message.topic), zmq::send_flags::sndmore);
            socket.send(zmq::buffer(message.body), zmq::send_flags::sndmore);
            socket.send(zmq::buffer(seq, sizeof(seq)), zmq::send_flags::none);
            ++published;
        } catch (const zmq::error_t& e) {
            ++dropped;
            LogDebug(log::Category::Zmq, "ZMQ send failed: {}", e.what());
        }
    }

    // The next notice (with what was dropped before it), or nullopt when stopping with
    // nothing left.
    std::optional<Queued> Next(Skipped& skipped_before) LOCKS_EXCLUDED(mutex)
    {
        LOCK(mutex);
        while (queue.empty() && !stopping) cv.wait(mutex);
        if (queue.empty()) return std::nullopt;
        Queued next = std::move(queue.front());
        queue.pop_front();
        queued_events -= next.notice.events.size();
        skipped_before = std::exchange(skipped_now, {});
        return next;
    }

    void Run()
    {
        Skipped skipped_before;
        while (auto next = Next(skipped_before)) {
            Skip(skipped_before);
            for (const auto& message : ZmqMessagesOf(next->notice, epoch)) Publish(message);
            Skip(next->skipped_after);
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
    LogInfo("ZMQ: publishing ledger events on {} (stream epoch {})", options.endpoint, impl->epoch);
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] { raw->Run(); });
    return std::unique_ptr<ZmqPublisher>(new ZmqPublisher(std::move(impl)));
}

ZmqPublisher::~ZmqPublisher() { Stop(); }

void ZmqPublisher::Stop()
{
    Impl& m = *m_impl;
    {
        LOCK(m.mutex);
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
        LOCK(m.mutex);
        if (m.stopping) return;
        if (m.queued_events + notice.events.size() > m.options.queue_events_max) {
            m.dropped += notice.events.size();
            CountSkipped(m.queue.empty() ? m.skipped_now : m.queue.back().skipped_after, notice);
            return;
        }
        m.queue.push_back({notice, {}});
        m.queued_events += notice.events.size();
    }
    m.cv.notify_one();
}

uint64_t ZmqPublisher::dropped() const { return m_impl->dropped.load(); }
uint64_t ZmqPublisher::published() const { return m_impl->published.load(); }
const std::string& ZmqPublisher::epoch() const { return m_impl->epoch; }
const std::string& ZmqPublisher::endpoint() const { return m_impl->options.endpoint; }

} // namespace bitacora::rpc
