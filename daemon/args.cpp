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
        std::string_view text = arg;
        if (!text.starts_with("-")) return Error{fmt::format("unexpected argument '{}'; options start with -", arg)};
        text.remove_prefix(text.starts_with("--") ? 2 : 1);
        std::optional<std::string_view> value;
        const size_t eq = text.find('=');
        std::string_view key = text;
        if (eq != std::string_view::npos) {
            key = text.substr(0, eq);
            value = text.substr(eq + 1);
        }
        if (key == "?" || key == "h") key = "help";
        // -regtest.dbcache=100 applies to one chain, as in bitcoind.
        const size_t dot = key.find('.');
        if (dot != std::string_view::npos) {
            const std::string section(key.substr(0, dot));
            if (std::find(m_section_names.begin(), m_section_names.end(), section) == m_section_names.end()) {
                return Error{fmt::format("unknown chain '{}' in option '-{}'", section, key)};
            }
            auto status = AddSetting(m_config[section], key.substr(dot + 1), value, "-" + std::string(key),
                                     Source::CommandLineSection);
            if (!status) return status;
            continue;
        }
        auto status = AddSetting(m_command_line, key, value, "-" + std::string(key), Source::CommandLine);
        if (!status) return status;
    }
    return {};
}

Status ArgsManager::ReadConfigFile(const std::filesystem::path& path, bool required)
{
    std::ifstream file(path);
    if (!file) {
        if (!required && !std::filesystem::exists(path)) return {};
        return Error{fmt::format("cannot read config file {}", path.string())};
    }
    std::string section;
    std::string line;
    // A bound on the file, so that a mistaken -conf=/dev/zero cannot hang start-up.
    constexpr size_t kLinesMax = 100'000;
    for (size_t number = 1; std::getline(file, line); ++number) {
        if (number > kLinesMax) return Error{fmt::format("config file {} has more than {} lines", path.string(), kLinesMax)};
        const std::string origin = fmt::format("{} line {}", path.string(), number);
        const std::string_view text = Trim(line);
        if (text.empty() || text.front() == '#') continue;
        if (text.front() == '[') {
            if (text.back() != ']') return Error{fmt::format("malformed section header '{}' ({})", text, origin)};
            section = std::string(Trim(text.substr(1, text.size() - 2)));
            if (std::find(m_section_names.begin(), m_section_names.end(), section) == m_section_names.end()) {
                std::string known;
                for (const auto& name : m_section_names) known += (known.empty() ? "" : ", ") + name;
                return Error{fmt::format("unknown section [{}] ({}); sections name a chain: {}", section, origin, known)};
            }
            continue;
        }
        const size_t eq = text.find('=');
        if (eq == std::string_view::npos) {
            return Error{fmt::format("expected key=value, got '{}' ({}); to switch an option off write no{}=1", text, origin, text)};
        }
        const std::string_view key = Trim(text.substr(0, eq));
        const std::string_view value = Trim(text.substr(eq + 1));
        if (key.empty()) return Error{fmt::format("empty key ({})", origin)};
        auto status = AddSetting(m_config[section], key, value, origin,
                                 section.empty() ? Source::File : Source::FileSection);
        if (!status) return status;
    }
    if (file.bad()) return Error{fmt::format("error reading config file {}", path.string())};
    return {};
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
