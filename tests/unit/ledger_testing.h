// Helpers shared by the ledger tests: temporary directories and a deterministic
// stream of valid platform events.
#pragma once

#include "ledger/event.h"

#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

namespace bitacora::ledger::testing {

struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& name)
        : path(std::filesystem::temp_directory_path() / ("bitacora-" + name + "-" + std::to_string(::getpid())))
    {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

inline Address Addr(uint64_t n)
{
    Address a{};
    for (int i = 0; i < 8; ++i) a[19 - i] = static_cast<uint8_t>(n >> (8 * i));
    a[0] = 0xa0;
    return a;
}

inline EvmOrigin OriginFor(uint64_t index)
{
    EvmOrigin origin;
    origin.chain_id = 31337;
    origin.block_number = 100 + index / 8;
    origin.block_hash[0] = static_cast<uint8_t>(origin.block_number);
    origin.block_hash[1] = static_cast<uint8_t>(origin.block_number >> 8);
    origin.tx_hash[0] = static_cast<uint8_t>(index);
    origin.tx_hash[1] = static_cast<uint8_t>(index >> 8);
    origin.tx_hash[2] = static_cast<uint8_t>(index >> 16);
    origin.log_index = static_cast<uint32_t>(index % 8);
    origin.contract = Addr(0xe5c);
    return origin;
}

// Event number i of an endless, valid stream: orders created, confirmed and released
// or cancelled, with vault deposits and withdrawals interleaved. Pure in i.
inline Event ReferenceEvent(uint64_t i)
{
    const uint64_t order = i / 4 + 1;
    const Address seller = Addr(order % 97 + 1);
    const Address buyer = Addr(order % 89 + 200);
    const UInt256 amount(1'000'000 * (order % 500 + 1));
    const EvmOrigin origin = OriginFor(i);
    switch (i % 4) {
    case 0: return {origin, OrderCreated{UInt256(order), seller, buyer, amount, 1'700'000'000 + order}};
    case 1:
        if (order % 5 == 0) return {origin, OrderCancelled{UInt256(order), seller, amount}};
        return {origin, PaymentConfirmed{UInt256(order), buyer, Hash256{static_cast<uint8_t>(order)}}};
    case 2:
        if (order % 5 == 0) return {origin, VaultDeposit{seller, seller, amount, UInt256(amount.Low64() * 1'000'000)}};
        return {origin, OrderReleased{UInt256(order), seller, buyer, amount}};
    default:
        if (order % 5 == 0) return {origin, VaultWithdraw{seller, seller, seller, UInt256(amount.Low64() / 2), UInt256(amount.Low64() * 500'000)}};
        return {origin, ReputationChanged{seller, static_cast<uint8_t>(50 + order % 50), static_cast<uint8_t>(51 + order % 49)}};
    }
}

} // namespace bitacora::ledger::testing
