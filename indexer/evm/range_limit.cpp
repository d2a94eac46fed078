#include "indexer/evm/range_limit.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>

namespace bitacora::evm {
namespace {

enum class Action {
    Halve,
    Fixed,          // `value` blocks
    NumberAfter,    // the number after the phrase, minus `value`
    SuggestedRange, // "[0x<from>, 0x<to>]" after the phrase
};

struct Rule {
    std::string_view phrase; // lower case
    Action action;
    uint64_t value{0};
};

// Order matters where one phrase contains another.
constexpr Rule kRules[] = {
    {"this block range should work: [", Action::SuggestedRange},          // Alchemy
    {"try with this block range [", Action::SuggestedRange},              // Infura, zkSync
    {"block range is too large", Action::Halve},                          // Optimism
    {"block range too large", Action::Fixed, 2'000},                      // Base public endpoint
    {"no backend is currently healthy", Action::Halve},                   // Base public endpoint
    {"backend response too large", Action::Halve},                        // Optimism
    {"please limit the query to at most ", Action::NumberAfter, 1},       // Coinbase CDP
    {"limited to a ", Action::NumberAfter, 0},                            // QuickNode, 1RPC, Blast
    {"limited to ", Action::NumberAfter, 0},                              // BlockPI
    {"response size should not greater than", Action::Halve},             // 1RPC
    {"query returned more than", Action::Halve},                          // geth
    {"query exceeds max results", Action::Halve},                         // LlamaRPC, Ankr
    {"block range is too wide (maximum ", Action::NumberAfter, 0},        // Moonriver
    {"block range is too wide", Action::Fixed, 3'000},                    // Ankr
    {"blocks distance: ", Action::NumberAfter, 0},                        // Ankr
    {"logs matched by query exceeds limit of", Action::Halve},            // Arbitrum
    {"maximum is set to ", Action::NumberAfter, 1},                       // Avalanche
    {"max range: ", Action::NumberAfter, 1},                              // Cloudflare
    {"maximum allowed number of requested blocks is ", Action::NumberAfter, 0}, // thirdweb
    {"exceeds the range allowed for your plan (", Action::NumberAfter, 0}, // Blast: "(<asked> > <N>)"
    {"maximum block range: ", Action::NumberAfter, 0},                    // PublicNode
    {"query exceeds max block range ", Action::NumberAfter, 0},           // Hyperliquid
    {"up to a ", Action::NumberAfter, 0},                                 // Aurora
    {"query must be smaller than size ", Action::NumberAfter, 0},         // Harmony
    {"block range greater than ", Action::NumberAfter, 0},                // Swell
    {"block range exceeds ", Action::NumberAfter, 0},                     // Somnia
    {"range is too large, max is ", Action::NumberAfter, 0},              // Merkle: "10k blocks"
    {"block range limit exceeded", Action::Fixed, 0},                     // Chainstack: 100 or 10,000
};

// A number as providers write it: "10000", "10,000", "10.000", "10k".
std::optional<uint64_t> ReadNumber(std::string_view text)
{
    uint64_t value = 0;
    bool any = false;
    size_t i = 0;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (c >= '0' && c <= '9') {
            if (value > (UINT64_MAX - 9) / 10) return std::nullopt;
            value = value * 10 + static_cast<uint64_t>(c - '0');
            any = true;
        } else if ((c == ',' || c == '.') && any && i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
            continue; // a thousands separator
        } else {
            break;
        }
    }
    if (!any) return std::nullopt;
    if (i < text.size() && text[i] == 'k') value *= 1'000;
    return value;
}

std::optional<uint64_t> ReadHexNumber(std::string_view text)
{
    if (text.size() < 3 || text[0] != '0' || text[1] != 'x') return std::nullopt;
    uint64_t value = 0;
    size_t i = 2;
    for (; i < text.size() && std::isxdigit(static_cast<unsigned char>(text[i])); ++i) {
        if (value >> 60) return std::nullopt;
        const char c = text[i];
        value = (value << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (i == 2) return std::nullopt;
    return value;
}

} // namespace

RangeAdvice AdviseLogRange(std::string_view message, uint64_t requested_blocks)
{
    std::string lower(message);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const Rule& rule : kRules) {
        const size_t at = lower.find(rule.phrase);
        if (at == std::string::npos) continue;
        std::string_view rest = std::string_view(lower).substr(at + rule.phrase.size());
        switch (rule.action) {
        case Action::Halve: return {RangeAdvice::Kind::Halve, 0};
        case Action::Fixed:
            if (rule.value != 0) return {RangeAdvice::Kind::Blocks, rule.value};
            // Chainstack: 10,000 blocks on paid plans, 100 on free ones.
            return {RangeAdvice::Kind::Blocks, requested_blocks > 10'000 ? 10'000u : 100u};
        case Action::NumberAfter: {
            if (rule.phrase.back() == '(') {
                // "(<asked> > <N>)": the limit is the second number.
                const size_t gt = rest.find('>');
                if (gt == std::string_view::npos) break;
                rest.remove_prefix(gt + 1);
                while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
            }
            const auto number = ReadNumber(rest);
            if (!number || *number <= rule.value) break;
            return {RangeAdvice::Kind::Blocks, *number - rule.value};
        }
        case Action::SuggestedRange: {
            const auto from = ReadHexNumber(rest);
            const size_t comma = rest.find(',');
            if (!from || comma == std::string_view::npos) break;
            std::string_view second = rest.substr(comma + 1);
            while (!second.empty() && second.front() == ' ') second.remove_prefix(1);
            const auto to = ReadHexNumber(second);
            if (!to || *to < *from) break;
            return {RangeAdvice::Kind::Blocks, *to - *from + 1};
        }
        }
        // The phrase was there but its number was not: still a range error.
        return {RangeAdvice::Kind::Halve, 0};
    }
    return {RangeAdvice::Kind::NotRangeError, 0};
}

} // namespace bitacora::evm
