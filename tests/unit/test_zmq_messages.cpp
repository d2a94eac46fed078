// What the ZMQ publisher sends for each ledger notice (rpc/zmq_publisher.h, issue 13):
// pending events are announced before they can be rolled back, every message names its
// event by pending id (on-chain) or index (final), off-chain kinds have their own topics,
// and every body carries the stream's epoch.
#include "ledger_testing.h"
#include "rpc/zmq_publisher.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;
using nlohmann::json;

namespace {

Event OnChain(uint32_t log_index)
{
    EvmOrigin origin = OriginFor(0);
    origin.block_number = 12;
    origin.block_hash = Hash256{0x12};
    origin.log_index = log_index;
    return {origin, OrderCreated{UInt256(1), Addr(1), Addr(2), UInt256(10), 99}};
}

LedgerNotice Offchain(const std::string& kind, size_t count)
{
    OffchainEvent event;
    event.kind = kind;
    return {.type = LedgerNotice::Type::Appended, .events = std::vector<Event>(count, Event{std::nullopt, event})};
}

struct Received {
    std::string topic;
    uint32_t sequence;
};

// The next message within timeout_ms, or nullopt.
std::optional<Received> Receive(zmq::socket_t& sub, int timeout_ms)
{
    sub.set(zmq::sockopt::rcvtimeo, timeout_ms);
    zmq::message_t topic, body, sequence;
    if (!sub.recv(topic)) return std::nullopt;
    REQUIRE(sub.recv(body));
    REQUIRE(sub.recv(sequence));
    REQUIRE(sequence.size() == 4);
    uint8_t bytes[4];
    std::memcpy(bytes, sequence.data(), 4);
    return Received{topic.to_string(), uint32_t(bytes[0]) | uint32_t(bytes[1]) << 8 | uint32_t(bytes[2]) << 16 | uint32_t(bytes[3]) << 24};
}

} // namespace

TEST_CASE("events dropped when the publisher's queue is full still take their sequence numbers: the gap shows")
{
    const std::string endpoint = "ipc:///tmp/bitacora-test-zmq-" + std::to_string(getpid());
    auto publisher = rpc::ZmqPublisher::Start({.endpoint = endpoint, .queue_events_max = 1});
    REQUIRE(publisher);
    zmq::context_t context{1};
    zmq::socket_t sub{context, zmq::socket_type::sub};
    sub.set(zmq::sockopt::subscribe, "final.");
    sub.connect(endpoint);
    // A subscriber misses what is published before it has joined: probe until one arrives,
    // then let the rest drain.
    int probes = 0;
    std::optional<Received> got;
    while (!got) {
        REQUIRE(probes++ < 200);
        (*publisher)->Notify(Offchain("probe", 1));
        got = Receive(sub, 50);
    }
    while (Receive(sub, 200)) {}
    const uint64_t dropped = (*publisher)->dropped();

    (*publisher)->Notify(Offchain("gap", 2)); // more than the queue holds: dropped whole
    CHECK((*publisher)->dropped() == dropped + 2);
    (*publisher)->Notify(Offchain("gap", 1));
    got = Receive(sub, 5000);
    REQUIRE(got);
    CHECK(got->topic == "final.offchain.gap");
    CHECK(got->sequence == 2); // 0 and 1 were the dropped ones
    (*publisher)->Stop();
    unlink(("/tmp/bitacora-test-zmq-" + std::to_string(getpid())).c_str());
}

TEST_CASE("a pending event is announced, rolled back and made final under one pending id")
{
    const Event event = OnChain(3);
    const std::string id = "pending:0x" + HexEncode(Hash256{0x12}) + ":3";
    const auto pending = rpc::ZmqMessagesOf({.type = LedgerNotice::Type::Pending, .source = "evm", .events = {event}}, "e1");
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].topic == "pending.order_created");
    const json announced = json::parse(pending[0].body);
    CHECK(announced["status"] == "pending");
    CHECK(announced["index"].is_null());
    CHECK(announced["pendingId"] == id);
    CHECK(announced["source"] == "evm");
    CHECK(announced["epoch"] == "e1");

    const auto rollback = rpc::ZmqMessagesOf({.type = LedgerNotice::Type::RolledBack, .source = "evm", .events = {event}}, "e1");
    REQUIRE(rollback.size() == 1);
    CHECK(rollback[0].topic == "rollback.order_created");
    const json taken = json::parse(rollback[0].body);
    CHECK(taken["status"] == "rolledBack");
    CHECK(taken["pendingId"] == id);
    CHECK(taken["index"].is_null());

    const auto final = rpc::ZmqMessagesOf({.type = LedgerNotice::Type::Appended, .first_index = 40, .events = {event, OnChain(4)}}, "e1");
    REQUIRE(final.size() == 2);
    CHECK(final[0].topic == "final.order_created");
    CHECK(json::parse(final[0].body)["index"] == 40);
    CHECK(json::parse(final[0].body)["pendingId"] == id);
    CHECK(json::parse(final[1].body)["index"] == 41);
}

TEST_CASE("each off-chain kind has its own topic, below final.offchain")
{
    OffchainEvent posted;
    posted.kind = "offer.posted";
    OffchainEvent note;
    note.kind = "dispute.note";
    const auto messages = rpc::ZmqMessagesOf(
        {.type = LedgerNotice::Type::Appended, .first_index = 7, .events = {Event{std::nullopt, posted}, Event{std::nullopt, note}}}, "e2");
    REQUIRE(messages.size() == 2);
    CHECK(messages[0].topic == "final.offchain.offer.posted");
    CHECK(messages[1].topic == "final.offchain.dispute.note");
    const json body = json::parse(messages[0].body);
    CHECK(body["index"] == 7);
    CHECK_FALSE(body.contains("pendingId"));
    CHECK(body["epoch"] == "e2");
}
