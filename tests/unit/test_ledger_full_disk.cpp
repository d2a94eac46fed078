// A full disk: appends fail with a clear error, nothing partial becomes visible, the
// in-memory tree stays at the last durable size, and after space is freed the ledger
// reopens with exactly the events that were acknowledged. Uses a small tmpfs, so it
// needs root (CI runs as root); without it the test says so and checks nothing else.
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "ledger_testing.h"
#include "rpc/server.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

struct TmpfsMount {
    std::filesystem::path path;
    bool mounted{false};
    TmpfsMount(const std::filesystem::path& where, const char* size) : path(where)
    {
        std::filesystem::create_directories(path);
        mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, (std::string("size=") + size).c_str()) == 0;
    }
    bool Resize(const char* size)
    {
        return ::mount("tmpfs", path.c_str(), "tmpfs", MS_REMOUNT, (std::string("size=") + size).c_str()) == 0;
    }
    ~TmpfsMount()
    {
        if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    }
};

// <method> <path> on 127.0.0.1:port with a JSON body; returns "<status> <body>".
std::string HttpExchange(uint16_t port, const std::string& method, const std::string& path, const std::string& body = "")
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    const std::string request = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                                "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\n\r\n" + body;
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
    std::string data;
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0;) data.append(buffer, static_cast<size_t>(n));
    ::close(fd);
    const auto end = data.find("\r\n\r\n");
    if (data.size() < 12 || end == std::string::npos) return "closed";
    return data.substr(9, 3) + " " + data.substr(end + 4);
}

std::string HttpGet(uint16_t port, const std::string& path) { return HttpExchange(port, "GET", path); }

// Without root there is no tmpfs to fill: the whole test says it skipped (meson's 77),
// rather than passing.
void SkipWithoutTmpfs(const TmpfsMount& disk)
{
    if (disk.mounted) return;
    std::fprintf(stderr, "SKIPPED: cannot mount a tmpfs (%s); run as root to test a full disk\n", std::strerror(errno));
    std::exit(77);
}

// Appends batches of 500 reference events until one fails; returns its error.
std::string FillDisk(Ledger& ledger)
{
    for (int batch = 0; batch < 10'000; ++batch) {
        std::vector<Event> events;
        for (uint64_t i = ledger.size(); i < ledger.size() + 500; ++i) events.push_back(ReferenceEvent(i));
        if (const auto result = ledger.Append(events); !result) return result.error();
    }
    return "";
}

} // namespace

TEST_CASE("after a write error the ledger is read-only and /health answers 503 with the reason")
{
    TempDir dir("ledger-full-disk-health");
    TmpfsMount disk(dir.path / "disk", "12m");
    SkipWithoutTmpfs(disk);
    LedgerOptions options;
    options.sync_every_append = true;
    auto opened = Ledger::Open(disk.path / "db", options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
    rpc::RpcServerOptions server_options;
    server_options.http.bind_addresses = {"127.0.0.1"};
    server_options.http.worker_threads = 1;
    server_options.reads_open = true; // bitacora_status without credentials
    auto server = rpc::RpcServer::Start(server_options, {.ledger = opened->get()}, nullptr, nullptr);
    REQUIRE_MESSAGE(server, (server ? "" : server.error()));
    CHECK(HttpGet((*server)->port(), "/health").starts_with("200 "));

    const std::string error = FillDisk(**opened);
    REQUIRE_MESSAGE(!error.empty(), "the disk never filled");
    const std::string health = HttpGet((*server)->port(), "/health");
    MESSAGE("/health after the write error: " << health);
    CHECK(health.starts_with("503 "));
    CHECK(health.find("read-only") != std::string::npos);
    CHECK(health.find("No space left") != std::string::npos);
    const std::string metrics = HttpGet((*server)->port(), "/metrics");
    CHECK(metrics.find("bitacora_ledger_health{state=\"read-only\"} 1") != std::string::npos);
    CHECK(metrics.find("bitacora_ledger_health{state=\"ok\"} 0") != std::string::npos);
    const std::string status =
        HttpExchange((*server)->port(), "POST", "/", R"({"jsonrpc":"2.0","id":1,"method":"bitacora_status"})");
    MESSAGE("bitacora_status after the write error: " << status);
    CHECK(status.find(R"("health":{"reason":)") != std::string::npos);
    CHECK(status.find(R"("state":"read-only")") != std::string::npos);
    (*server)->Stop();
}

TEST_CASE("a full disk fails appends cleanly and loses nothing acknowledged")
{
    TempDir dir("ledger-full-disk");
    TmpfsMount disk(dir.path / "disk", "12m");
    SkipWithoutTmpfs(disk);
    uint64_t acknowledged = 0;
    Hash256 acknowledged_root{};
    std::string error;
    {
        LedgerOptions options;
        options.sync_every_append = true;
        auto opened = Ledger::Open(disk.path / "db", options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error()));
        auto& ledger = *opened.value();
        for (int batch = 0; batch < 10'000; ++batch) {
            std::vector<Event> events;
            for (uint64_t i = acknowledged; i < acknowledged + 500; ++i) events.push_back(ReferenceEvent(i));
            const auto result = ledger.Append(events);
            if (!result) {
                error = result.error();
                break;
            }
            acknowledged = result->tree_size;
            acknowledged_root = result->root;
        }
        REQUIRE_MESSAGE(!error.empty(), "the disk never filled");
        MESSAGE("append failed after " << acknowledged << " events with: " << error);
        CHECK(error.find("ledger append failed") != std::string::npos);
        // The failed batch left no trace in memory.
        CHECK(ledger.size() == acknowledged);
        CHECK(ledger.root() == acknowledged_root);
        // And later appends keep failing cleanly rather than writing half a batch.
        CHECK_FALSE(ledger.Append({ReferenceEvent(acknowledged)}));
        CHECK(ledger.size() == acknowledged);
    }
    REQUIRE(disk.Resize("256m"));
    auto reopened = Ledger::Open(disk.path / "db", {});
    REQUIRE_MESSAGE(reopened, (reopened ? "" : reopened.error()));
    auto& ledger = *reopened.value();
    CHECK(ledger.size() == acknowledged);
    CHECK(ledger.root() == acknowledged_root);
    MerkleFrontier recomputed;
    for (uint64_t i = 0; i < ledger.size(); ++i) {
        const auto leaf = ledger.GetLeaf(i);
        REQUIRE(leaf);
        REQUIRE(*leaf == EncodeEvent(ReferenceEvent(i)));
        recomputed.Append(MerkleLeafHash(*leaf), [](const MerkleFrontier::Node&) {});
    }
    CHECK(recomputed.Root() == acknowledged_root);
    const auto stored = ledger.StateHash();
    REQUIRE(ledger.RebuildProjections());
    CHECK(*ledger.StateHash() == *stored);
    // With space again, the log grows from where it stood.
    const auto more = ledger.Append({ReferenceEvent(ledger.size())});
    REQUIRE_MESSAGE(more, (more ? "" : more.error()));
    CHECK(more->first_index == acknowledged);
}
