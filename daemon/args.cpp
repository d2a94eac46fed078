#include "daemon/args.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>

namespace bitacora {
namespace {

std::string_view Trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// The comma-separated entries of a list value, trimmed (empty entries kept).
std::vector<std::string_view> SplitList(std::string_view text)
{
    std::vector<std::string_view> items;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string_view::npos) end = text.size();
        items.push_back(Trim(text.substr(start, end - start)));
        start = end + 1;
    }
    return items;
}

std::optional<bool> ParseBool(std::string_view value)
{
    if (value == "1" || value == "true") return true;
    if (value == "0" || value == "false") return false;
    return std::nullopt;
}

std::optional<int64_t> ParseInt(std::string_view value)
{
    int64_t out = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
    return out;
}

// Length of the valid UTF-8 sequence of two to four bytes at text[i], or 0
// (overlong forms, surrogates and code points past U+10FFFF are not valid).
size_t Utf8SequenceLength(std::string_view text, size_t i)
{
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
    const unsigned char lead = byte(0);
    const size_t length = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3
                        : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return 0;
    for (size_t k = 1; k < length; ++k) {
        if ((byte(k) & 0xc0) != 0x80) return 0;
    }
    const unsigned char second = byte(1);
    if ((lead == 0xe0 && second < 0xa0) || (lead == 0xed && second >= 0xa0) || (lead == 0xf0 && second < 0x90) ||
        (lead == 0xf4 && second >= 0x90)) {
        return 0;
    }
    return length;
}

// Code points that are valid UTF-8 but print nothing or reorder what follows: C1
// controls, zero-width and bidirectional marks, and the byte order mark.
bool IsInvisible(std::string_view sequence)
{
    uint32_t code = static_cast<unsigned char>(sequence[0]) & (0xff >> (sequence.size() + 1));
    for (size_t k = 1; k < sequence.size(); ++k) code = (code << 6) | (static_cast<unsigned char>(sequence[k]) & 0x3f);
    return (code >= 0x80 && code <= 0x9f) || (code >= 0x200b && code <= 0x200f) || (code >= 0x2028 && code <= 0x202e) ||
           (code >= 0x2060 && code <= 0x2069) || code == 0xfeff;
}

// The whole file, or an error once it passes bytes_max: reading stops there, so a
// device such as /dev/zero costs bytes_max of memory at most.
Result<std::string> ReadBounded(const std::filesystem::path& path, size_t bytes_max)
{
    std::ifstream file(path, std::ios::binary);
    if (!file) return Error{fmt::format("cannot read config file {}", path.string())};
    std::string text;
    char buffer[16384];
    while (file.read(buffer, sizeof(buffer)) || file.gcount() > 0) {
        text.append(buffer, static_cast<size_t>(file.gcount()));
        if (text.size() > bytes_max) {
            return Error{fmt::format("config file {} is larger than {} bytes (the limit of a config file)",
                                     path.string(), bytes_max)};
        }
    }
    if (file.bad()) return Error{fmt::format("error reading config file {}", path.string())};
    return text;
}

std::string_view TypeHint(ArgType type)
{
    switch (type) {
    case ArgType::Bool: return "";
    case ArgType::Int: return "=<n>";
    case ArgType::String: return "=<string>";
    case ArgType::Path: return "=<path>";
    case ArgType::List: return "=<value>";
    }
    return "";
}

// Wraps help text at 75 columns under an indent, as bitcoind -help does.
std::string Wrap(std::string_view text, size_t indent)
{
    std::string out;
    size_t column = indent;
    out.append(indent, ' ');
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view word = text.substr(pos, end - pos);
        if (column > indent && column + 1 + word.size() > 79) {
            out += "\n";
            out.append(indent, ' ');
            column = indent;
        } else if (column > indent) {
            out += " ";
            ++column;
        }
        out += word;
        column += word.size();
        pos = end + 1;
    }
    return out + "\n";
}

} // namespace

std::string EscapeConfigText(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (byte >= 0x20 && byte < 0x7f) {
            out.push_back(text[i++]);
        } else if (const size_t length = byte >= 0x80 ? Utf8SequenceLength(text, i) : 0;
                   length != 0 && !IsInvisible(text.substr(i, length))) {
            out.append(text.substr(i, length));
            i += length;
        } else {
            out += fmt::format("\\x{:02x}", byte);
            ++i;
        }
    }
    return out;
}

void ArgsManager::AddArg(ArgSpec spec)
{
    m_specs.push_back(std::move(spec));
}

const ArgSpec* ArgsManager::FindSpec(std::string_view name) const
{
    for (const auto& spec : m_specs) {
        if (spec.name == name) return &spec;
    }
    return nullptr;
}

void ArgsManager::ForceSetArg(std::string_view name, std::string value, std::string origin)
{
    m_command_line[std::string(name)] = {Setting{std::move(value), std::move(origin), false}};
}

Status ArgsManager::AddSetting(std::map<std::string, std::vector<Setting>>& target, std::string_view key,
                               std::optional<std::string_view> value, const std::string& origin, Source source)
{
    bool negated = false;
    std::string_view name = key;
    const ArgSpec* spec = FindSpec(name);
    if (spec == nullptr && name.starts_with("no") && FindSpec(name.substr(2)) != nullptr) {
        negated = true;
        name = name.substr(2);
        spec = FindSpec(name);
    }
    if (spec == nullptr) return Error{fmt::format("unknown option '{}' ({})", key, origin)};
    if (spec->command_line_only && source != Source::CommandLine) {
        return Error{fmt::format("option '{}' cannot be set in a config file or for one chain ({})", name, origin)};
    }
    const bool in_section = source == Source::CommandLineSection || source == Source::FileSection;
    if (spec->top_level_only && in_section) {
        return Error{fmt::format("option '{}' cannot be set inside a [section] ({})", name, origin)};
    }
    if (negated) {
        // -nofoo and nofoo=1 switch foo off; anything else is ambiguous.
        if (value && *value != "1") {
            return Error{fmt::format("negated option '{}' takes no value other than 1, got '{}' ({})", key, *value, origin)};
        }
        target[spec->name].push_back(Setting{"", origin, true});
        return {};
    }
    std::string text;
    if (!value) {
        if (spec->type != ArgType::Bool) return Error{fmt::format("option '{}' needs a value ({})", name, origin)};
        text = "1";
    } else {
        text = std::string(*value);
    }
    switch (spec->type) {
    case ArgType::Bool:
        if (!ParseBool(text)) return Error{fmt::format("invalid value '{}' for '{}' ({}): expected 0 or 1", text, name, origin)};
        break;
    case ArgType::Int: {
        const auto number = ParseInt(text);
        if (!number) return Error{fmt::format("invalid value '{}' for '{}' ({}): expected an integer", text, name, origin)};
        if (*number < spec->min || *number > spec->max) {
            return Error{fmt::format("value {} for '{}' is out of range [{}, {}] ({})", *number, name, spec->min, spec->max, origin)};
        }
        break;
    }
    case ArgType::Path:
        if (text.empty()) return Error{fmt::format("option '{}' needs a non-empty path ({})", name, origin)};
        break;
    case ArgType::String:
    case ArgType::List: break;
    }
    if (spec->validate) {
        if (spec->type == ArgType::List) {
            for (const auto item : SplitList(text)) {
                if (auto problem = spec->validate(item)) {
                    return Error{fmt::format("invalid value '{}' for '{}' ({}): {}", item, name, origin, *problem)};
                }
            }
        } else if (auto problem = spec->validate(text)) {
            return Error{fmt::format("invalid value '{}' for '{}' ({}): {}", text, name, origin, *problem)};
        }
    }
    target[spec->name].push_back(Setting{std::move(text), origin, false});
    return {};
}

Status ArgsManager::ParseCommandLine(const std::vector<std::string>& args)
{
    for (const auto& arg : args) {
        // Every message quoting the argument is escaped: it may hold any byte.
        if (auto status = ParseArgument(arg); !status) return Error{EscapeConfigText(status.error())};
    }
    return {};
}

Status ArgsManager::ParseArgument(std::string_view text)
{
    if (!text.starts_with("-")) return Error{fmt::format("unexpected argument '{}'; options start with -", text)};
    text.remove_prefix(text.starts_with("--") ? 2 : 1);
    std::optional<std::string_view> value;
    const size_t eq = text.find('=');
    std::string_view key = text;
    if (eq != std::string_view::npos) {
        key = text.substr(0, eq);
        value = text.substr(eq + 1);
    }
    if (key == "?" || key == "h") key = "help";
    const std::string origin = "-" + EscapeConfigText(key);
    // -regtest.dbcache=100 applies to one chain, as in bitcoind.
    const size_t dot = key.find('.');
    if (dot != std::string_view::npos) {
        const std::string section(key.substr(0, dot));
        if (std::find(m_section_names.begin(), m_section_names.end(), section) == m_section_names.end()) {
            return Error{fmt::format("unknown chain '{}' in option '-{}'", section, key)};
        }
        return AddSetting(m_config[section], key.substr(dot + 1), value, origin, Source::CommandLineSection);
    }
    return AddSetting(m_command_line, key, value, origin, Source::CommandLine);
}

Status ArgsManager::ReadConfigFile(const std::filesystem::path& path, bool required)
{
    std::error_code ec;
    if (!required && !std::filesystem::exists(path, ec)) return {};
    if (std::filesystem::is_directory(path, ec)) {
        return Error{EscapeConfigText(fmt::format("config file {} is a directory", path.string()))};
    }
    auto text = ReadBounded(path, kConfigBytesMax);
    if (!text) return Error{EscapeConfigText(text.error())};
    std::string_view rest = *text;
    if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3); // a UTF-8 byte order mark, as editors on Windows write
    const std::string file_name = EscapeConfigText(path.string());
    std::string section;
    for (size_t number = 1; !rest.empty(); ++number) {
        const size_t end = std::min(rest.find('\n'), rest.size());
        const std::string_view line = rest.substr(0, end);
        rest.remove_prefix(std::min(end + 1, rest.size()));
        if (line.size() > kConfigLineBytesMax) {
            return Error{fmt::format("config file {} line {} is longer than {} bytes", file_name, number, kConfigLineBytesMax)};
        }
        const std::string origin = fmt::format("{} line {}", file_name, number);
        if (auto status = ParseConfigLine(line, origin, section); !status) return Error{EscapeConfigText(status.error())};
    }
    return {};
}

Status ArgsManager::ParseConfigLine(std::string_view line, const std::string& origin, std::string& section)
{
    // As bitcoind: a # starts a comment anywhere on the line.
    const size_t hash = line.find('#');
    const bool had_comment = hash != std::string_view::npos;
    const std::string_view text = Trim(line.substr(0, hash));
    if (text.empty()) return {};
    if (text.front() == '[') {
        if (text.back() != ']') return Error{fmt::format("malformed section header '{}' ({})", text, origin)};
        section = std::string(Trim(text.substr(1, text.size() - 2)));
        if (std::find(m_section_names.begin(), m_section_names.end(), section) == m_section_names.end()) {
            std::string known;
            for (const auto& name : m_section_names) known += (known.empty() ? "" : ", ") + name;
            return Error{fmt::format("unknown section [{}] ({}); sections name a chain: {}", section, origin, known)};
        }
        return {};
    }
    const size_t eq = text.find('=');
    if (eq == std::string_view::npos) {
        return Error{fmt::format("expected key=value, got '{}' ({}); to switch an option off write no{}=1", text, origin, text)};
    }
    const std::string_view key = Trim(text.substr(0, eq));
    if (key.empty()) return Error{fmt::format("empty key ({})", origin)};
    // A password may hold a #: cutting it there would fail later and far away.
    if (had_comment && key.find("password") != std::string_view::npos) {
        return Error{fmt::format("using # in {} can be ambiguous and should be avoided ({})", key, origin)};
    }
    return AddSetting(m_config[section], key, Trim(text.substr(eq + 1)), origin,
                      section.empty() ? Source::File : Source::FileSection);
}

const std::vector<ArgsManager::Setting>* ArgsManager::Lookup(std::string_view name) const
{
    const std::string key(name);
    if (auto it = m_command_line.find(key); it != m_command_line.end() && !it->second.empty()) return &it->second;
    if (!m_selected_section.empty()) {
        if (auto section = m_config.find(m_selected_section); section != m_config.end()) {
            if (auto it = section->second.find(key); it != section->second.end() && !it->second.empty()) return &it->second;
        }
    }
    if (auto top = m_config.find(""); top != m_config.end()) {
        if (auto it = top->second.find(key); it != top->second.end() && !it->second.empty()) return &it->second;
    }
    return nullptr;
}

std::optional<ArgsManager::Setting> ArgsManager::GetSetting(std::string_view name) const
{
    const auto* settings = Lookup(name);
    if (settings == nullptr) return std::nullopt;
    return settings->back();
}

bool ArgsManager::IsSet(std::string_view name) const
{
    return Lookup(name) != nullptr;
}

bool ArgsManager::IsNegated(std::string_view name) const
{
    const auto* settings = Lookup(name);
    return settings != nullptr && settings->back().negated;
}

std::string ArgsManager::GetString(std::string_view name, std::string_view fallback) const
{
    const auto* settings = Lookup(name);
    if (settings == nullptr) return std::string(fallback);
    return settings->back().negated ? "" : settings->back().value;
}

int64_t ArgsManager::GetInt(std::string_view name, int64_t fallback) const
{
    const auto* settings = Lookup(name);
    if (settings == nullptr) return fallback;
    if (settings->back().negated) return 0;
    return ParseInt(settings->back().value).value_or(fallback); // validated when read
}

bool ArgsManager::GetBool(std::string_view name, bool fallback) const
{
    const auto* settings = Lookup(name);
    if (settings == nullptr) return fallback;
    if (settings->back().negated) return false;
    return ParseBool(settings->back().value).value_or(fallback); // validated when read
}

std::vector<std::string> ArgsManager::GetList(std::string_view name) const
{
    std::vector<std::string> out;
    const auto* settings = Lookup(name);
    if (settings == nullptr) return out;
    for (const auto& setting : *settings) {
        if (setting.negated) {
            out.clear();
            continue;
        }
        for (const auto item : SplitList(setting.value)) {
            if (!item.empty()) out.emplace_back(item);
        }
    }
    return out;
}

std::string ArgsManager::HelpMessage() const
{
    std::vector<std::string> categories;
    for (const auto& spec : m_specs) {
        if (std::find(categories.begin(), categories.end(), spec.category) == categories.end()) categories.push_back(spec.category);
    }
    std::string out;
    for (const auto& category : categories) {
        out += "\n" + category + ":\n";
        for (const auto& spec : m_specs) {
            if (spec.category != category) continue;
            out += fmt::format("\n  -{}{}\n", spec.name, TypeHint(spec.type));
            std::string help = spec.help;
            if (!spec.default_text.empty()) help += fmt::format(" (default: {})", spec.default_text);
            out += Wrap(help, 7);
        }
    }
    return out;
}

} // namespace bitacora
