// libFuzzer target for the ledger's leaf decoder and the projections.
// Properties: decoding never crashes; whatever decodes re-encodes to the very same
// bytes (the encoding is canonical); applying a decoded event to projections never
// crashes and never throws.
#include "ledger/event.h"
#include "ledger/projections.h"

#include <cstdio>
#include <cstdlib>

using namespace bitacora;
using namespace bitacora::ledger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::span<const uint8_t> leaf(data, size);
    const auto event = DecodeEvent(leaf);
    if (!event) return 0;
    const Bytes again = EncodeEvent(*event);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) {
        std::fprintf(stderr, "decoded leaf does not re-encode to the same bytes\n");
        std::abort();
    }
    LayeredState state([](const std::string&) { return std::optional<std::string>{}; });
    ApplyEvent(*event, 0, state);
    ApplyEvent(*event, 1, state); // a second time: anomalies, saturation
    return 0;
}
