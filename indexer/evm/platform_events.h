// The events of the platform's contracts (contracts/src) that the indexer decodes.
// Written out here rather than generated, and checked against the compiled ABI by
// tests/unit/test_platform_abi.cpp: the ABI is the contract between the two folders.
#pragma once

#include "indexer/evm/abi.h"

#include <string_view>
#include <vector>

namespace bitacora::evm {

enum class PlatformContract { Escrow, Vault };

struct PlatformEvent {
    PlatformContract contract;
    EventAbi abi;
};

std::string_view ContractName(PlatformContract contract); // "P2PEscrow", "YieldVault"

const std::vector<PlatformEvent>& PlatformEvents();

// Events of a contract's ABI that the ledger deliberately does not record (their logs
// still reach the raw-log counter); anything else in the ABI must be decoded.
const std::vector<std::string_view>& IgnoredEvents(PlatformContract contract);

} // namespace bitacora::evm
