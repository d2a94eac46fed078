// Bounds on JSON that enters the process. nlohmann's copy, dump and comparison recurse
// once per nesting level, so a body of a few hundred KB nested 100,000 deep overflows
// the stack wherever it is touched. Every JSON text from outside (API requests,
// upstream answers, files) is measured here, before it is parsed or copied.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string_view>

namespace bitacora {

// Deep enough for every answer and request we take (the deepest, an EVM log in a
// batch answer, nests 5); shallow enough that any recursion over it is harmless.
inline constexpr size_t kJsonDepthMax = 64;

// The deepest nesting of arrays and objects in `text`, counted outside strings; stops
// at depth_stop + 1 so that a hostile text is not scanned further than needed.
size_t JsonNestingDepth(std::string_view text, size_t depth_stop = kJsonDepthMax);

enum class JsonParseStatus { Ok, TooDeep, Invalid, TooLarge, Unreadable };

struct BoundedJson {
    nlohmann::json value;  // discarded unless status is Ok
    JsonParseStatus status{JsonParseStatus::Invalid};
    bool ok() const { return status == JsonParseStatus::Ok; }
};

// Parses `text` only if it nests at most depth_max levels; never throws.
BoundedJson ParseJsonBounded(std::string_view text, size_t depth_max = kJsonDepthMax);

// A JSON file (a proof bundle, a chain identity): read only up to file_bytes_max (a
// larger one is TooLarge, a missing or unreadable one Unreadable), then as above.
BoundedJson ReadJsonFileBounded(const std::string& path, size_t file_bytes_max, size_t depth_max = kJsonDepthMax);

} // namespace bitacora
