#include "daemon/args.h"
#include "daemon/init.h"
#include "daemon/process_limits.h"

#include "common/logging.h"

#include <event2/event.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace bitacora;

namespace {

struct ConfFile {
    std::filesystem::path path;
    explicit ConfFile(const std::string& text)
        : path(std::filesystem::temp_directory_path() / ("bitacora-test-" + std::to_string(::getpid()) + ".conf"))
    {
        std::ofstream(path) << text;
    }
    ~ConfFile() { std::filesystem::remove(path); }
};

ArgsManager DaemonArgs()
{
    ArgsManager args;
    RegisterDaemonArgs(args);
    return args;
}

} // namespace

TEST_CASE("every option has help text and a category")
{
    ArgsManager args = DaemonArgs();
    const std::string help = args.HelpMessage();
    for (const char* name : {"help", "version", "conf", "datadir", "chain", "pid", "dbcache", "debug",
                             "debugexclude", "debuglogfile", "printtoconsole", "logratelimit"}) {
        const ArgSpec* spec = args.FindSpec(name);
        REQUIRE_MESSAGE(spec, name);
        CHECK_FALSE(spec->help.empty());
        CHECK_FALSE(spec->category.empty());
        CHECK_MESSAGE(help.find(std::string("  -") + name) != std::string::npos, name);
    }
    CHECK(help.find("(default: 64)") != std::string::npos);
}

TEST_CASE("conf/bitacora.conf.example documents every key a config file may hold")
{
    const char* root = std::getenv("BITACORA_SOURCE_ROOT");
    REQUIRE_MESSAGE(root != nullptr, "BITACORA_SOURCE_ROOT is set by meson");
    std::ifstream file(std::string(root) + "/conf/bitacora.conf.example");
    REQUIRE(file);
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    ArgsManager args = DaemonArgs();
    size_t documented = 0;
    for (const auto& spec : args.specs()) {
        if (spec.command_line_only) continue;
        CHECK_MESSAGE(text.find("\n#" + spec.name + "=") != std::string::npos, spec.name);
        ++documented;
    }
    CHECK(documented > 20);
}

TEST_CASE("command line values, negation and precedence over the file")
{
    ArgsManager args = DaemonArgs();
    REQUIRE(args.ParseCommandLine({"-dbcache=128", "--printtoconsole=0", "-nodebuglogfile", "-debug=evm,rpc", "-debug=db"}));
    ConfFile conf("dbcache=32\nlogratelimit=0\n");
    REQUIRE(args.ReadConfigFile(conf.path, true));
    CHECK(args.GetInt("dbcache", 64) == 128);
    CHECK(args.GetBool("logratelimit", true) == false);
    CHECK(args.GetBool("printtoconsole", true) == false);
    CHECK(args.IsNegated("debuglogfile"));
    CHECK(args.GetList("debug") == std::vector<std::string>{"evm", "rpc", "db"});
    CHECK(args.GetInt("pid", 7) == 7); // unset: the fallback
    CHECK(args.GetSetting("logratelimit")->origin == conf.path.string() + " line 2");
}

TEST_CASE("a [chain] section applies only to that chain and beats the top level")
{
    ConfFile conf("# comment\n\ndbcache=100\n[regtest]\ndbcache=200\n[base-sepolia]\ndbcache=300\n");
    ArgsManager args = DaemonArgs();
    REQUIRE(args.ReadConfigFile(conf.path, true));
    args.SelectSection("base");
    CHECK(args.GetInt("dbcache", 0) == 100);
    args.SelectSection("regtest");
    CHECK(args.GetInt("dbcache", 0) == 200);
    ArgsManager flags = DaemonArgs();
    REQUIRE(flags.ParseCommandLine({"-regtest.dbcache=400"}));
    flags.SelectSection("regtest");
    CHECK(flags.GetInt("dbcache", 0) == 400);
    flags.SelectSection("base");
    CHECK(flags.GetInt("dbcache", 0) == 0);
}

TEST_CASE("config errors name the key and the file line")
{
    struct Case {
        const char* text;
        const char* expected;
    };
    const Case cases[] = {
        {"dbcache=64\nfrobnicate=1\n", "unknown option 'frobnicate'"},
        {"dbcache=lots\n", "invalid value 'lots' for 'dbcache'"},
        {"dbcache=1\n", "out of range"},
        {"printtoconsole=maybe\n", "invalid value 'maybe' for 'printtoconsole'"},
        {"debug=evm,bogus\n", "invalid value 'bogus' for 'debug'"},
        {"chain=ethereum\n", "invalid value 'ethereum' for 'chain'"},
        {"[mainnet]\n", "unknown section [mainnet]"},
        {"[regtest]\nchain=regtest\n", "cannot be set inside a [section]"},
        {"conf=/etc/other.conf\n", "cannot be set"},
        {"justakey\n", "expected key=value"},
        {"nodebuglogfile=0\n", "takes no value other than 1"},
        {"[regtest\n", "malformed section header"},
    };
    for (const auto& c : cases) {
        ConfFile conf(std::string("# first line\n") + c.text);
        ArgsManager args = DaemonArgs();
        const Status status = args.ReadConfigFile(conf.path, true);
        REQUIRE_MESSAGE(!status, c.text);
        CHECK_MESSAGE(status.error().find(c.expected) != std::string::npos, status.error());
        CHECK_MESSAGE(status.error().find(" line ") != std::string::npos, status.error());
    }
}

TEST_CASE("command line errors name the option")
{
    struct Case {
        std::vector<std::string> args;
        const char* expected;
    };
    const Case cases[] = {
        {{"-frobnicate"}, "unknown option 'frobnicate' (-frobnicate)"},
        {{"-dbcache"}, "needs a value"},
        {{"-dbcache=12abc"}, "expected an integer"},
        {{"-datadir="}, "non-empty path"},
        {{"positional"}, "unexpected argument"},
        {{"-mainnet.dbcache=5"}, "unknown chain 'mainnet'"},
    };
    for (const auto& c : cases) {
        ArgsManager args = DaemonArgs();
        const Status status = args.ParseCommandLine(c.args);
        REQUIRE(!status);
        CHECK_MESSAGE(status.error().find(c.expected) != std::string::npos, status.error());
    }
}

TEST_CASE("a missing config file is fine unless it was asked for")
{
    ArgsManager args = DaemonArgs();
    CHECK(args.ReadConfigFile("/nonexistent/bitacora.conf", false));
    CHECK_FALSE(args.ReadConfigFile("/nonexistent/bitacora.conf", true));
}

TEST_CASE("a config file is bounded in bytes and in line length")
{
    // 2 MiB of comment lines: few lines, many bytes (the old guard counted lines only).
    std::string big;
    while (big.size() < (2u << 20)) big += "# " + std::string(98, 'x') + "\n";
    ConfFile large(big);
    ArgsManager args = DaemonArgs();
    Status status = args.ReadConfigFile(large.path, true);
    REQUIRE(!status);
    CHECK_MESSAGE(status.error().find("larger than 1048576 bytes") != std::string::npos, status.error());

    ConfFile long_line("dbcache=64\n#" + std::string(70'000, 'y') + "\n");
    ArgsManager args2 = DaemonArgs();
    status = args2.ReadConfigFile(long_line.path, true);
    REQUIRE(!status);
    CHECK_MESSAGE(status.error().find("line 2 is longer than 65536 bytes") != std::string::npos, status.error());

    ArgsManager args3 = DaemonArgs();
    status = args3.ReadConfigFile("/dev/zero", true);
    REQUIRE(!status);
    CHECK_MESSAGE(status.error().find("larger than 1048576 bytes") != std::string::npos, status.error());
}

TEST_CASE("a UTF-8 byte order mark at the start of the file is skipped")
{
    ConfFile conf("\xEF\xBB\xBF" "dbcache=100\n");
    ArgsManager args = DaemonArgs();
    const Status status = args.ReadConfigFile(conf.path, true);
    REQUIRE_MESSAGE(status, status.error());
    CHECK(args.GetInt("dbcache", 0) == 100);
    // Only at the very start: elsewhere it is an unknown key, quoted escaped.
    ConfFile later("dbcache=100\n\xEF\xBB\xBF" "debug=db\n");
    ArgsManager args2 = DaemonArgs();
    const Status bad = args2.ReadConfigFile(later.path, true);
    REQUIRE(!bad);
    CHECK_MESSAGE(bad.error().find("unknown option '\\xef\\xbb\\xbfdebug'") != std::string::npos, bad.error());
}

namespace {

// True when text holds a control byte or a byte that is not part of valid UTF-8.
bool HasRawBytes(std::string_view text)
{
    for (size_t i = 0; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (byte < 0x20 || byte == 0x7f) return true;
        if (byte < 0x80) continue;
        size_t length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc2 ? 2 : 0;
        if (length == 0 || i + length > text.size()) return true;
        for (size_t k = 1; k < length; ++k) {
            if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return true;
        }
        i += length - 1;
    }
    return false;
}

} // namespace

TEST_CASE("errors quoting config or command-line text escape non-printable bytes")
{
    struct Case {
        std::string text;
        const char* expected;
    };
    const Case file_cases[] = {
        {std::string("\x01\xfe\x1b[2J=1\n"), "unknown option '\\x01\\xfe\\x1b[2J'"},
        {std::string("dbcache=\x7f\x80\n"), "invalid value '\\x7f\\x80' for 'dbcache'"},
        {std::string("[\x1b]\n"), "unknown section [\\x1b]"},
        {std::string("justakey\xc3\n"), "got 'justakey\\xc3'"},
        {std::string("bitácora=1\n"), "unknown option 'bitácora'"}, // valid UTF-8 stays readable
    };
    for (const auto& c : file_cases) {
        ConfFile conf(c.text);
        ArgsManager args = DaemonArgs();
        const Status status = args.ReadConfigFile(conf.path, true);
        REQUIRE(!status);
        CHECK_MESSAGE(status.error().find(c.expected) != std::string::npos, status.error());
        CHECK_MESSAGE(!HasRawBytes(status.error()), status.error());
    }
    const Case flag_cases[] = {
        {"-\x1b[31mfoo=1", "unknown option '\\x1b[31mfoo' (-\\x1b[31mfoo)"},
        {"-dbcache=\n", "invalid value '\\x0a' for 'dbcache'"},
        {"\xff", "unexpected argument '\\xff'"},
        {"-x\xff.dbcache=1", "unknown chain 'x\\xff'"},
    };
    for (const auto& c : flag_cases) {
        ArgsManager args = DaemonArgs();
        const Status status = args.ParseCommandLine({c.text});
        REQUIRE(!status);
        CHECK_MESSAGE(status.error().find(c.expected) != std::string::npos, status.error());
        CHECK_MESSAGE(!HasRawBytes(status.error()), status.error());
    }
    CHECK(EscapeConfigText("tab\there \xe2\x82\xac \xe2\x82") == "tab\\x09here \xe2\x82\xac \\xe2\\x82");
    // Valid UTF-8 that prints nothing or reorders the line is escaped too (C1, bidi, BOM).
    CHECK(EscapeConfigText("a\xc2\x9b b\xe2\x80\xae c\xef\xbb\xbf") == "a\\xc2\\x9b b\\xe2\\x80\\xae c\\xef\\xbb\\xbf");
    CHECK(EscapeConfigText("\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80") == "\\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80");
}

TEST_CASE("inline # comments are stripped, as bitcoind does")
{
    ConfFile conf("evmrpc=http://127.0.0.1:1 # local node\ndbcache=100# cache\n[regtest] # local\ndbcache=200 #\n");
    ArgsManager args = DaemonArgs();
    const Status status = args.ReadConfigFile(conf.path, true);
    REQUIRE_MESSAGE(status, status.error());
    CHECK(args.GetList("evmrpc") == std::vector<std::string>{"http://127.0.0.1:1"});
    CHECK(args.GetInt("dbcache", 0) == 100);
    args.SelectSection("regtest");
    CHECK(args.GetInt("dbcache", 0) == 200);
    // A # in a password line is ambiguous: refused rather than cut.
    for (const char* text : {"btcrpcpassword=abc#def\n", "[regtest]\nbtcrpcpassword=x # y\n"}) {
        ConfFile password(text);
        ArgsManager args2 = DaemonArgs();
        const Status bad = args2.ReadConfigFile(password.path, true);
        REQUIRE(!bad);
        CHECK_MESSAGE(bad.error().find("using # in btcrpcpassword can be ambiguous") != std::string::npos, bad.error());
        CHECK(bad.error().find(" line ") != std::string::npos);
        CHECK(bad.error().find("abc") == std::string::npos); // the password is not echoed
    }
}

TEST_CASE("-evmrpc URLs are checked fully when read")
{
    for (const char* good : {"http://127.0.0.1:8545", "https://base-mainnet.g.alchemy.com/v2/AbC-123_x",
                             "http://[::1]:8545/", "http://user:pw@node.example:443/rpc?key=1", "HTTPS://Node.Example"}) {
        ArgsManager args = DaemonArgs();
        const Status status = args.ParseCommandLine({std::string("-evmrpc=") + good});
        CHECK_MESSAGE(status, good, ": ", status ? "" : status.error());
    }
    for (const char* bad : {"http://127.0.0.1:1 # local node", "http://", "http://:8545", "http://host:99999",
                            "http://host:port", "ftp://host", "http://host/#frag", "http://ho st/", "http://host/\x01",
                            "http://[::1/", "http//host", "http://host:-1"}) {
        ArgsManager args = DaemonArgs();
        const Status status = args.ParseCommandLine({std::string("-evmrpc=") + bad});
        REQUIRE_MESSAGE(!status, bad);
        CHECK_MESSAGE(status.error().find("for 'evmrpc'") != std::string::npos, status.error());
        CHECK_MESSAGE(!HasRawBytes(status.error()), status.error());
    }
}

TEST_CASE("file descriptors: the reserve grows with what is switched on")
{
    ArgsManager plain = DaemonArgs();
    REQUIRE(plain.ParseCommandLine({}));
    const FdPlan base = PlanFileDescriptors(plain);
    CHECK(base.rpc_connections == 256);
    CHECK(base.ledger_files >= 512); // RocksDB's table cache (ledger::kTableFilesOpenMax) and its own files
    CHECK(base.reserved >= 16);

    ArgsManager busy = DaemonArgs();
    REQUIRE(busy.ParseCommandLine({"-evmrpc=http://a:1,http://b:2", "-evmfetchers=4", "-btcrpcconnect=127.0.0.1",
                                   "-zmqpubevent=tcp://127.0.0.1:28932", "-rpcmaxconnections=1000"}));
    const FdPlan more = PlanFileDescriptors(busy);
    CHECK(more.reserved > base.reserved + 2 * 4);
    CHECK(more.rpc_connections == 1000);
    CHECK(more.wanted() == more.reserved + more.ledger_files + 1000);

    ArgsManager off = DaemonArgs();
    REQUIRE(off.ParseCommandLine({"-noserver"}));
    CHECK(PlanFileDescriptors(off).rpc_connections == 0);
}

TEST_CASE("file descriptors: -rpcmaxconnections is sized from the limit")
{
    const FdPlan plan{.reserved = 40, .ledger_files = 528, .rpc_connections = 256};
    CHECK(FitRpcConnections(plan, 100'000) == 256u); // room for everything
    CHECK(FitRpcConnections(plan, plan.wanted()) == 256u);
    CHECK(FitRpcConnections(plan, plan.wanted() - 1) == 255u); // RocksDB keeps its full share first
    CHECK(FitRpcConnections(plan, 40 + 528 + 100) == 100u);
    // Never fewer than 16 connections while half of what is left allows: RocksDB's
    // tables then get the rest (bitacorad warns).
    CHECK(FitRpcConnections(plan, 40 + 528 + 10) == 16u);
    CHECK(FitRpcConnections(plan, 40 + 528) == 16u);
    CHECK(FitRpcConnections(plan, 64) == 12u);
    CHECK(FitRpcConnections(plan, 48) == 4u);
    CHECK(FitRpcConnections(plan, 47) == std::nullopt); // fewer than 4 connections: an error at start-up
    CHECK(FitRpcConnections(plan, 10) == std::nullopt);
    const FdPlan few{.reserved = 40, .ledger_files = 528, .rpc_connections = 3};
    CHECK(FitRpcConnections(few, 64) == 3u);
    const FdPlan none{.reserved = 40, .ledger_files = 528, .rpc_connections = 0};
    CHECK(FitRpcConnections(none, 44) == 0u);
    CHECK(FitRpcConnections(none, 40) == std::nullopt);
}

TEST_CASE("libevent's log goes through the logger, a few lines per message class")
{
    auto& logger = log::GetLogger();
    std::vector<std::string> lines;
    logger.SetPrintToConsole(false);
    logger.SetCallbackForTesting([&](std::string_view line) { lines.emplace_back(line); });
    for (int i = 0; i < 100'000; ++i) LogLibeventMessage(EVENT_LOG_WARN, "Error from accept() call: Too many open files");
    LogLibeventMessage(EVENT_LOG_ERR, "evhttp_server_callback: fd 17");
    logger.SetCallbackForTesting(nullptr);
    logger.SetPrintToConsole(true);
    REQUIRE(lines.size() == kLibeventLinesMax + 1);
    CHECK(lines[0].find("[warning] libevent: Error from accept() call: Too many open files\n") != std::string::npos);
    CHECK(lines.back().find("[error] libevent: evhttp_server_callback: fd 17") != std::string::npos);
    // The count of what was dropped comes with the class's next line after the window.
}
