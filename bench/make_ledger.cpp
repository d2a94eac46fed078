// Writes a ledger of N deterministic reference events (orders through their paths,
// vault operations) into DIR, for the API benchmark (bench/api_wrk.sh).
//
//   make_ledger DIR [EVENTS]      (default 1,000,000)
#include "ledger/ledger.h"
#include "tests/unit/ledger_testing.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace bitacora;
using namespace bitacora::ledger;

int main(int argc, char* argv[])
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: make_ledger DIR [EVENTS]\n");
        return 2;
    }
    const uint64_t total = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1'000'000;
    LedgerOptions options;
    auto ledger = Ledger::Open(argv[1], options);
    if (!ledger) {
        std::fprintf(stderr, "%s\n", ledger.error().c_str());
        return 1;
    }
    constexpr uint64_t kBatch = 10'000;
    for (uint64_t first = (*ledger)->size(); first < total; first += kBatch) {
        std::vector<Event> events;
        for (uint64_t i = first; i < std::min(total, first + kBatch); ++i) events.push_back(testing::ReferenceEvent(i));
        if (auto appended = (*ledger)->Append(events); !appended) {
            std::fprintf(stderr, "%s\n", appended.error().c_str());
            return 1;
        }
    }
    std::printf("%llu events, root %s\n", static_cast<unsigned long long>((*ledger)->size()),
                HexEncode((*ledger)->root()).c_str());
    return 0;
}
