// bitcoind-style settings: `bitacora.conf` (key=value lines, [chain] sections) and
// the same keys as -key=value flags. The command line wins over a [chain] section,
// which wins over the file's top level. Every value is checked as it is read, so
// an error names the key and where it came from (the flag, or the file and line).
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora {

enum class ArgType { Bool, Int, String, Path, List };

struct ArgSpec {
    std::string name;
    ArgType type{ArgType::String};
    std::string default_text; // shown by -help; empty for none
    std::string help;
    std::string category;     // -help groups options under these headings
    bool command_line_only{false};
    bool top_level_only{false}; // not allowed inside a [chain] section (e.g. chain itself)
    int64_t min{std::numeric_limits<int64_t>::min()};
    int64_t max{std::numeric_limits<int64_t>::max()};
    // Extra check of one value; returns an error message or nullopt.
    std::function<std::optional<std::string>(std::string_view)> validate;
};

// Config file bounds: a mistaken -conf=/dev/zero or a binary file fails at once.
inline constexpr size_t kConfigBytesMax = 1 << 20;
inline constexpr size_t kConfigLineBytesMax = 1 << 16;

// Config and command-line text as quoted in messages: control bytes, DEL and bytes
// that are not valid UTF-8 become \xNN, so a message cannot carry raw binary.
std::string EscapeConfigText(std::string_view text);

class ArgsManager {
public:
    struct Setting {
        std::string value;
        std::string origin; // "-dbcache" or "/etc/bitacora.conf line 12"
        bool negated{false};
    };

    void AddArg(ArgSpec spec);
    const ArgSpec* FindSpec(std::string_view name) const;
    const std::vector<ArgSpec>& specs() const { return m_specs; }

    Status ParseCommandLine(const std::vector<std::string>& args);
    // Reads a config file; a missing file is an error only when required.
    Status ReadConfigFile(const std::filesystem::path& path, bool required);
    // Sections that may appear in the config file (the chain names).
    void SetSectionNames(std::vector<std::string> names) { m_section_names = std::move(names); }
    // Selects which [section] applies; call after reading everything.
    void SelectSection(std::string name) { m_selected_section = std::move(name); }
    // Overrides name's value at start-up (e.g. a limit lowered to fit the system);
    // origin says why, for messages that quote the setting.
    void ForceSetArg(std::string_view name, std::string value, std::string origin);

    bool IsSet(std::string_view name) const;
    bool IsNegated(std::string_view name) const;
    std::string GetString(std::string_view name, std::string_view fallback) const;
    int64_t GetInt(std::string_view name, int64_t fallback) const;
    bool GetBool(std::string_view name, bool fallback) const;
    // All values of a list option, comma-separated entries split; negation clears.
    std::vector<std::string> GetList(std::string_view name) const;
    // The setting that decides name's value, for error messages.
    std::optional<Setting> GetSetting(std::string_view name) const;

    std::string HelpMessage() const;

private:
    enum class Source { CommandLine, CommandLineSection, File, FileSection };
    Status ParseArgument(std::string_view arg);
    // One line of a config file; section is the [section] in force, updated by headers.
    Status ParseConfigLine(std::string_view line, const std::string& origin, std::string& section);
    Status AddSetting(std::map<std::string, std::vector<Setting>>& target, std::string_view key,
                      std::optional<std::string_view> value, const std::string& origin, Source source);
    // Settings in precedence order: command line, selected section, top level.
    const std::vector<Setting>* Lookup(std::string_view name) const;

    std::vector<ArgSpec> m_specs;
    std::map<std::string, std::vector<Setting>> m_command_line;
    std::map<std::string, std::map<std::string, std::vector<Setting>>> m_config; // section -> settings
    std::vector<std::string> m_section_names;
    std::string m_selected_section;
};

} // namespace bitacora
