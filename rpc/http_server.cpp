#include "rpc/http_server.h"

#include "common/logging.h"
#include "common/sync.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <thread>

namespace bitacora::rpc {
namespace {

constexpr int kReplyGraceS = 2;
constexpr int kAcceptRetryMs = 200; // after accept() failed for want of descriptors
// While full: how often closed connections are looked for (libevent 2.1 does not announce
// a connection that closed before its first request; 2.2's newreqcb would).
constexpr int kFullSweepMs = 100;

const char* ReasonPhrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

// Framing that two HTTP parsers could read differently is refused (request smuggling
// behind a proxy): more than one Content-Length, one that is not plain digits ("+5",
// or folded onto a second line, which libevent joins with a space), or one beside a
// Transfer-Encoding.
bool AmbiguousFraming(evkeyvalq* headers)
{
    int lengths = 0;
    bool transfer_encoding = false;
    for (const evkeyval* header = headers->tqh_first; header != nullptr; header = header->next.tqe_next) {
        if (strcasecmp(header->key, "Transfer-Encoding") == 0) transfer_encoding = true;
        if (strcasecmp(header->key, "Content-Length") != 0) continue;
        ++lengths;
        const char* value = header->value;
        if (*value == '\0') return true;
        for (; *value != '\0'; ++value) {
            if (*value < '0' || *value > '9') return true;
        }
    }
    return lengths > 1 || (lengths == 1 && transfer_encoding);
}

} // namespace

struct HttpServer::Impl {
    struct WorkItem {
        evhttp_request* req{nullptr};      // libevent's; touched on the event thread only
        evhttp_connection* connection{nullptr};
        HttpRequest request;
        HttpResponse response;
        bool client_gone{false};           // event thread only
        Impl* impl{nullptr};
    };

    // One accepted connection, from accept to close. libevent 2.1 tells a server of a
    // connection only once a whole request arrived; we create its bufferevent ourselves
    // (evhttp_set_bevcb) so that it counts from the accept, and hold a reference to it
    // so that the deadline can look at it after libevent let go of it.
    struct Ticket {
        Impl* impl{nullptr};
        bufferevent* bev{nullptr};
        evhttp_connection* connection{nullptr}; // known from its first whole request
        event* deadline{nullptr};               // armed while a request is awaited
        size_t unsent_bytes{0};
    };

    HttpServerOptions options;
    Handler handler;
    event_base* base{nullptr};
    evhttp* http{nullptr};
    std::vector<evhttp_bound_socket*> sockets;
    uint16_t port{0};
    std::thread event_thread;
    std::vector<std::thread> workers;

    Mutex queue_mutex;
    ConditionVariable queue_cv;
    std::deque<WorkItem*> queue GUARDED_BY(queue_mutex);
    bool stopping GUARDED_BY(queue_mutex){false};
    bool stopped{false};

    // Event thread only.
    std::map<bufferevent*, Ticket*> tickets;
    std::map<evhttp_connection*, Ticket*> by_connection;
    std::map<evhttp_connection*, WorkItem*> in_flight;
    size_t unsent_bytes{0};
    size_t replies_unsent{0}; // replies handed to libevent and not yet written out
    bool listening{true};
    bool accept_failing{false}; // accept() failed; a timer resumes
    event* accept_retry{nullptr};
    event* full_sweep{nullptr}; // armed only while the listener is paused at the limit
    std::chrono::steady_clock::time_point exit_deadline;
    event* exit_timer{nullptr};

    mutable Mutex stats_mutex;
    HttpServerStats stats GUARDED_BY(stats_mutex);

    void Count(uint64_t HttpServerStats::*counter) LOCKS_EXCLUDED(stats_mutex)
    {
        LOCK(stats_mutex);
        ++(stats.*counter);
    }

    void PublishGauges() LOCKS_EXCLUDED(stats_mutex)
    {
        LOCK(stats_mutex);
        stats.connections = tickets.size();
        stats.unsent_bytes = unsent_bytes;
    }

    // Connections that closed before a whole request came are not announced by libevent;
    // it has let go of their bufferevent (its callbacks are cleared) and ours is the last
    // reference. Looked for when the limit is reached, so the count is exact when it matters.
    void ReclaimClosed()
    {
        std::vector<Ticket*> closed;
        for (const auto& [bev, ticket] : tickets) {
            if (ticket->connection != nullptr) continue;
            bufferevent_data_cb read_cb = nullptr;
            bufferevent_getcb(bev, &read_cb, nullptr, nullptr, nullptr);
            if (read_cb == nullptr) closed.push_back(ticket);
        }
        for (Ticket* ticket : closed) Forget(ticket);
    }

    // The listeners accept while there is room and accept() works.
    void UpdateListening(bool reclaim = true)
    {
        if (reclaim && tickets.size() >= options.connections_max) ReclaimClosed();
        const bool want = !accept_failing && tickets.size() < options.connections_max && !sockets.empty();
        if (want == listening) return;
        listening = want;
        for (auto* socket : sockets) {
            evconnlistener* listener = evhttp_bound_socket_get_listener(socket);
            if (want) evconnlistener_enable(listener);
            else evconnlistener_disable(listener);
        }
        if (!want) {
            Count(&HttpServerStats::listener_pauses);
            LogDebug(log::Category::Rpc, "RPC listener paused ({} connections open)", tickets.size());
        }
        ArmFullSweep();
    }

    // At the limit, a client that closed before sending a whole request must not keep its
    // place until its deadline; nothing else would run ReclaimClosed while paused.
    void ArmFullSweep()
    {
        if (listening || accept_failing || sockets.empty() || evtimer_pending(full_sweep, nullptr)) return;
        const timeval sweep{0, kFullSweepMs * 1000};
        evtimer_add(full_sweep, &sweep);
    }

    static void OnFullSweep(evutil_socket_t, short, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        self->UpdateListening();
        self->PublishGauges();
        self->ArmFullSweep();
    }

    void ArmDeadline(Ticket* ticket)
    {
        const timeval timeout{options.timeout_s, 0};
        evtimer_add(ticket->deadline, &timeout);
    }

    void Forget(Ticket* ticket)
    {
        unsent_bytes -= ticket->unsent_bytes;
        tickets.erase(ticket->bev);
        if (ticket->connection != nullptr) by_connection.erase(ticket->connection);
        event_free(ticket->deadline);
        bufferevent_decref(ticket->bev);
        delete ticket;
    }

    void Release(Ticket* ticket)
    {
        Forget(ticket);
        PublishGauges();
        UpdateListening();
    }

    static bufferevent* OnAccept(event_base* base, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        // Before the new one exists: libevent has not set its callbacks yet either.
        if (self->tickets.size() + 1 >= self->options.connections_max) self->ReclaimClosed();
        auto* ticket = new Ticket{.impl = self};
        ticket->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (ticket->bev == nullptr) {
            delete ticket;
            return nullptr; // libevent closes the socket
        }
        bufferevent_incref(ticket->bev);
        ticket->deadline = evtimer_new(base, &Impl::OnDeadline, ticket);
        self->tickets[ticket->bev] = ticket;
        self->ArmDeadline(ticket);
        self->PublishGauges();
        self->UpdateListening(/*reclaim=*/false);
        return ticket->bev;
    }

    // A request did not arrive whole in time (slow headers or body, or an idle
    // keep-alive connection): the connection is closed.
    static void OnDeadline(evutil_socket_t, short, void* arg)
    {
        auto* ticket = static_cast<Ticket*>(arg);
        Impl* self = ticket->impl;
        if (ticket->connection != nullptr) {
            self->Count(&HttpServerStats::timed_out_connections);
            evhttp_connection_free(ticket->connection); // OnConnectionClose releases the ticket
            return;
        }
        // Never a whole request: libevent's connection is unknown to us. If libevent has
        // not freed it yet (callbacks still set), end it at the socket; it frees on EOF.
        bufferevent_data_cb read_cb = nullptr;
        bufferevent_getcb(ticket->bev, &read_cb, nullptr, nullptr, nullptr);
        if (read_cb != nullptr) {
            self->Count(&HttpServerStats::timed_out_connections);
            const evutil_socket_t fd = bufferevent_getfd(ticket->bev);
            if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
        }
        self->Release(ticket);
    }

    static void OnAcceptError(evconnlistener*, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        const int error = EVUTIL_SOCKET_ERROR();
        self->Count(&HttpServerStats::accept_errors);
        LogWarning("RPC server cannot accept a connection: {}; pausing for {} ms",
                       std::strerror(error), kAcceptRetryMs);
        self->accept_failing = true;
        self->UpdateListening();
        const timeval retry{0, kAcceptRetryMs * 1000};
        evtimer_add(self->accept_retry, &retry);
    }

    static void OnAcceptRetry(evutil_socket_t, short, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        self->accept_failing = false;
        self->UpdateListening();
    }

    // An answer of the event thread's own (no worker saw the request).
    void SendSimple(evhttp_request* req, int status, std::string_view body, bool close)
    {
        evbuffer* buffer = evbuffer_new();
        evbuffer_add(buffer, body.data(), body.size());
        evkeyvalq* headers = evhttp_request_get_output_headers(req);
        evhttp_add_header(headers, "Content-Type", "application/json");
        if (close) evhttp_add_header(headers, "Connection", "close");
        ++replies_unsent;
        evhttp_request_set_on_complete_cb(req, &Impl::OnReplyWritten, this);
        evhttp_send_reply(req, status, ReasonPhrase(status), buffer);
        evbuffer_free(buffer);
    }

    static void OnConnectionClose(evhttp_connection* connection, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        if (auto it = self->in_flight.find(connection); it != self->in_flight.end()) {
            it->second->client_gone = true; // its reply will be dropped, not sent
            self->in_flight.erase(it);
        }
        if (auto it = self->by_connection.find(connection); it != self->by_connection.end()) self->Release(it->second);
    }

    // The connection's ticket, linked to libevent's connection at its first request.
    Ticket* TicketOf(evhttp_connection* connection)
    {
        if (auto it = by_connection.find(connection); it != by_connection.end()) return it->second;
        const auto it = tickets.find(evhttp_connection_get_bufferevent(connection));
        if (it == tickets.end()) return nullptr;
        it->second->connection = connection;
        by_connection[connection] = it->second;
        evhttp_connection_set_closecb(connection, &Impl::OnConnectionClose, this);
        return it->second;
    }

    std::unique_ptr<WorkItem> MakeWorkItem(evhttp_request* req, evhttp_connection* connection)
    {
        auto item = std::make_unique<WorkItem>();
        item->req = req;
        item->connection = connection;
        item->impl = this;
        switch (evhttp_request_get_command(req)) {
        case EVHTTP_REQ_GET: item->request.method = "GET"; break;
        case EVHTTP_REQ_POST: item->request.method = "POST"; break;
        default: item->request.method = "OTHER"; break;
        }
        const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
        const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
        item->request.path = path != nullptr && *path != '\0' ? path : "/";
        if (const char* auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization")) {
            item->request.authorization = auth;
        }
        evbuffer* input = evhttp_request_get_input_buffer(req);
        const size_t length = evbuffer_get_length(input);
        item->request.body.resize(length);
        if (length > 0) evbuffer_copyout(input, item->request.body.data(), length);
        char* peer_address = nullptr;
        uint16_t peer_port = 0;
        evhttp_connection_get_peer(connection, &peer_address, &peer_port);
        item->request.peer = fmt::format("{}:{}", peer_address != nullptr ? peer_address : "?", peer_port);
        return item;
    }

    // As bitcoind: loopback always, others only when -rpcallowip names them.
    bool ClientAllowed(evhttp_connection* connection) const
    {
        char* peer_address = nullptr;
        uint16_t peer_port = 0;
        evhttp_connection_get_peer(connection, &peer_address, &peer_port);
        if (peer_address == nullptr) return false;
        if (IsLoopbackAddress(peer_address)) return true;
        return std::any_of(options.allowed_clients.begin(), options.allowed_clients.end(),
                           [&](const Subnet& subnet) { return subnet.Contains(peer_address); });
    }

    static void OnRequest(evhttp_request* req, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        self->Count(&HttpServerStats::requests);
        evhttp_connection* connection = evhttp_request_get_connection(req);
        Ticket* ticket = self->TicketOf(connection);
        if (ticket != nullptr) evtimer_del(ticket->deadline); // the request is here; the answer has no deadline
        if (!self->ClientAllowed(connection)) {
            self->Count(&HttpServerStats::rejected_clients);
            self->SendSimple(req, 403, R"x({"error":"this client's address is not allowed (-rpcallowip)"})x", /*close=*/true);
            return;
        }
        if (AmbiguousFraming(evhttp_request_get_input_headers(req))) {
            self->Count(&HttpServerStats::rejected_headers);
            self->SendSimple(req, 400, R"({"error":"ambiguous Content-Length or Transfer-Encoding"})", /*close=*/true);
            return;
        }
        if (self->unsent_bytes > self->options.unsent_bytes_max) {
            self->Count(&HttpServerStats::rejected_unsent_bytes);
            self->SendSimple(req, 503, R"({"error":"too many answers are waiting for their clients to read them"})",
                       /*close=*/false);
            return;
        }
        std::unique_ptr<WorkItem> item = self->MakeWorkItem(req, connection);
        bool queued = false;
        {
            LOCK(self->queue_mutex);
            if (!self->stopping && self->queue.size() < self->options.queue_depth_max) {
                self->in_flight[connection] = item.get();
                self->queue.push_back(item.release());
                queued = true;
                LOCK(self->stats_mutex);
                self->stats.queue_depth = self->queue.size();
            }
        }
        if (queued) {
            self->queue_cv.notify_one();
            return;
        }
        self->Count(&HttpServerStats::rejected_queue_full);
        LogWarning("RPC work queue depth exceeded ({}); answering 503",
                       self->options.queue_depth_max);
        self->SendSimple(req, 503, R"({"error":"work queue depth exceeded"})", /*close=*/false);
    }

    // Runs on the event thread: sends the answer, or drops it if the client left.
    static void OnReply(evutil_socket_t, short, void* arg)
    {
        std::unique_ptr<WorkItem> item(static_cast<WorkItem*>(arg));
        Impl* self = item->impl;
        if (item->client_gone) {
            self->Count(&HttpServerStats::dropped_replies);
            return;
        }
        self->in_flight.erase(item->connection);
        evbuffer* buffer = evbuffer_new();
        evbuffer_add(buffer, item->response.body.data(), item->response.body.size());
        evkeyvalq* headers = evhttp_request_get_output_headers(item->req);
        if (!item->response.content_type.empty()) {
            evhttp_add_header(headers, "Content-Type", item->response.content_type.c_str());
        }
        for (const auto& [name, value] : item->response.headers) evhttp_add_header(headers, name.c_str(), value.c_str());
        if (auto it = self->by_connection.find(item->connection); it != self->by_connection.end()) {
            it->second->unsent_bytes += item->response.body.size();
            self->unsent_bytes += item->response.body.size();
            self->PublishGauges();
        }
        ++self->replies_unsent;
        evhttp_request_set_on_complete_cb(item->req, &Impl::OnReplyWritten, self);
        evhttp_send_reply(item->req, item->response.status, ReasonPhrase(item->response.status), buffer);
        evbuffer_free(buffer);
    }

    // The answer is written out: the connection now awaits its next request, whole,
    // within the timeout.
    static void OnReplyWritten(evhttp_request* req, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        if (self->replies_unsent > 0) --self->replies_unsent;
        evhttp_connection* connection = evhttp_request_get_connection(req);
        if (auto it = self->by_connection.find(connection); it != self->by_connection.end()) {
            self->unsent_bytes -= it->second->unsent_bytes;
            it->second->unsent_bytes = 0;
            self->ArmDeadline(it->second);
            self->PublishGauges();
        }
    }

    WorkItem* NextItem() LOCKS_EXCLUDED(queue_mutex, stats_mutex)
    {
        LOCK(queue_mutex);
        while (queue.empty() && !stopping) queue_cv.wait(queue_mutex);
        if (queue.empty()) return nullptr; // stopping, and everything queued was answered
        WorkItem* item = queue.front();
        queue.pop_front();
        LOCK(stats_mutex);
        stats.queue_depth = queue.size();
        return item;
    }

    void WorkerLoop()
    {
        while (WorkItem* item = NextItem()) {
            try {
                item->response = handler(item->request);
            } catch (const std::exception& e) {
                LogError("RPC handler threw: {}", e.what());
                item->response = HttpResponse{.status = 500, .body = R"({"error":"internal error"})"};
            }
            // libevent is not driven from this thread: the event loop sends the reply.
            event_base_once(base, -1, EV_TIMEOUT, &Impl::OnReply, item, nullptr);
        }
    }

    static void OnStopAccepting(evutil_socket_t, short, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        for (auto* socket : self->sockets) evhttp_del_accept_socket(self->http, socket);
        self->sockets.clear();
        self->listening = false;
        evtimer_del(self->full_sweep);
    }

    // Exits the loop once the last replies are written out (or after a grace period, for
    // clients that do not read).
    static void OnExit(evutil_socket_t, short, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        if (self->exit_timer == nullptr) {
            self->exit_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kReplyGraceS);
            self->exit_timer = evtimer_new(self->base, &Impl::OnExit, self);
        }
        if (self->replies_unsent == 0 || std::chrono::steady_clock::now() > self->exit_deadline) {
            event_free(self->exit_timer);
            self->exit_timer = nullptr;
            event_base_loopexit(self->base, nullptr);
            return;
        }
        const timeval poll{0, 10'000};
        evtimer_add(self->exit_timer, &poll);
    }

    Status Bind(uint16_t requested_port)
    {
        uint16_t bound = requested_port;
        std::string failures;
        for (const auto& address : options.bind_addresses) {
            evhttp_bound_socket* socket = evhttp_bind_socket_with_handle(http, address.c_str(), bound);
            if (socket == nullptr) {
                failures += fmt::format("{}{}:{}", failures.empty() ? "" : ", ", address, bound);
                continue;
            }
            evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(socket), &Impl::OnAcceptError);
            if (bound == 0) {
                sockaddr_storage addr{};
                socklen_t len = sizeof(addr);
                getsockname(evhttp_bound_socket_get_fd(socket), reinterpret_cast<sockaddr*>(&addr), &len);
                bound = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                         : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
            }
            sockets.push_back(socket);
            LogInfo("RPC server listening on {}:{}", address.find(':') != std::string::npos ? "[" + address + "]" : address,
                    bound);
        }
        if (sockets.empty()) return Error{fmt::format("cannot bind the RPC server to {}", failures)};
        if (!failures.empty()) LogWarning("RPC server could not bind {}", failures);
        port = bound;
        return {};
    }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options, Handler handler)
{
    static std::once_flag threads_once;
    std::call_once(threads_once, [] { evthread_use_pthreads(); });
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->handler = std::move(handler);
    impl->base = event_base_new();
    if (impl->base == nullptr) return Error{"cannot create the libevent base"};
    impl->http = evhttp_new(impl->base);
    if (impl->http == nullptr) {
        event_base_free(impl->base);
        return Error{"cannot create the HTTP server"};
    }
    Impl& m = *impl;
    evhttp_set_allowed_methods(m.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(m.http, static_cast<ev_ssize_t>(options.body_bytes_max));
    evhttp_set_max_headers_size(m.http, static_cast<ev_ssize_t>(options.header_bytes_max));
    // libevent's own timeout restarts with every byte; ours (the ticket's deadline) does
    // not. libevent's stays as a backstop for writes to clients that stopped reading.
    evhttp_set_timeout(m.http, options.timeout_s);
    evhttp_set_gencb(m.http, &Impl::OnRequest, &m);
    evhttp_set_bevcb(m.http, &Impl::OnAccept, &m);
    m.accept_retry = evtimer_new(m.base, &Impl::OnAcceptRetry, &m);
    m.full_sweep = evtimer_new(m.base, &Impl::OnFullSweep, &m);

    if (Status bound = m.Bind(options.port); !bound) {
        event_free(m.accept_retry);
        event_free(m.full_sweep);
        evhttp_free(m.http);
        event_base_free(m.base);
        return bound.failure();
    }
    // The loop must outlive its listeners: Stop() removes them first and still needs the
    // loop to send the last replies.
    m.event_thread = std::thread([&m] { event_base_loop(m.base, EVLOOP_NO_EXIT_ON_EMPTY); });
    for (size_t i = 0; i < std::max<size_t>(1, options.worker_threads); ++i) {
        m.workers.emplace_back([&m] { m.WorkerLoop(); });
    }
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop()
{
    Impl& m = *m_impl;
    if (m.stopped) return;
    m.stopped = true;
    // 1. No new connections. 2. Workers answer what is queued and exit (new requests on
    // open connections are answered 503). 3. The loop sends the last replies and exits.
    event_base_once(m.base, -1, EV_TIMEOUT, &Impl::OnStopAccepting, &m, nullptr);
    {
        LOCK(m.queue_mutex);
        m.stopping = true;
    }
    m.queue_cv.notify_all();
    for (auto& worker : m.workers) worker.join();
    event_base_once(m.base, -1, EV_TIMEOUT, &Impl::OnExit, &m, nullptr);
    m.event_thread.join();
    for (auto& [connection, ticket] : m.by_connection) evhttp_connection_set_closecb(connection, nullptr, nullptr);
    evhttp_free(m.http);
    // libevent let go of every connection; our references are the last.
    for (auto& [bev, ticket] : m.tickets) {
        event_free(ticket->deadline);
        bufferevent_decref(bev);
        delete ticket;
    }
    m.tickets.clear();
    event_free(m.accept_retry);
    event_free(m.full_sweep);
    event_base_free(m.base);
}

uint16_t HttpServer::bound_port() const { return m_impl->port; }

HttpServerStats HttpServer::stats() const
{
    LOCK(m_impl->stats_mutex);
    return m_impl->stats;
}

} // namespace bitacora::rpc
