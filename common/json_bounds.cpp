#include "common/json_bounds.h"

#include <fstream>
#include <string>

namespace bitacora {

size_t JsonNestingDepth(std::string_view text, size_t depth_stop)
{
    size_t depth = 0;
    size_t deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i; // the escaped character cannot end the string
            else if (c == '"') in_string = false;
            continue;
        }
        switch (c) {
        case '"': in_string = true; break;
        case '[':
        case '{':
            if (++depth > deepest) deepest = depth;
            if (deepest > depth_stop) return deepest;
            break;
        case ']':
        case '}':
            if (depth > 0) --depth; // unbalanced text is the parser's to refuse
            break;
        default: break;
        }
    }
    return deepest;
}

BoundedJson ParseJsonBounded(std::string_view text, size_t depth_max)
{
    BoundedJson out;
    if (JsonNestingDepth(text, depth_max) > depth_max) {
        out.status = JsonParseStatus::TooDeep;
        out.value = nlohmann::json(nlohmann::json::value_t::discarded);
        return out;
    }
    out.value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    out.status = out.value.is_discarded() ? JsonParseStatus::Invalid : JsonParseStatus::Ok;
    return out;
}

BoundedJson ReadJsonFileBounded(const std::string& path, size_t file_bytes_max, size_t depth_max)
{
    BoundedJson out;
    out.value = nlohmann::json(nlohmann::json::value_t::discarded);
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        out.status = JsonParseStatus::Unreadable;
        return out;
    }
    // In pieces, so that a cap far above the file's size costs nothing (and /dev/zero stops).
    std::string text;
    char chunk[64 * 1024];
    while (text.size() <= file_bytes_max && file.read(chunk, sizeof(chunk)).gcount() > 0) {
        text.append(chunk, static_cast<size_t>(file.gcount()));
    }
    if (file.bad()) {
        out.status = JsonParseStatus::Unreadable;
        return out;
    }
    if (text.size() > file_bytes_max) {
        out.status = JsonParseStatus::TooLarge;
        return out;
    }
    return ParseJsonBounded(text, depth_max);
}

} // namespace bitacora
