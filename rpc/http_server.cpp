#include "rpc/http_server.h"

#include "common/logging.h"
#include "common/sync.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <thread>

namespace bitacora::rpc {
namespace {

constexpr int kReplyGraceS = 2;

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

    HttpServerOptions options;
    Handler handler;
    event_base* base{nullptr};
    evhttp* http{nullptr};
    std::vector<evhttp_bound_socket*> sockets;
    uint16_t port{0};
    std::thread event_thread;
    std::vector<std::thread> workers;

    std::mutex queue_mutex;
    std::condition_variable queue_cv;
    std::deque<WorkItem*> queue;          // GUARDED_BY(queue_mutex)
    bool stopping{false};                 // GUARDED_BY(queue_mutex)
    bool stopped{false};

    // Event thread only.
    std::set<evhttp_connection*> connections;
    std::map<evhttp_connection*, WorkItem*> in_flight;
    size_t replies_unsent{0}; // replies handed to libevent and not yet written out
    std::chrono::steady_clock::time_point exit_deadline;
    event* exit_timer{nullptr};

    mutable std::mutex stats_mutex;
    HttpServerStats stats;                // GUARDED_BY(stats_mutex)

    static void SendSimple(evhttp_request* req, int status, std::string_view body, bool close)
    {
        evbuffer* buffer = evbuffer_new();
        evbuffer_add(buffer, body.data(), body.size());
        evkeyvalq* headers = evhttp_request_get_output_headers(req);
        evhttp_add_header(headers, "Content-Type", "application/json");
        if (close) evhttp_add_header(headers, "Connection", "close");
        evhttp_send_reply(req, status, ReasonPhrase(status), buffer);
        evbuffer_free(buffer);
    }

    static void OnConnectionClose(evhttp_connection* connection, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        self->connections.erase(connection);
        if (auto it = self->in_flight.find(connection); it != self->in_flight.end()) {
            it->second->client_gone = true; // its reply will be dropped, not sent
            self->in_flight.erase(it);
        }
        std::lock_guard lock(self->stats_mutex);
        self->stats.connections = self->connections.size();
    }

    static void OnRequest(evhttp_request* req, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        {
            std::lock_guard lock(self->stats_mutex);
            ++self->stats.requests;
        }
        evhttp_connection* connection = evhttp_request_get_connection(req);
        if (!self->connections.count(connection)) {
            if (self->connections.size() >= self->options.connections_max) {
                {
                    std::lock_guard lock(self->stats_mutex);
                    ++self->stats.rejected_connections;
                }
                SendSimple(req, 503, R"({"error":"too many connections"})", /*close=*/true);
                return;
            }
            self->connections.insert(connection);
            evhttp_connection_set_closecb(connection, &Impl::OnConnectionClose, self);
            std::lock_guard lock(self->stats_mutex);
            self->stats.connections = self->connections.size();
        }

        auto item = std::make_unique<WorkItem>();
        item->req = req;
        item->connection = connection;
        item->impl = self;
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

        std::unique_lock lock(self->queue_mutex);
        if (self->stopping || self->queue.size() >= self->options.queue_depth_max) {
            lock.unlock();
            {
                std::lock_guard stats_lock(self->stats_mutex);
                ++self->stats.rejected_queue_full;
            }
            LogWarning("RPC work queue depth exceeded ({}); answering 503", self->options.queue_depth_max);
            SendSimple(req, 503, R"({"error":"work queue depth exceeded"})", /*close=*/false);
            return;
        }
        self->in_flight[connection] = item.get();
        self->queue.push_back(item.release());
        {
            std::lock_guard stats_lock(self->stats_mutex);
            self->stats.queue_depth = self->queue.size();
        }
        self->queue_cv.notify_one();
    }

    // Runs on the event thread: sends the answer, or drops it if the client left.
    static void OnReply(evutil_socket_t, short, void* arg)
    {
        std::unique_ptr<WorkItem> item(static_cast<WorkItem*>(arg));
        Impl* self = item->impl;
        if (item->client_gone) {
            std::lock_guard lock(self->stats_mutex);
            ++self->stats.dropped_replies;
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
        ++self->replies_unsent;
        evhttp_request_set_on_complete_cb(item->req, &Impl::OnReplyWritten, self);
        evhttp_send_reply(item->req, item->response.status, ReasonPhrase(item->response.status), buffer);
        evbuffer_free(buffer);
    }

    void WorkerLoop()
    {
        for (;;) {
            WorkItem* item = nullptr;
            {
                std::unique_lock lock(queue_mutex);
                queue_cv.wait(lock, [&] { return !queue.empty() || stopping; });
                if (queue.empty()) return; // stopping, and everything queued was answered
                item = queue.front();
                queue.pop_front();
                std::lock_guard stats_lock(stats_mutex);
                stats.queue_depth = queue.size();
            }
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
    }

    static void OnReplyWritten(evhttp_request*, void* arg)
    {
        auto* self = static_cast<Impl*>(arg);
        if (self->replies_unsent > 0) --self->replies_unsent;
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
    auto fail = [&](const std::string& message) -> Result<std::unique_ptr<HttpServer>> {
        evhttp_free(m.http);
        event_base_free(m.base);
        return Error{message};
    };
    evhttp_set_allowed_methods(m.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(m.http, static_cast<ev_ssize_t>(options.body_bytes_max));
    evhttp_set_max_headers_size(m.http, static_cast<ev_ssize_t>(options.header_bytes_max));
    evhttp_set_timeout(m.http, options.timeout_s);
    evhttp_set_gencb(m.http, &Impl::OnRequest, &m);

    uint16_t port = options.port;
    std::string failures;
    for (const auto& address : options.bind_addresses) {
        evhttp_bound_socket* socket = evhttp_bind_socket_with_handle(m.http, address.c_str(), port);
        if (socket == nullptr) {
            failures += fmt::format("{}{}:{}", failures.empty() ? "" : ", ", address, port);
            continue;
        }
        if (port == 0) {
            sockaddr_storage addr{};
            socklen_t len = sizeof(addr);
            getsockname(evhttp_bound_socket_get_fd(socket), reinterpret_cast<sockaddr*>(&addr), &len);
            port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
        }
        m.sockets.push_back(socket);
        LogInfo("RPC server listening on {}:{}", address.find(':') != std::string::npos ? "[" + address + "]" : address, port);
    }
    if (m.sockets.empty()) return fail(fmt::format("cannot bind the RPC server to {}", failures));
    if (!failures.empty()) LogWarning("RPC server could not bind {}", failures);
    m.port = port;

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
        std::lock_guard lock(m.queue_mutex);
        m.stopping = true;
    }
    m.queue_cv.notify_all();
    for (auto& worker : m.workers) worker.join();
    event_base_once(m.base, -1, EV_TIMEOUT, &Impl::OnExit, &m, nullptr);
    m.event_thread.join();
    for (auto* connection : std::set<evhttp_connection*>(m.connections)) {
        evhttp_connection_set_closecb(connection, nullptr, nullptr);
    }
    evhttp_free(m.http);
    event_base_free(m.base);
}

uint16_t HttpServer::bound_port() const { return m_impl->port; }

HttpServerStats HttpServer::stats() const
{
    std::lock_guard lock(m_impl->stats_mutex);
    return m_impl->stats;
}

} // namespace bitacora::rpc
