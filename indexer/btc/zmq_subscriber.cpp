#include "indexer/btc/zmq_subscriber.h"

#include "common/logging.h"

#include <zmq.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <sys/eventfd.h>
#include <unistd.h>

namespace bitacora::btc {
namespace {

constexpr int64_t kZmqMessageBytesMax = 4096; // one frame; ours are 32 to 37 bytes
constexpr const char* kMonitorEndpoint = "inproc://bitacora-btc-zmq-monitor";

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

void ZmqSubscriber::Run()
{
    try {
        zmq::context_t context{1};
        zmq::socket_t socket{context, zmq::socket_type::sub};
        socket.set(zmq::sockopt::linger, 0);
        // bitcoind's doc/zmq.md: TCP keepalive so that a dead peer is noticed.
        socket.set(zmq::sockopt::tcp_keepalive, 1);
        socket.set(zmq::sockopt::rcvhwm, 10'000);
        // We subscribe to `sequence` or `hashblock` only (33 and 32 bytes a body): a larger
        // message is dropped by libzmq with its connection, so what a hostile publisher can
        // queue here is at most rcvhwm x this.
        socket.set(zmq::sockopt::maxmsgsize, int64_t{kZmqMessageBytesMax});
        std::set<std::string> endpoints;
        for (const auto& s : m_subscriptions) {
            socket.set(zmq::sockopt::subscribe, s.topic);
            endpoints.insert(s.endpoint);
        }
        if (zmq_socket_monitor(socket.handle(), kMonitorEndpoint, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
            LogWarning("ZMQ monitor could not start: disconnects from bitcoind will only be noticed by polling");
        }
        zmq::socket_t monitor{context, zmq::socket_type::pair};
        monitor.connect(kMonitorEndpoint);
        for (const auto& endpoint : endpoints) {
            socket.connect(endpoint);
            LogInfo("Bitcoin: subscribed to ZMQ {} at {}", m_subscriptions.front().topic, endpoint);
        }
        std::map<std::string, uint32_t> last_sequence; // per topic
        bool connected_once = false;
        while (!m_stop) {
            zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                                       {monitor.handle(), 0, ZMQ_POLLIN, 0},
                                       {nullptr, m_stop_fd, ZMQ_POLLIN, 0}};
            zmq::poll(items, 3); // until a message, a connection event or Stop()
            if (m_stop) break;
            if (items[1].revents & ZMQ_POLLIN) {
                zmq::message_t event_frame, address_frame;
                if (monitor.recv(event_frame) && event_frame.more() && monitor.recv(address_frame) &&
                    event_frame.size() >= 2) {
                    uint16_t event = 0;
                    std::memcpy(&event, event_frame.data(), sizeof(event));
                    if (event == ZMQ_EVENT_DISCONNECTED) {
                        ++m_disconnects;
                        last_sequence.clear();
                        LogWarning("Bitcoin: ZMQ connection to bitcoind lost; polling over RPC until it is back");
                        m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ disconnected", std::chrono::steady_clock::now()});
                    } else if (event == ZMQ_EVENT_CONNECTED) {
                        // Anything published while we were away is lost: resync.
                        if (connected_once) {
                            m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ reconnected", std::chrono::steady_clock::now()});
                        }
                        connected_once = true;
                    }
                }
            }
            if (!(items[0].revents & ZMQ_POLLIN)) continue;
            // Drain what is queued, bounded so that the monitor is not starved.
            for (int drained = 0; drained < 1'000 && !m_stop; ++drained) {
                std::vector<zmq::message_t> frames;
                for (int i = 0; i < 4; ++i) {
                    zmq::message_t frame;
                    const auto got = socket.recv(frame, i == 0 ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
                    if (!got) break;
                    const bool more = frame.more();
                    frames.push_back(std::move(frame));
                    if (!more) break;
                }
                if (frames.empty()) break;
                const auto received = std::chrono::steady_clock::now();
                ++m_messages;
                if (frames.size() != 3 || frames[2].size() != 4) {
                    ++m_malformed;
                    m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "malformed ZMQ message", received});
                    continue;
                }
                const std::string topic = frames[0].to_string();
                const auto* seq_bytes = static_cast<const uint8_t*>(frames[2].data());
                const uint32_t sequence = static_cast<uint32_t>(seq_bytes[0]) | static_cast<uint32_t>(seq_bytes[1]) << 8 |
                                          static_cast<uint32_t>(seq_bytes[2]) << 16 | static_cast<uint32_t>(seq_bytes[3]) << 24;
                const auto last = last_sequence.find(topic);
                if (last != last_sequence.end() && sequence != static_cast<uint32_t>(last->second + 1)) {
                    ++m_gaps;
                    LogWarning("Bitcoin: ZMQ {} sequence jumped from {} to {}: messages were lost; resyncing over RPC",
                               topic, last->second, sequence);
                    m_handler(ZmqHint{ZmqHint::Type::Resync, {}, "ZMQ sequence gap", received});
                }
                last_sequence[topic] = sequence;
                const auto* body = static_cast<const uint8_t*>(frames[1].data());
                const size_t size = frames[1].size();
                if (topic == "hashblock" && size == 32) {
                    m_handler(ZmqHint{ZmqHint::Type::BlockConnected, FromDisplay(body), {}, received});
                } else if (topic == "sequence" && size >= 33) {
                    const char label = static_cast<char>(body[32]);
                    if (label == 'C' && size == 33) {
                        m_handler(ZmqHint{ZmqHint::Type::BlockConnected, FromDisplay(body), {}, received});
                    } else if (label == 'D' && size == 33) {
                        m_handler(ZmqHint{ZmqHint::Type::BlockDisconnected, FromDisplay(body), {}, received});
                    } else if ((label == 'A' || label == 'R') && size == 41) {
                        // Mempool traffic: not ours to follow.
                    } else {
                        ++m_malformed;
                    }
                } else {
                    ++m_malformed;
                }
            }
        }
        zmq_socket_monitor(socket.handle(), nullptr, 0);
    } catch (const zmq::error_t& e) {
        LogError("Bitcoin: ZMQ subscriber failed: {}; following by RPC polling only", e.what());
    }
}

} // namespace bitacora::btc
