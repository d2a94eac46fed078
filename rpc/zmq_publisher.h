// Publishes ledger events on a ZMQ PUB socket with bitcoind's framing (doc/zmq.md):
// three parts, the topic, the body, and a 4-byte little-endian sequence number that
// counts per topic. Topics: "pending.<kind>" when an event of an unfinalized block enters
// the pending overlay, "rollback.<kind>" when a reorg takes it back (only events first
// announced pending are ever rolled back), "final.<kind>" when an event enters the final
// log; off-chain events have a topic per kind ("final.offchain.offer.posted").
// Subscribers filter by prefix ("final." for everything final). Bodies are JSON: status,
// index (final only; null otherwise), pendingId (on-chain events), source, event, leaf,
// and the stream's epoch, a random id per process: the sequence numbers restart with it.
// Like bitcoind's, the stream is lossy when a subscriber is slow or the publisher's queue
// is full: a lost message still takes its sequence number, so the gap shows, and the API
// is the truth (docs/api.md: how a subscriber resumes).
#pragma once

#include "common/result.h"
#include "ledger/ledger.h"

#include <memory>
#include <string>
#include <vector>

namespace bitacora::rpc {

struct ZmqMessage {
    std::string topic;
    std::string body;
};
// The messages of one notice, in order (pure: the sequence numbers are added when sent).
std::vector<ZmqMessage> ZmqMessagesOf(const ledger::LedgerNotice& notice, const std::string& epoch);

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
    const std::string& epoch() const; // this process's stream epoch (hex)
    const std::string& endpoint() const;

    struct Impl;

private:
    explicit ZmqPublisher(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::rpc
