#include "daemon/args.h"
#include "daemon/init.h"

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
