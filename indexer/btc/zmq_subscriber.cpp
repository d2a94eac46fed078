#include "indexer/btc/zmq_subscriber.h"

#include "common/logging.h"

#include <zmq.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include <sys/eventfd.h>
#include <unistd.h>

namespace bitacora::btc {
namespace {

constexpr int64_t kZmqMessageBytesMax = 4096; // one frame; ours are 32 to 37 bytes
constexpr const char* kMonitorEndpoint = "inproc://bitacora-btc-zmq-monitor";
constexpr int kDrainMessagesMax = 1'000; // per wake-up, so that the monitor is not starved

Hash256 FromDisplay(const uint8_t* bytes)
{
    Hash256 hash;
    std::reverse_copy(bytes, bytes + 32, hash.begin());
    return hash;
}

} // namespace

std::vector<ZmqSubscription> ChooseZmqSubscriptions(const std::vector<std::pair<std::string, std::string>>& offered)
{
    for (const char* wanted : {"pubsequence", "pubhashblock"}) {
        for (const auto& [type, address] : offered) {
            if (type == wanted) return {ZmqSubscription{std::string(wanted + 3), address}};
        }
    }
    return {};
}

ZmqSubscriber::ZmqSubscriber(std::vector<ZmqSubscription> subscriptions, HintHandler handler)
    : m_subscriptions(std::move(subscriptions)), m_handler(std::move(handler))
{
}

ZmqSubscriber::~ZmqSubscriber()
{
    Stop();
    if (m_stop_fd >= 0) ::close(m_stop_fd);
}

void ZmqSubscriber::Start()
{
    if (m_thread.joinable() || m_subscriptions.empty()) return;
    if (m_stop_fd < 0) m_stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m_stop_fd < 0) {
        LogError("Bitcoin: ZMQ subscriber not started (eventfd: {}); following by RPC polling only", std::strerror(errno));
        return;
    }
    uint64_t earlier_stops = 0; // from a Stop() before this Start()
    [[maybe_unused]] const ssize_t drained = ::read(m_stop_fd, &earlier_stops, sizeof(earlier_stops));
    m_stop = false;
    m_thread = std::thread([this] { Run(); });
}

void ZmqSubscriber::Stop()
{
    m_stop = true;
    if (m_stop_fd >= 0) {
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t written = ::write(m_stop_fd, &one, sizeof(one));
    }
    if (m_thread.joinable()) m_thread.join();
}

ZmqSubscriberStats ZmqSubscriber::stats() const
{
    return {m_messages.load(), m_gaps.load(), m_disconnects.load(), m_malformed.load()};
}

// What one Run has seen: each topic's last sequence number, and whether it connected yet.
struct ZmqSession {
    std::map<std::string, uint32_t> last_sequence;
    bool connected_once{false};
};

namespace {

// What a message means, apart from the sockets: hints to hand on, a gap in its topic's
// sequence (messages were lost), or a malformed message.
struct Reading {
    std::vector<ZmqHint> hints;
    bool malformed{false};
    std::optional<std::pair<uint32_t, uint32_t>> gap; // from, to
};

Reading ReadMessage(std::vector<zmq::message_t>& frames, ZmqSession& session, std::chrono::steady_clock::time_point received)
{
    Reading out;
    if (frames.size() != 3 || frames[2].size() != 4) {
        out.malformed = true;
        out.hints.push_back(ZmqHint{ZmqHint::Type::Resync, {}, "malformed ZMQ message", received});
        return out;
    }
    const std::string topic = frames[0].to_string();
    const auto* seq_bytes = static_cast<const uint8_t*>(frames[2].data());
    const uint32_t sequence = static_cast<uint32_t>(seq_bytes[0]) | static_cast<uint32_t>(seq_bytes[1]) << 8 |
                              static_cast<uint32_t>(seq_bytes[2]) << 16 | static_cast<uint32_t>(seq_bytes[3]) << 24;
    const auto last = session.last_sequence.find(topic);
    if (last != session.last_sequence.end() && sequence != static_cast<uint32_t>(last->second + 1)) {
        out.gap = std::pair{last->second, sequence};
        out.hints.push_back(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ sequence gap", received});
    }
    session.last_sequence[topic] = sequence;
    const auto* body = static_cast<const uint8_t*>(frames[1].data());
    const size_t size = frames[1].size();
    const char label = topic == "hashblock" ? 'C' : size >= 33 ? static_cast<char>(body[32]) : '\0';
    if (topic == "hashblock" ? size == 32 : topic == "sequence" && size == 33 && (label == 'C' || label == 'D')) {
        const auto type = label == 'C' ? ZmqHint::Type::BlockConnected : ZmqHint::Type::BlockDisconnected;
        out.hints.push_back(ZmqHint{type, FromDisplay(body), {}, received});
    } else if (!(topic == "sequence" && (label == 'A' || label == 'R') && size == 41)) {
        out.malformed = true; // mempool traffic (A, R) is not ours to follow, and not malformed
    }
    return out;
}

// Up to 4 frames of the next queued message; empty when none is queued.
std::vector<zmq::message_t> ReceiveFrames(zmq::socket_t& socket)
{
    std::vector<zmq::message_t> frames;
    for (int i = 0; i < 4; ++i) {
        zmq::message_t frame;
        const auto got = socket.recv(frame, i == 0 ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
        if (!got) break;
        const bool more = frame.more();
        frames.push_back(std::move(frame));
        if (!more) break;
    }
    return frames;
}

} // namespace

void ZmqSubscriber::Subscribe(zmq::socket_t& socket)
{
    socket.set(zmq::sockopt::linger, 0);
    // bitcoind's doc/zmq.md: TCP keepalive so that a dead peer is noticed.
    socket.set(zmq::sockopt::tcp_keepalive, 1);
    socket.set(zmq::sockopt::rcvhwm, 10'000);
    // We subscribe to `sequence` or `hashblock` only (33 and 32 bytes a body): a larger
    // message is dropped by libzmq with its connection, so what a hostile publisher can
    // queue here is at most rcvhwm x this.
    socket.set(zmq::sockopt::maxmsgsize, int64_t{kZmqMessageBytesMax});
    for (const auto& s : m_subscriptions) socket.set(zmq::sockopt::subscribe, s.topic);
    if (zmq_socket_monitor(socket.handle(), kMonitorEndpoint, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
        LogWarning("ZMQ monitor could not start: disconnects from bitcoind will only be noticed by polling");
    }
}

void ZmqSubscriber::OnMonitorEvent(zmq::socket_t& monitor, ZmqSession& session)
{
    zmq::message_t event_frame, address_frame;
    if (!monitor.recv(event_frame) || !event_frame.more() || !monitor.recv(address_frame) || event_frame.size() < 2) return;
    uint16_t event = 0;
    std::memcpy(&event, event_frame.data(), sizeof(event));
    if (event == ZMQ_EVENT_DISCONNECTED) {
        ++m_disconnects;
        session.last_sequence.clear();
        LogWarning("Bitcoin: ZMQ connection to bitcoind lost; polling over RPC until it is back");
        m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ disconnected", std::chrono::steady_clock::now()});
    } else if (event == ZMQ_EVENT_CONNECTED) {
        // Anything published while we were away is lost: resync.
        if (session.connected_once) {
            m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ reconnected", std::chrono::steady_clock::now()});
        }
        session.connected_once = true;
    }
}

// Drains what is queued, bounded so that the monitor is not starved.
void ZmqSubscriber::Drain(zmq::socket_t& socket, ZmqSession& session)
{
    for (int drained = 0; drained < kDrainMessagesMax && !m_stop; ++drained) {
        std::vector<zmq::message_t> frames = ReceiveFrames(socket);
        if (frames.empty()) return;
        ++m_messages;
        const Reading reading = ReadMessage(frames, session, std::chrono::steady_clock::now());
        if (reading.malformed) ++m_malformed;
        if (reading.gap) {
            ++m_gaps;
            LogWarning("Bitcoin: ZMQ {} sequence jumped from {} to {}: messages were lost; resyncing over RPC",
                       frames[0].to_string(), reading.gap->first, reading.gap->second);
        }
        for (const auto& hint : reading.hints) m_handler(hint);
    }
}

void ZmqSubscriber::Run()
{
    try {
        zmq::context_t context{1};
        zmq::socket_t socket{context, zmq::socket_type::sub};
        Subscribe(socket);
        zmq::socket_t monitor{context, zmq::socket_type::pair};
        monitor.connect(kMonitorEndpoint);
        std::set<std::string> endpoints;
        for (const auto& s : m_subscriptions) endpoints.insert(s.endpoint);
        for (const auto& endpoint : endpoints) {
            socket.connect(endpoint);
            LogInfo("Bitcoin: subscribed to ZMQ {} at {}", m_subscriptions.front().topic, endpoint);
        }
        ZmqSession session;
        while (!m_stop) {
            zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                                       {monitor.handle(), 0, ZMQ_POLLIN, 0},
                                       {nullptr, m_stop_fd, ZMQ_POLLIN, 0}};
            zmq::poll(items, 3); // until a message, a connection event or Stop()
            if (m_stop) break;
            if (items[1].revents & ZMQ_POLLIN) OnMonitorEvent(monitor, session);
            if (items[0].revents & ZMQ_POLLIN) Drain(socket, session);
        }
        zmq_socket_monitor(socket.handle(), nullptr, 0);
    } catch (const zmq::error_t& e) {
        LogError("Bitcoin: ZMQ subscriber failed: {}; following by RPC polling only", e.what());
    }
}

} // namespace bitacora::btc
