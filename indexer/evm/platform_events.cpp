#include "indexer/evm/platform_events.h"

#include <cstdlib>
#include <cstdio>

namespace bitacora::evm {
namespace {

struct Definition {
    PlatformContract contract;
    const char* signature;
};

// Parameter names matter: the ledger's canonical encoding and the API use them.
constexpr Definition kDefinitions[] = {
    {PlatformContract::Escrow, "OrderCreated(uint256 indexed orderId, address indexed seller, address indexed buyer, "
                               "uint256 amount, uint64 expiry)"},
    {PlatformContract::Escrow, "PaymentConfirmed(uint256 indexed orderId, address indexed buyer, bytes32 paymentProof)"},
    {PlatformContract::Escrow, "OrderReleased(uint256 indexed orderId, address indexed seller, address indexed buyer, "
                               "uint256 amount)"},
    {PlatformContract::Escrow, "OrderCancelled(uint256 indexed orderId, address indexed seller, uint256 amount)"},
    {PlatformContract::Escrow, "OrderExpired(uint256 indexed orderId, address indexed seller, address caller, "
                               "uint256 amount)"},
    {PlatformContract::Escrow, "OrderDisputed(uint256 indexed orderId, address indexed disputedBy, bool byBuyer)"},
    {PlatformContract::Escrow, "DisputeResolved(uint256 indexed orderId, address indexed arbiter, bool favorBuyer, "
                               "address recipient, uint256 amount)"},
    {PlatformContract::Escrow, "ReputationChanged(address indexed seller, uint8 previous, uint8 current)"},
    {PlatformContract::Escrow, "Paused(address account)"},
    {PlatformContract::Escrow, "Unpaused(address account)"},
    {PlatformContract::Escrow, "RoleGranted(bytes32 indexed role, address indexed account, address indexed sender)"},
    {PlatformContract::Escrow, "RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender)"},
    {PlatformContract::Escrow, "RoleAdminChanged(bytes32 indexed role, bytes32 indexed previousAdminRole, "
                               "bytes32 indexed newAdminRole)"},
    {PlatformContract::Vault, "Deposit(address indexed sender, address indexed owner, uint256 assets, uint256 shares)"},
    {PlatformContract::Vault, "Withdraw(address indexed sender, address indexed receiver, address indexed owner, "
                              "uint256 assets, uint256 shares)"},
    {PlatformContract::Vault, "Transfer(address indexed from, address indexed to, uint256 value)"},
};

} // namespace

std::string_view ContractName(PlatformContract contract)
{
    switch (contract) {
    case PlatformContract::Escrow: return "P2PEscrow";
    case PlatformContract::Vault: return "YieldVault";
    }
    return "?";
}

const std::vector<PlatformEvent>& PlatformEvents()
{
    static const std::vector<PlatformEvent> events = [] {
        std::vector<PlatformEvent> out;
        for (const auto& definition : kDefinitions) {
            auto abi = EventAbi::Parse(definition.signature);
            if (!abi) {
                // A typo in the table above: a programming error, caught by every test run.
                std::fprintf(stderr, "bad platform event '%s': %s\n", definition.signature, abi.error().c_str());
                std::abort();
            }
            out.push_back({definition.contract, std::move(abi.value())});
        }
        return out;
    }();
    return events;
}

const std::vector<std::string_view>& IgnoredEvents(PlatformContract contract)
{
    // Share allowances change no position; the escrow has no event the ledger skips.
    static const std::vector<std::string_view> vault{"Approval"};
    static const std::vector<std::string_view> none{};
    return contract == PlatformContract::Vault ? vault : none;
}

} // namespace bitacora::evm
