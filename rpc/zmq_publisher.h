// Publishes ledger events on a ZMQ PUB socket with bitcoind's framing (doc/zmq.md):
// three parts, the topic, the body, and a 4-byte little-endian sequence number that
// counts per topic. Topics: "final.<kind>" when an event enters the final log (body:
// JSON with its index, the event and its leaf) and "rollback.<kind>" when a reorg takes
// back a pending event. Subscribers filter by prefix ("final." for everything final).
// Like bitcoind's, the stream is lossy when a subscriber is slow: the sequence numbers
// show the gap, and the API is the truth.
#pragma once

#include "common/result.h"
#include "ledger/ledger.h"

#include <memory>
#include <string>

namespace bitacora::rpc {

struct ZmqPublisherOptions {
    std::string endpoint;          // "tcp://127.0.0.1:28932"
    int high_water_mark{100'000};  // messages ZMQ queues per subscriber
    size_t queue_events_max{1'000'000}; // events waiting for the publisher thread; more are dropped and counted
};

class ZmqPublisher {
public:
    static Result<std::unique_ptr<ZmqPublisher>> Start(const ZmqPublisherOptions& options);
    ~ZmqPublisher();
    void Stop();
    // The ledger's listener: queues the notice, never blocks on the network.
    void Notify(const ledger::LedgerNotice& notice);
    uint64_t dropped() const;
    uint64_t published() const;

    struct Impl;

private:
    explicit ZmqPublisher(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::rpc
