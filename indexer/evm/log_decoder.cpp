#include "indexer/evm/log_decoder.h"

#include "indexer/evm/abi.h"

#include <fmt/format.h>

#include <algorithm>

namespace bitacora::evm {
namespace {

using ledger::Event;

Address ToAddress(const AbiValue& value)
{
    Address out{};
    std::copy_n(value.bytes.begin(), std::min(value.bytes.size(), out.size()), out.begin());
    return out;
}

Hash256 ToHash(const AbiValue& value)
{
    Hash256 out{};
    std::copy_n(value.bytes.begin(), std::min(value.bytes.size(), out.size()), out.begin());
    return out;
}

bool ToBool(const AbiValue& value) { return !value.number.IsZero(); }

// The parameters are in the order of the signatures in platform_events.cpp.
std::optional<ledger::EventBody> ToBody(std::string_view name, const std::vector<AbiValue>& v)
{
    if (name == "OrderCreated") {
        if (!v[4].number.FitsUint64()) return std::nullopt;
        return ledger::OrderCreated{v[0].number, ToAddress(v[1]), ToAddress(v[2]), v[3].number, v[4].number.Low64()};
    }
    if (name == "PaymentConfirmed") return ledger::PaymentConfirmed{v[0].number, ToAddress(v[1]), ToHash(v[2])};
    if (name == "OrderReleased") return ledger::OrderReleased{v[0].number, ToAddress(v[1]), ToAddress(v[2]), v[3].number};
    if (name == "OrderCancelled") return ledger::OrderCancelled{v[0].number, ToAddress(v[1]), v[2].number};
    if (name == "OrderExpired") return ledger::OrderExpired{v[0].number, ToAddress(v[1]), ToAddress(v[2]), v[3].number};
    if (name == "OrderDisputed") return ledger::OrderDisputed{v[0].number, ToAddress(v[1]), ToBool(v[2])};
    if (name == "DisputeResolved") {
        return ledger::DisputeResolved{v[0].number, ToAddress(v[1]), ToBool(v[2]), ToAddress(v[3]), v[4].number};
    }
    if (name == "ReputationChanged") {
        if (!v[1].number.FitsUint64() || !v[2].number.FitsUint64()) return std::nullopt;
        return ledger::ReputationChanged{ToAddress(v[0]), static_cast<uint8_t>(v[1].number.Low64()),
                                         static_cast<uint8_t>(v[2].number.Low64())};
    }
    if (name == "Paused") return ledger::EscrowPaused{ToAddress(v[0]), true};
    if (name == "Unpaused") return ledger::EscrowPaused{ToAddress(v[0]), false};
    if (name == "RoleGranted") return ledger::RoleChanged{ToHash(v[0]), ToAddress(v[1]), ToAddress(v[2]), true};
    if (name == "RoleRevoked") return ledger::RoleChanged{ToHash(v[0]), ToAddress(v[1]), ToAddress(v[2]), false};
    if (name == "Deposit") return ledger::VaultDeposit{ToAddress(v[0]), ToAddress(v[1]), v[2].number, v[3].number};
    if (name == "Withdraw") {
        return ledger::VaultWithdraw{ToAddress(v[0]), ToAddress(v[1]), ToAddress(v[2]), v[3].number, v[4].number};
    }
    if (name == "Transfer") return ledger::VaultTransfer{ToAddress(v[0]), ToAddress(v[1]), v[2].number};
    // RoleAdminChanged and anything added to the table without a mapping stay raw.
    return std::nullopt;
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
        if (auto it = m_by_topic.find({*contract, log.topics[0]}); it != m_by_topic.end()) {
            auto values = DecodeLog(it->second->abi, log.topics, log.data);
            if (values) {
                if (auto body = ToBody(it->second->abi.name, values.value())) {
                    return DecodedLog{Event{origin, std::move(*body)}, false};
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
