// Subscribes to bitcoind's ZMQ notifications (`sequence`, or `hashblock` where only that
// is offered) and turns them into hints for the follower. ZMQ is a hint, RPC is the
// truth: a gap in a topic's sequence numbers, a disconnect or a reconnect asks for a
// resync over RPC, and the follower also polls on a timer. (bitcoind's doc/zmq.md: the
// publisher drops messages at its high-water mark and has no replay.)
#pragma once

#include "common/sha256.h"
#include "common/sync.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace zmq {
class socket_t;
}

namespace bitacora::btc {

struct ZmqSession;

struct ZmqHint {
    enum class Type { BlockConnected, BlockDisconnected, Resync };
    Type type{Type::Resync};
    Hash256 block_hash{}; // internal byte order (blocks only)
    std::string reason;   // Resync: why
    std::chrono::steady_clock::time_point received{};
};

struct ZmqSubscription {
    std::string topic;    // "sequence" or "hashblock"
    std::string endpoint; // tcp://127.0.0.1:28332
};

struct ZmqSubscriberStats {
    uint64_t messages{0};
    uint64_t gaps{0};
    uint64_t disconnects{0};
    uint64_t malformed{0};
};

class ZmqSubscriber {
public:
    using HintHandler = std::function<void(const ZmqHint&)>;
    ZmqSubscriber(std::vector<ZmqSubscription> subscriptions, HintHandler handler);
    ~ZmqSubscriber();
    ZmqSubscriber(const ZmqSubscriber&) = delete;
    ZmqSubscriber& operator=(const ZmqSubscriber&) = delete;

    // Does nothing without subscriptions, or when no eventfd is to be had (then the
    // follower polls over RPC only).
    void Start();
    void Stop();
    ZmqSubscriberStats stats() const;

private:
    void Run();
    void Subscribe(zmq::socket_t& socket);
    void OnMonitorEvent(zmq::socket_t& monitor, ZmqSession& session);
    void Drain(zmq::socket_t& socket, ZmqSession& session);

    const std::vector<ZmqSubscription> m_subscriptions;
    const HintHandler m_handler;
    std::atomic<bool> m_stop{false};
    // An eventfd in Run's zmq::poll beside the sockets: Stop() ends the wait at once
    // (a condition variable cannot share a wait with ZMQ sockets).
    int m_stop_fd{-1};
    std::thread m_thread;
    std::atomic<uint64_t> m_messages{0}, m_gaps{0}, m_disconnects{0}, m_malformed{0};
};

// Which of bitcoind's getzmqnotifications answer to use: `pubsequence` when offered,
// else `pubhashblock`; empty when neither is.
std::vector<ZmqSubscription> ChooseZmqSubscriptions(const std::vector<std::pair<std::string, std::string>>& offered);

} // namespace bitacora::btc
