#include "indexer/evm/rlp.h"

#include "indexer/evm/keccak.h"

#include <algorithm>

namespace bitacora::evm::rlp {
namespace {

constexpr size_t kShortLengthMax = 55; // longer payloads carry their length's length

void AppendLength(Bytes& out, size_t length, uint8_t short_base, uint8_t long_base)
{
    if (length <= kShortLengthMax) {
        out.push_back(static_cast<uint8_t>(short_base + length));
        return;
    }
    uint8_t digits[sizeof(size_t)];
    size_t count = 0;
    for (size_t rest = length; rest != 0; rest >>= 8) digits[count++] = static_cast<uint8_t>(rest & 0xff);
    out.push_back(static_cast<uint8_t>(long_base + count));
    while (count > 0) out.push_back(digits[--count]);
}

// Keys as nibbles, and the trie built over a sorted slice of them.
struct Entry {
    std::vector<uint8_t> nibbles;
    const Bytes* value;
};

// Hex-prefix encoding of a path (Yellow Paper appendix C).
Bytes HexPrefix(std::span<const uint8_t> nibbles, bool leaf)
{
    Bytes out;
    const bool odd = nibbles.size() % 2 == 1;
    const uint8_t flag = static_cast<uint8_t>((leaf ? 2 : 0) + (odd ? 1 : 0));
    size_t i = 0;
    if (odd) {
        out.push_back(static_cast<uint8_t>(flag << 4 | nibbles[0]));
        i = 1;
    } else {
        out.push_back(static_cast<uint8_t>(flag << 4));
    }
    for (; i < nibbles.size(); i += 2) out.push_back(static_cast<uint8_t>(nibbles[i] << 4 | nibbles[i + 1]));
    return out;
}

Bytes EncodeNode(std::span<const Entry> entries, size_t depth);

// How a node is referred to from its parent: inline when its encoding is shorter than
// a hash, else by its Keccak-256.
void AppendReference(Bytes& out, std::span<const Entry> entries, size_t depth)
{
    const Bytes node = EncodeNode(entries, depth);
    if (node.size() < 32) {
        out.insert(out.end(), node.begin(), node.end());
        return;
    }
    const Hash256 hash = Keccak(node);
    AppendString(out, hash);
}

Bytes EncodeNode(std::span<const Entry> entries, size_t depth)
{
    Bytes payload;
    if (entries.size() == 1) {
        const Entry& only = entries[0];
        AppendString(payload, HexPrefix(std::span(only.nibbles).subspan(depth), true));
        AppendString(payload, *only.value);
        return EncodeList(payload);
    }
    // The path all entries share below this depth (entries are sorted: first and last).
    const auto& first = entries.front().nibbles;
    const auto& last = entries.back().nibbles;
    size_t shared = 0;
    while (depth + shared < first.size() && depth + shared < last.size() &&
           first[depth + shared] == last[depth + shared]) {
        ++shared;
    }
    if (shared > 0) {
        AppendString(payload, HexPrefix(std::span(first).subspan(depth, shared), false));
        AppendReference(payload, entries, depth + shared);
        return EncodeList(payload);
    }
    // A branch: sixteen children by the next nibble, then the value of a key ending here.
    const Bytes* here = nullptr;
    size_t begin = 0;
    if (entries[0].nibbles.size() == depth) {
        here = entries[0].value;
        begin = 1;
    }
    for (uint8_t nibble = 0; nibble < 16; ++nibble) {
        size_t end = begin;
        while (end < entries.size() && entries[end].nibbles[depth] == nibble) ++end;
        if (end == begin) {
            payload.push_back(0x80);
        } else {
            AppendReference(payload, entries.subspan(begin, end - begin), depth + 1);
        }
        begin = end;
    }
    if (here != nullptr) AppendString(payload, *here);
    else payload.push_back(0x80);
    return EncodeList(payload);
}

} // namespace

void AppendString(Bytes& out, std::span<const uint8_t> bytes)
{
    if (bytes.size() == 1 && bytes[0] < 0x80) {
        out.push_back(bytes[0]);
        return;
    }
    AppendLength(out, bytes.size(), 0x80, 0xb7);
    out.insert(out.end(), bytes.begin(), bytes.end());
}

void AppendUint(Bytes& out, uint64_t value)
{
    uint8_t digits[8];
    size_t count = 0;
    for (uint64_t rest = value; rest != 0; rest >>= 8) digits[count++] = static_cast<uint8_t>(rest & 0xff);
    uint8_t big_endian[8];
    for (size_t i = 0; i < count; ++i) big_endian[i] = digits[count - 1 - i];
    AppendString(out, std::span<const uint8_t>(big_endian, count));
}

void AppendList(Bytes& out, std::span<const uint8_t> payload)
{
    AppendLength(out, payload.size(), 0xc0, 0xf7);
    out.insert(out.end(), payload.begin(), payload.end());
}

Bytes EncodeString(std::span<const uint8_t> bytes)
{
    Bytes out;
    AppendString(out, bytes);
    return out;
}

Bytes EncodeUint(uint64_t value)
{
    Bytes out;
    AppendUint(out, value);
    return out;
}

Bytes EncodeList(std::span<const uint8_t> payload)
{
    Bytes out;
    out.reserve(payload.size() + 9);
    AppendList(out, payload);
    return out;
}

Hash256 TrieRoot(std::vector<std::pair<Bytes, Bytes>> pairs)
{
    if (pairs.empty()) return Keccak(EncodeString({}));
    std::vector<Entry> entries;
    entries.reserve(pairs.size());
    for (const auto& [key, value] : pairs) {
        Entry entry{{}, &value};
        entry.nibbles.reserve(key.size() * 2);
        for (uint8_t byte : key) {
            entry.nibbles.push_back(byte >> 4);
            entry.nibbles.push_back(byte & 0x0f);
        }
        entries.push_back(std::move(entry));
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.nibbles < b.nibbles; });
    // The root is hashed whatever its size.
    return Keccak(EncodeNode(entries, 0));
}

Hash256 OrderedTrieRoot(std::span<const Bytes> values)
{
    std::vector<std::pair<Bytes, Bytes>> pairs;
    pairs.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) pairs.emplace_back(EncodeUint(i), values[i]);
    return TrieRoot(std::move(pairs));
}

} // namespace bitacora::evm::rlp
