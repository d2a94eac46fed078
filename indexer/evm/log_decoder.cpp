#include "indexer/evm/log_decoder.h"

#include "indexer/evm/abi.h"

#include <algorithm>

#include <fmt/format.h>

#include <algorithm>

namespace bitacora::evm {
namespace {

using ledger::Event;

// One 32-byte word of a log: a topic or a head word of the data.
using Word = const uint8_t*;

UInt256 U256(Word w) { return UInt256::FromBigEndian(std::span<const uint8_t, 32>(w, 32)); }
Address ToAddress(Word w)
{
    Address out{};
    std::copy_n(w + 12, 20, out.begin());
    return out;
}
Hash256 ToHash(Word w)
{
    Hash256 out{};
    std::copy_n(w, 32, out.begin());
    return out;
}
bool ToBool(Word w) { return w[31] != 0; }
uint64_t ToU64(Word w)
{
    uint64_t out = 0;
    for (int i = 24; i < 32; ++i) out = (out << 8) | w[i];
    return out;
}

// Whether a word is a valid encoding of a one-word static type (no dirty bits).
bool WordFits(const AbiType& type, Word w)
{
    auto zero_prefix = [&](size_t bytes) { return std::all_of(w, w + bytes, [](uint8_t b) { return b == 0; }); };
    switch (type.kind) {
    case AbiType::Kind::Uint: return zero_prefix(32 - type.size / 8);
    case AbiType::Kind::Address: return zero_prefix(12);
    case AbiType::Kind::Bool: return zero_prefix(31) && w[31] <= 1;
    case AbiType::Kind::FixedBytes: return std::all_of(w + type.size, w + 32, [](uint8_t b) { return b == 0; });
    default: return false;
    }
}

bool IsOneWord(const AbiType& type)
{
    return type.kind == AbiType::Kind::Uint || type.kind == AbiType::Kind::Address || type.kind == AbiType::Kind::Bool ||
           type.kind == AbiType::Kind::FixedBytes;
}

// The parameters are in the order of the signatures in platform_events.cpp.
std::optional<ledger::EventBody> ToBody(std::string_view name, const std::vector<Word>& v)
{
    if (name == "OrderCreated") return ledger::OrderCreated{U256(v[0]), ToAddress(v[1]), ToAddress(v[2]), U256(v[3]), ToU64(v[4])};
    if (name == "PaymentConfirmed") return ledger::PaymentConfirmed{U256(v[0]), ToAddress(v[1]), ToHash(v[2])};
    if (name == "OrderReleased") return ledger::OrderReleased{U256(v[0]), ToAddress(v[1]), ToAddress(v[2]), U256(v[3])};
    if (name == "OrderCancelled") return ledger::OrderCancelled{U256(v[0]), ToAddress(v[1]), U256(v[2])};
    if (name == "OrderExpired") return ledger::OrderExpired{U256(v[0]), ToAddress(v[1]), ToAddress(v[2]), U256(v[3])};
    if (name == "OrderDisputed") return ledger::OrderDisputed{U256(v[0]), ToAddress(v[1]), ToBool(v[2])};
    if (name == "DisputeResolved") {
        return ledger::DisputeResolved{U256(v[0]), ToAddress(v[1]), ToBool(v[2]), ToAddress(v[3]), U256(v[4])};
    }
    if (name == "ReputationChanged") {
        return ledger::ReputationChanged{ToAddress(v[0]), static_cast<uint8_t>(v[1][31]), static_cast<uint8_t>(v[2][31])};
    }
    if (name == "Paused") return ledger::EscrowPaused{ToAddress(v[0]), true};
    if (name == "Unpaused") return ledger::EscrowPaused{ToAddress(v[0]), false};
    if (name == "RoleGranted") return ledger::RoleChanged{ToHash(v[0]), ToAddress(v[1]), ToAddress(v[2]), true};
    if (name == "RoleRevoked") return ledger::RoleChanged{ToHash(v[0]), ToAddress(v[1]), ToAddress(v[2]), false};
    if (name == "Deposit") return ledger::VaultDeposit{ToAddress(v[0]), ToAddress(v[1]), U256(v[2]), U256(v[3])};
    if (name == "Withdraw") return ledger::VaultWithdraw{ToAddress(v[0]), ToAddress(v[1]), ToAddress(v[2]), U256(v[3]), U256(v[4])};
    if (name == "Transfer") return ledger::VaultTransfer{ToAddress(v[0]), ToAddress(v[1]), U256(v[2])};
    // RoleAdminChanged and anything added to the table without a mapping stay raw.
    return std::nullopt;
}

// The words of a log whose parameters are all one-word static types, in declaration
// order: exactly the topics and data such an event has, every word clean. This is the
// ABI decoder's result for these types (tests/unit/test_evm_rpc.cpp compares the two),
// without building AbiValues: a catch-up decodes a hundred thousand logs.
std::optional<std::vector<Word>> StaticWords(const EventAbi& abi, const Log& log)
{
    size_t indexed = 0;
    for (const auto& param : abi.params) indexed += param.indexed ? 1 : 0;
    if (log.topics.size() != indexed + 1 || log.data.size() != 32 * (abi.params.size() - indexed)) return std::nullopt;
    std::vector<Word> words;
    words.reserve(abi.params.size());
    size_t topic = 1;
    size_t word = 0;
    for (const auto& param : abi.params) {
        const Word w = param.indexed ? log.topics[topic++].data() : log.data.data() + 32 * word++;
        if (!WordFits(param.type, w)) return std::nullopt;
        words.push_back(w);
    }
    return words;
}

} // namespace

LogDecoder::LogDecoder(uint64_t chain_id, const Address& escrow, const Address& vault)
    : m_chain_id(chain_id), m_escrow(escrow), m_vault(vault)
{
    for (const auto& event : PlatformEvents()) m_by_topic[{event.contract, event.abi.Topic0()}] = &event;
}

Result<DecodedLog> LogDecoder::Decode(const Log& log) const
{
    std::optional<PlatformContract> contract;
    if (log.address == m_escrow) contract = PlatformContract::Escrow;
    else if (log.address == m_vault) contract = PlatformContract::Vault;
    if (!contract) return Error{fmt::format("log of unwatched address {}", FormatAddress(log.address))};

    const ledger::EvmOrigin origin{.chain_id = m_chain_id, .block_number = log.block_number, .block_hash = log.block_hash,
                                   .tx_hash = log.tx_hash, .log_index = log.log_index, .contract = log.address};
    if (!log.topics.empty()) {
        if (auto it = m_by_topic.find({*contract, log.topics[0]}); it != m_by_topic.end() && !it->second->abi.anonymous) {
            const EventAbi& abi = it->second->abi;
            // Every ledger event is made of one-word fields; an event with other types has
            // no ledger form and is kept raw.
            if (std::all_of(abi.params.begin(), abi.params.end(), [](const EventParam& p) { return IsOneWord(p.type); })) {
                if (auto words = StaticWords(abi, log)) {
                    if (auto body = ToBody(abi.name, *words)) return DecodedLog{Event{origin, std::move(*body)}, false};
                }
            }
        }
    }
    if (log.data.size() > ledger::RawEvmLog::kDataMax) {
        return Error{fmt::format("log {} of block {} has {} bytes of data, over the limit", log.log_index,
                                 log.block_number, log.data.size())};
    }
    return DecodedLog{Event{origin, ledger::RawEvmLog{log.topics, log.data}}, true};
}

} // namespace bitacora::evm
