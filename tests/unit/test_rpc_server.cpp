// The API's building blocks on real loopback sockets: the HTTP server's bounded queue
// (503 when full), answers dropped for clients that left, the connection limit and an
// ordered stop; the JSON-RPC dispatcher's codes, batches, notifications and bitcoin-cli
// style params; and rpcauth/cookie credentials.
#include "common/json_bounds.h"
#include "common/sync.h"
#include "rpc/auth.h"
#include "rpc/http_server.h"
#include "rpc/json_rpc.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::rpc;
using nlohmann::json;

namespace {

int Connect(uint16_t port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    return fd;
}

void SendRequest(int fd, const std::string& path, const std::string& body)
{
    const std::string request = "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
}

// Reads one response; returns "<status> <body>".
std::string ReadResponse(int fd)
{
    std::string data;
    char buffer[4096];
    for (;;) {
        const auto end = data.find("\r\n\r\n");
        if (end != std::string::npos) {
            const auto cl = data.find("Content-Length: ");
            const size_t length = cl == std::string::npos ? 0 : std::stoul(data.substr(cl + 16));
            if (data.size() >= end + 4 + length) return data.substr(9, 3) + " " + data.substr(end + 4, length);
        }
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) return data.size() >= 12 ? data.substr(9, 3) : "closed";
        data.append(buffer, static_cast<size_t>(n));
    }
}

std::string Exchange(uint16_t port, const std::string& body, const std::string& path = "/")
{
    const int fd = Connect(port);
    SendRequest(fd, path, body);
    std::string out = ReadResponse(fd);
    ::close(fd);
    return out;
}

// A handler that holds every request until released.
class Gate {
public:
    HttpResponse Handle(const HttpRequest& request) LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        ++m_entered;
        m_cv.notify_all();
        while (!m_open) m_cv.wait(m_mutex);
        return {.body = request.body};
    }
    void Open() LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        m_open = true;
        m_cv.notify_all();
    }
    // Until `count` requests have entered the handler, at most 5 s; true if they have.
    bool WaitEntered(int count) LOCKS_EXCLUDED(m_mutex)
    {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        LOCK(m_mutex);
        while (m_entered < count) {
            if (m_cv.wait_until(m_mutex, deadline) == std::cv_status::timeout) break;
        }
        return m_entered >= count;
    }
    int entered() LOCKS_EXCLUDED(m_mutex)
    {
        LOCK(m_mutex);
        return m_entered;
    }

private:
    Mutex m_mutex;
    ConditionVariable m_cv; // m_open or m_entered moved
    bool m_open GUARDED_BY(m_mutex){false};
    int m_entered GUARDED_BY(m_mutex){0};
};

HttpServerOptions SmallServer()
{
    HttpServerOptions options;
    options.bind_addresses = {"127.0.0.1"};
    options.worker_threads = 1;
    options.queue_depth_max = 1;
    return options;
}

// For the server's counters, which announce nothing: polled, for at most 5 s.
void WaitFor(const std::function<bool()>& condition)
{
    for (int i = 0; i < 500 && !condition(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(condition());
}

} // namespace

TEST_CASE("a full work queue is answered 503 at once; queued requests are still answered")
{
    Gate gate;
    auto server = HttpServer::Start(SmallServer(), [&](const HttpRequest& r) { return gate.Handle(r); });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    const int busy = Connect(port);
    SendRequest(busy, "/", "first");
    REQUIRE(gate.WaitEntered(1)); // the only worker holds it
    const int queued = Connect(port);
    SendRequest(queued, "/", "second");
    WaitFor([&] { return (*server)->stats().queue_depth == 1; });
    CHECK(Exchange(port, "third").starts_with("503"));
    CHECK((*server)->stats().rejected_queue_full == 1);
    gate.Open();
    CHECK(ReadResponse(busy) == "200 first");
    CHECK(ReadResponse(queued) == "200 second");
    ::close(busy);
    ::close(queued);
}

TEST_CASE("an answer for a client that left is dropped, and the server goes on")
{
    Gate gate;
    auto server = HttpServer::Start(SmallServer(), [&](const HttpRequest& r) { return gate.Handle(r); });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    const int gone = Connect(port);
    SendRequest(gone, "/", "bye");
    REQUIRE(gate.WaitEntered(1));
    ::close(gone);
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // libevent sees the close
    gate.Open();
    WaitFor([&] { return (*server)->stats().dropped_replies == 1 || Exchange(port, "x") == "200 x"; });
    CHECK(Exchange(port, "still here") == "200 still here");
}

TEST_CASE("connections count from their accept; at the limit the listener pauses; stop answers what was queued")
{
    HttpServerOptions options = SmallServer();
    options.connections_max = 2;
    options.queue_depth_max = 8;
    Gate gate;
    auto server = HttpServer::Start(options, [&](const HttpRequest& r) { return gate.Handle(r); });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    // Two connections that have sent nothing yet already hold both places.
    const int a = Connect(port);
    const int b = Connect(port);
    WaitFor([&] { return (*server)->stats().connections == 2; });
    const int c = Connect(port); // waits in the kernel's backlog
    SendRequest(c, "/", "c");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK((*server)->stats().connections == 2);
    CHECK((*server)->stats().requests == 0);
    CHECK((*server)->stats().listener_pauses >= 1);
    SendRequest(a, "/", "a");
    SendRequest(b, "/", "b");
    REQUIRE(gate.WaitEntered(1));
    WaitFor([&] { return gate.entered() == 1 && (*server)->stats().queue_depth == 1; }); // one worker
    // Stop while a and b wait: both still get their answers.
    auto stopped = std::async(std::launch::async, [&] { (*server)->Stop(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.Open();
    stopped.get();
    CHECK(ReadResponse(a) == "200 a");
    CHECK(ReadResponse(b) == "200 b");
    CHECK(ReadResponse(c) == "closed"); // never accepted by a server that stopped
    ::close(a);
    ::close(b);
    ::close(c);
}

TEST_CASE("a closed connection frees its place and the listener resumes")
{
    HttpServerOptions options = SmallServer();
    options.connections_max = 1;
    options.timeout_s = 30;
    auto server = HttpServer::Start(options, [](const HttpRequest& r) { return HttpResponse{.body = r.body}; });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    for (int i = 0; i < 20; ++i) CHECK(Exchange(port, "n" + std::to_string(i)) == "200 n" + std::to_string(i));
    WaitFor([&] { return (*server)->stats().connections == 0; });
    // Connections that close before sending anything (TCP health probes) do not hold
    // their place until the 30 s timeout, also while the listener is paused at the limit:
    // WaitFor gives up after 5 s.
    for (int i = 0; i < 5; ++i) ::close(Connect(port));
    WaitFor([&] { return (*server)->stats().connections == 0 && (*server)->stats().timed_out_connections == 0; });
    CHECK(Exchange(port, "after probes") == "200 after probes");
}

TEST_CASE("slowloris: a request must arrive whole within the timeout, however slowly its bytes come")
{
    HttpServerOptions options = SmallServer();
    options.timeout_s = 1;
    options.connections_max = 4;
    auto server = HttpServer::Start(options, [](const HttpRequest& r) { return HttpResponse{.body = r.body}; });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    // One header byte every 200 ms resets libevent's own timeout every time.
    const int slow = Connect(port);
    const int silent = Connect(port);
    const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ::send(slow, head.data(), head.size(), MSG_NOSIGNAL);
    const auto start = std::chrono::steady_clock::now();
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        closed = ::send(slow, "a", 1, MSG_NOSIGNAL) < 0;
        char byte = 0;
        if (::recv(slow, &byte, 1, MSG_DONTWAIT) == 0) closed = true;
    }
    CHECK(closed);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2500));
    CHECK(ReadResponse(silent) == "closed");
    WaitFor([&] { return (*server)->stats().connections == 0; });
    CHECK((*server)->stats().timed_out_connections == 2);
    // An idle keep-alive connection is closed after its answer too.
    const int idle = Connect(port);
    SendRequest(idle, "/", "once");
    CHECK(ReadResponse(idle) == "200 once");
    CHECK(ReadResponse(idle) == "closed");
    ::close(slow);
    ::close(silent);
    ::close(idle);
    CHECK(Exchange(port, "still serving") == "200 still serving");
}

TEST_CASE("ambiguous request framing is refused: two Content-Lengths, +N, folded, with Transfer-Encoding")
{
    auto server = HttpServer::Start(SmallServer(), [](const HttpRequest& r) { return HttpResponse{.body = r.body}; });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    auto raw = [&](const std::string& request) {
        const int fd = Connect(port);
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        std::string out = ReadResponse(fd);
        ::close(fd);
        return out;
    };
    CHECK(raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nabcde").starts_with("400"));
    CHECK(raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab").starts_with("400"));
    CHECK(raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n 5\r\n\r\nabcde").starts_with("400"));
    CHECK(raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
              .starts_with("400"));
    CHECK(raw("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab") == "200 ab");
    // libevent itself refuses the values it cannot read as a number; we refuse the rest.
    CHECK((*server)->stats().rejected_headers >= 2);
}

TEST_CASE("answers that clients do not read are bounded in bytes")
{
    HttpServerOptions options = SmallServer();
    options.unsent_bytes_max = 1 << 20;
    options.queue_depth_max = 8;
    const std::string big(8 << 20, 'x');
    auto server = HttpServer::Start(options, [&](const HttpRequest& r) {
        return HttpResponse{.body = r.body == "big" ? big : r.body};
    });
    REQUIRE(server);
    const uint16_t port = (*server)->bound_port();
    const int lazy = Connect(port); // asks for 8 MiB and never reads
    SendRequest(lazy, "/", "big");
    WaitFor([&] { return (*server)->stats().unsent_bytes > options.unsent_bytes_max; });
    CHECK(Exchange(port, "more").starts_with("503"));
    CHECK((*server)->stats().rejected_unsent_bytes == 1);
    ::close(lazy);
    WaitFor([&] { return (*server)->stats().unsent_bytes == 0; });
    CHECK(Exchange(port, "more") == "200 more");
}

TEST_CASE("bodies over the limit are refused by the server, not the handler")
{
    HttpServerOptions options = SmallServer();
    options.body_bytes_max = 1024;
    std::atomic<int> handled{0};
    auto server = HttpServer::Start(options, [&](const HttpRequest& r) {
        ++handled;
        return HttpResponse{.body = r.body};
    });
    REQUIRE(server);
    CHECK(Exchange((*server)->bound_port(), std::string(4096, 'x')).starts_with("413"));
    CHECK(handled == 0);
    CHECK(Exchange((*server)->bound_port(), "small") == "200 small");
}

namespace {

Dispatcher TestDispatcher(DispatchLimits limits = {})
{
    Dispatcher d(limits);
    d.Add({.name = "test_echo",
           .params = {{"text", ParamType::String, true, ""}, {"count", ParamType::Unsigned, false, ""},
                      {"flag", ParamType::Bool, false, ""}},
           .handler = [](const Params& p) -> json {
               return {{"text", p.String(0)}, {"count", p.Has(1) ? p.Unsigned(1) : 0}, {"flag", p.Bool(2, false)}};
           }});
    d.Add({.name = "test_fail", .handler = [](const Params&) -> json { throw RpcException{kNotFound, "nothing here"}; }});
    d.Add({.name = "test_throw", .handler = [](const Params&) -> json { throw std::runtime_error("boom"); }});
    d.Add({.name = "test_write", .access = Access::Write, .handler = [](const Params&) -> json { return "written"; }});
    return d;
}

json Call(const Dispatcher& d, const std::string& body, CallContext context = {.authenticated = true})
{
    const auto result = d.Handle(body, context);
    REQUIRE(result.http_status == 200);
    return json::parse(result.body);
}

} // namespace

TEST_CASE("the dispatcher answers every JSON-RPC error code")
{
    const Dispatcher d = TestDispatcher();
    CHECK(Call(d, "{")["error"]["code"] == kParseError);
    CHECK(Call(d, "42")["error"]["code"] == kInvalidRequest);
    CHECK(Call(d, "[]")["error"]["code"] == kInvalidRequest);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1})")["error"]["code"] == kInvalidRequest);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":{},"method":"test_echo"})")["error"]["code"] == kInvalidRequest);
    CHECK(Call(d, R"({"jsonrpc":"3.0","id":1,"method":"test_echo"})")["error"]["code"] == kInvalidRequest);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"nope"})")["error"]["code"] == kMethodNotFound);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo"})")["error"]["code"] == kInvalidParams);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":[1,2,3,4]})")["error"]["code"] == kInvalidParams);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":["a","-1"]})")["error"]["code"] == kInvalidParams);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":{"bogus":1}})")["error"]["code"] == kInvalidParams);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_fail"})")["error"]["code"] == kNotFound);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_throw"})")["error"]["code"] == kInternalError);
    const json ok = Call(d, R"({"jsonrpc":"2.0","id":7,"method":"test_echo","params":{"text":"hi","count":3}})");
    CHECK(ok["id"] == 7);
    CHECK(ok["result"]["count"] == 3);
}

TEST_CASE("bitcoin-cli's request (string id, numbers as strings) is understood")
{
    const Dispatcher d = TestDispatcher();
    // ../shared/fixtures/bitcoind/bitcoin-cli-request.json, with our test method.
    const json answer = Call(d, R"({"method":"test_echo","params":["7","12","true"],"id":"1","jsonrpc":"2.0"})");
    CHECK(answer["id"] == "1");
    CHECK(answer["result"]["text"] == "7");
    CHECK(answer["result"]["count"] == 12);
    CHECK(answer["result"]["flag"] == true);
    CHECK(Call(d, R"({"method":"test_echo","params":["x"],"id":2,"jsonrpc":"1.0"})")["result"]["text"] == "x");
}

TEST_CASE("batches, notifications, auth and limits")
{
    const Dispatcher d = TestDispatcher({.batch_length_max = 3});
    const json batch = Call(d, R"([{"jsonrpc":"2.0","id":1,"method":"test_echo","params":["a"]},
                                   {"jsonrpc":"2.0","method":"test_echo","params":["notification"]},
                                   {"jsonrpc":"2.0","id":2,"method":"nope"}])");
    REQUIRE(batch.size() == 2);
    CHECK(batch[0]["result"]["text"] == "a");
    CHECK(batch[1]["error"]["code"] == kMethodNotFound);
    const auto only_notifications = d.Handle(R"([{"jsonrpc":"2.0","method":"test_echo","params":["n"]}])", {.authenticated = true});
    CHECK(only_notifications.http_status == 204);
    CHECK(only_notifications.body.empty());
    CHECK(d.Handle(R"({"jsonrpc":"2.0","method":"test_echo","params":["n"]})", {.authenticated = true}).http_status == 204);

    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_write"})", {.authenticated = false, .reads_open = true})["error"]["code"] ==
          kAuthRequired);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":["r"]})", {.authenticated = false, .reads_open = true})
              ["result"]["text"] == "r");
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":["r"]})", {.authenticated = false})["error"]["code"] ==
          kAuthRequired);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_write"})")["result"] == "written");

    const Dispatcher small = TestDispatcher({.params_bytes_max = 16});
    CHECK(Call(small, R"({"jsonrpc":"2.0","id":1,"method":"test_echo","params":["this is longer than sixteen"]})")["error"]["code"] ==
          kLimitExceeded);
}

TEST_CASE("deep nesting anywhere in a request is refused before it is copied or dumped")
{
    const Dispatcher d = TestDispatcher();
    // These killed bitacorad with SIGSEGV: the id was copied before its type was checked,
    // and the params' size was measured with a recursive dump().
    const std::string deep_id = R"({"jsonrpc":"2.0","method":"test_echo","id":)" + std::string(58'000, '[') +
                                std::string(58'000, ']') + "}";
    CHECK(Call(d, deep_id)["error"]["code"] == kInvalidRequest);
    const std::string deep_params = R"({"jsonrpc":"2.0","method":"test_echo","params":)" + std::string(100'000, '[') +
                                    std::string(100'000, ']') + "}";
    CHECK(Call(d, deep_params)["error"]["code"] == kInvalidRequest);
    const std::string deep_batch = "[" + std::string(100'000, '{') + "]";
    CHECK(Call(d, deep_batch)["error"]["code"] == kInvalidRequest);
    // An object param given as a string (bitcoin-cli) is bounded the same way.
    const std::string deep_string = R"({"jsonrpc":"2.0","id":1,"method":"test_object","params":[")" +
                                    std::string(10'000, '[') + R"("]})";
    Dispatcher with_object = TestDispatcher();
    with_object.Add({.name = "test_object", .params = {{"o", ParamType::Object, true, ""}},
                     .handler = [](const Params& p) -> json { return p[0]; }});
    CHECK(Call(with_object, deep_string)["error"]["code"] == kInvalidParams);
    // Strings hold brackets freely; the depth counts structure only.
    CHECK(JsonNestingDepth(R"({"a":"[[[[{{{{\"]]]]","b":[[1]]})") == 3);
    CHECK(JsonNestingDepth(std::string(10'000, '['), 64) == 65); // stops early
    CHECK(ParseJsonBounded("[[[1]]]", 2).status == JsonParseStatus::TooDeep);
    CHECK(ParseJsonBounded("[[[1]]]", 3).ok());
    CHECK(ParseJsonBounded("[[[1]]", 3).status == JsonParseStatus::Invalid);
}

TEST_CASE("one answer has a byte budget: a batch answers the rest with a limit error")
{
    Dispatcher d({.answer_bytes_max = 1000});
    d.Add({.name = "test_big", .params = {{"bytes", ParamType::Unsigned, true, ""}},
           .handler = [](const Params& p) -> json { return std::string(p.Unsigned(0), 'x'); }});
    d.Add({.name = "test_budget", .handler = [](const Params& p) -> json { return p.answer_bytes_max(); }});
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_big","params":[100]})")["result"].get<std::string>().size() == 100);
    CHECK(Call(d, R"({"jsonrpc":"2.0","id":1,"method":"test_big","params":[2000]})")["error"]["code"] == kLimitExceeded);
    const json batch = Call(d, R"([{"jsonrpc":"2.0","id":1,"method":"test_big","params":[400]},
                                   {"jsonrpc":"2.0","id":2,"method":"test_budget"},
                                   {"jsonrpc":"2.0","id":3,"method":"test_big","params":[400]},
                                   {"jsonrpc":"2.0","id":4,"method":"test_big","params":[400]}])");
    REQUIRE(batch.size() == 4);
    CHECK(batch[0]["result"].get<std::string>().size() == 400);
    CHECK(batch[1]["result"].get<size_t>() < 1000 - 400); // a handler sees what is left
    CHECK(batch[2]["result"].get<std::string>().size() == 400);
    CHECK(batch[3]["error"]["code"] == kLimitExceeded);
    CHECK(batch[3]["id"] == 4);
}

namespace {

std::string EchoBatch(size_t calls)
{
    std::string body = "[";
    for (size_t i = 0; i < calls; ++i) {
        if (i > 0) body += ',';
        body += fmt::format(R"({{"jsonrpc":"2.0","id":{},"method":"test_echo","params":["call {}"]}})", i + 1, i);
    }
    return body + "]";
}

} // namespace

TEST_CASE("a batch of up to 1000 calls is answered call by call; a longer one as geth answers it")
{
    const Dispatcher d = TestDispatcher(); // the defaults: 1000 calls, as geth and viem's batch transport
    const json answers = Call(d, EchoBatch(1000));
    REQUIRE(answers.size() == 1000);
    for (size_t i = 0; i < answers.size(); ++i) {
        CHECK(answers[i]["id"] == i + 1);
        CHECK(answers[i]["result"]["text"] == fmt::format("call {}", i));
    }
    // geth (rpc/handler.go, respondWithBatchTooLarge): one error in a one-element array,
    // -32600 "batch too large", with the id of the batch's first call (not a notification).
    const json too_large = Call(d, EchoBatch(1001));
    REQUIRE(too_large.is_array());
    REQUIRE(too_large.size() == 1);
    CHECK(too_large[0]["id"] == 1);
    CHECK(too_large[0]["error"]["code"] == kInvalidRequest);
    CHECK(too_large[0]["error"]["message"] == "batch too large");
    CHECK(too_large[0]["error"]["data"]["batchLengthMax"] == 1000);

    const Dispatcher three = TestDispatcher({.batch_length_max = 3});
    const json first_call = Call(three, R"([{"jsonrpc":"2.0","method":"test_echo","params":["a notification"]},
                                            {"jsonrpc":"2.0","id":"b","method":"test_echo","params":["b"]},
                                            {"jsonrpc":"2.0","id":3,"method":"test_echo","params":["c"]},
                                            {"jsonrpc":"2.0","id":4,"method":"test_echo","params":["d"]}])");
    REQUIRE(first_call.size() == 1);
    CHECK(first_call[0]["id"] == "b");
    const json no_call = Call(three, "[1,2,3,4]");
    REQUIRE(no_call.size() == 1);
    CHECK(no_call[0]["id"].is_null());
    CHECK(no_call[0]["error"]["code"] == kInvalidRequest);
    CHECK(Call(three, EchoBatch(3)).size() == 3);
}

TEST_CASE("the answer's byte budget holds across a 1000-call batch")
{
    constexpr size_t kAnswerBytesMax = 50'000;
    Dispatcher d({.answer_bytes_max = kAnswerBytesMax});
    d.Add({.name = "test_big", .params = {{"bytes", ParamType::Unsigned, true, ""}},
           .handler = [](const Params& p) -> json { return std::string(p.Unsigned(0), 'x'); }});
    std::string body = "[";
    for (size_t i = 0; i < 1000; ++i) {
        body += fmt::format(R"({}{{"jsonrpc":"2.0","id":{},"method":"test_big","params":[400]}})", i ? "," : "", i);
    }
    const auto result = d.Handle(body + "]", {.authenticated = true});
    REQUIRE(result.http_status == 200);
    const json answers = json::parse(result.body);
    REQUIRE(answers.size() == 1000);
    size_t answered = 0;
    for (size_t i = 0; i < answers.size(); ++i) {
        CHECK(answers[i]["id"] == i);
        if (answers[i].contains("result")) {
            CHECK(answered == i); // the budget runs out once, then every later call is refused
            ++answered;
        } else {
            CHECK(answers[i]["error"]["code"] == kLimitExceeded);
        }
    }
    CHECK(answered > 0);
    CHECK(answered * 400 <= kAnswerBytesMax);
    CHECK(answered * 450 > kAnswerBytesMax - 450); // the budget was used, not refused early
    // Each refusal is a short error: the whole answer stays near the budget.
    CHECK(result.body.size() < kAnswerBytesMax + 1000 * 200);
}

TEST_CASE("error codes: one table, outside the meanings EIP-1474 and viem give")
{
    // EIP-1474 -32000..-32006, QuickNode's -32007 (viem retries it), ERC-4337's -32500s:
    // only -32001 (resource not found) is ours too, with that meaning.
    for (const int code : {int(kAuthRequired), int(kLimitExceeded), int(kNotAvailable), int(kConflict), int(kForbidden)}) {
        CAPTURE(code);
        CHECK_FALSE((code >= -32007 && code <= -32000));
        CHECK_FALSE((code >= -32599 && code <= -32500));
        CHECK(code >= -32099); // JSON-RPC's range for a server's own errors
        CHECK(code <= -32008);
    }
    CHECK(kNotFound == -32001);
    CHECK(CodeOf(ErrorKind::Conflict) == kConflict);
    CHECK(CodeOf(ErrorKind::Invalid) == kInvalidParams);
    CHECK(CodeOf(ErrorKind::Other) == kInternalError);
    CHECK(CodeOf(ErrorKind::TooLarge) == kLimitExceeded);
    CHECK(CodeOf(ErrorKind::NotFound) == kNotFound);
    CHECK(CodeOf(ErrorKind::ReadOnly) == kNotAvailable);
    CHECK(CodeOf(ErrorKind::Io) == kInternalError);
}

TEST_CASE("rpcauth in bitcoind's format and a 0600 cookie")
{
    // HMAC-SHA256(key="salt", "password"), as share/rpcauth/rpcauth.py computes it.
    CHECK(HmacSha256Hex("key", "The quick brown fox jumps over the lazy dog") ==
          "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    Authenticator auth;
    CHECK_FALSE(auth.AddRpcAuth("nosalt"));
    CHECK_FALSE(auth.AddRpcAuth("u:salt$1234"));
    REQUIRE(auth.AddRpcAuth("u:salt$" + HmacSha256Hex("salt", "p")));
    CHECK(auth.Check("Basic dTpw")); // "u:p", the fixture's header
    CHECK_FALSE(auth.Check("Basic dTpx")); // "u:q"
    CHECK_FALSE(auth.Check("Bearer dTpw"));
    CHECK_FALSE(auth.Check("Basic !!!!"));

    const auto path = std::filesystem::temp_directory_path() / ("bitacora-cookie-" + std::to_string(::getpid()));
    REQUIRE(auth.WriteCookie(path));
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auth.RemoveCookie();
    CHECK_FALSE(std::filesystem::exists(path));
}
