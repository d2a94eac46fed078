// libFuzzer target for the API's request handling: any body, through the JSON-RPC
// dispatcher and the real method table over an empty ledger. Properties: no crash, no
// exception escapes, and every answer is JSON (or empty with 204).
#include "ledger/ledger.h"
#include "rpc/json_rpc.h"
#include "rpc/methods.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

using namespace bitacora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // A ledger in a temporary directory that is removed at exit.
    struct TempLedger {
        std::filesystem::path dir =
            std::filesystem::temp_directory_path() / ("bitacora-fuzz-rpc-" + std::to_string(::getpid()));
        std::unique_ptr<ledger::Ledger> ledger;
        TempLedger()
        {
            std::filesystem::remove_all(dir);
            std::filesystem::create_directories(dir);
            ledger::LedgerOptions options;
            options.checkpoint_key_path = dir / "checkpoint.key";
            auto opened = ledger::Ledger::Open(dir / "ledger", options);
            if (!opened) std::abort();
            ledger = std::move(opened.value());
        }
        ~TempLedger()
        {
            ledger.reset();
            std::filesystem::remove_all(dir);
        }
    };
    static TempLedger temp;
    static ledger::Ledger* const ledger = temp.ledger.get();
    static const rpc::Dispatcher dispatcher = [] {
        rpc::Dispatcher d({.batch_length_max = 20});
        rpc::RegisterMethods(d, {.ledger = ledger});
        return d;
    }();
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    for (const bool authenticated : {false, true}) {
        const auto result = dispatcher.Handle(body, {.authenticated = authenticated, .reads_open = true});
        if (result.http_status == 204) {
            if (!result.body.empty()) std::abort();
            continue;
        }
        if (nlohmann::json::parse(result.body, nullptr, false).is_discarded()) {
            std::fprintf(stderr, "answer is not JSON: %s\n", result.body.c_str());
            std::abort();
        }
    }
    return 0;
}
