// The ledger's typed events and their canonical, versioned byte encoding (the Merkle
// leaf bytes). docs/ledger-format.md specifies the encoding for auditors; the tests
// pin it with golden vectors. All integers are big-endian and fixed width; uint256
// amounts and ids are 32 bytes; addresses 20; strings and byte strings carry a length.
#pragma once

#include "common/hex.h"
#include "common/result.h"
#include "common/sha256.h"
#include "common/uint256.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace bitacora::ledger {

using Address = std::array<uint8_t, 20>;

inline constexpr uint8_t kLeafFormatVersion = 1;

// Where an on-chain event came from; part of its leaf, so proofs pin the exact log.
struct EvmOrigin {
    uint64_t chain_id{0};
    uint64_t block_number{0};
    Hash256 block_hash{};
    Hash256 tx_hash{};
    uint32_t log_index{0};
    Address contract{};
    bool operator==(const EvmOrigin&) const = default;
};

// P2PEscrow
struct OrderCreated { UInt256 order_id; Address seller{}; Address buyer{}; UInt256 amount; uint64_t expiry{0}; bool operator==(const OrderCreated&) const = default; };
struct PaymentConfirmed { UInt256 order_id; Address buyer{}; Hash256 payment_proof{}; bool operator==(const PaymentConfirmed&) const = default; };
struct OrderReleased { UInt256 order_id; Address seller{}; Address buyer{}; UInt256 amount; bool operator==(const OrderReleased&) const = default; };
struct OrderCancelled { UInt256 order_id; Address seller{}; UInt256 amount; bool operator==(const OrderCancelled&) const = default; };
struct OrderExpired { UInt256 order_id; Address seller{}; Address caller{}; UInt256 amount; bool operator==(const OrderExpired&) const = default; };
struct OrderDisputed { UInt256 order_id; Address disputed_by{}; bool by_buyer{false}; bool operator==(const OrderDisputed&) const = default; };
struct DisputeResolved { UInt256 order_id; Address arbiter{}; bool favor_buyer{false}; Address recipient{}; UInt256 amount; bool operator==(const DisputeResolved&) const = default; };
struct ReputationChanged { Address seller{}; uint8_t previous{0}; uint8_t current{0}; bool operator==(const ReputationChanged&) const = default; };
struct EscrowPaused { Address account{}; bool paused{true}; bool operator==(const EscrowPaused&) const = default; };
struct RoleChanged { Hash256 role{}; Address account{}; Address sender{}; bool granted{true}; bool operator==(const RoleChanged&) const = default; };
// YieldVault
struct VaultDeposit { Address sender{}; Address owner{}; UInt256 assets; UInt256 shares; bool operator==(const VaultDeposit&) const = default; };
struct VaultWithdraw { Address sender{}; Address receiver{}; Address owner{}; UInt256 assets; UInt256 shares; bool operator==(const VaultWithdraw&) const = default; };
struct VaultTransfer { Address from{}; Address to{}; UInt256 value; bool operator==(const VaultTransfer&) const = default; };
// A log of a watched contract that matches no event the ledger decodes: kept verbatim.
struct RawEvmLog {
    static constexpr size_t kTopicsMax = 4;
    static constexpr size_t kDataMax = 1 << 20;
    std::vector<Hash256> topics;
    Bytes data;
    bool operator==(const RawEvmLog&) const = default;
};
// Submitted by the platform's backend, signed with its BIP-340 key.
struct OffchainEvent {
    std::string kind;            // e.g. "offer.posted", at most 64 bytes
    std::string idempotency_key; // at most 128 bytes; a retry with the same key is not appended again
    Bytes payload;               // canonical JSON from the backend, at most 64 KiB
    std::array<uint8_t, 32> submitter{}; // x-only public key
    std::array<uint8_t, 64> signature{};
    bool operator==(const OffchainEvent&) const = default;
};
// The daemon's own anchoring of the log into Bitcoin.
struct AnchorEvent {
    uint8_t state{0}; // 1 broadcast, 2 confirmed, 3 final, 4 dropped by a reorg
    uint64_t anchored_size{0};
    Hash256 anchored_root{};
    Hash256 txid{};
    uint64_t block_height{0};
    Hash256 block_hash{};
    bool operator==(const AnchorEvent&) const = default;
};

using EventBody = std::variant<OrderCreated, PaymentConfirmed, OrderReleased, OrderCancelled, OrderExpired,
                               OrderDisputed, DisputeResolved, ReputationChanged, EscrowPaused, RoleChanged,
                               VaultDeposit, VaultWithdraw, VaultTransfer, OffchainEvent, AnchorEvent, RawEvmLog>;

// Kind bytes of the encoding; never renumber.
enum class EventKind : uint8_t {
    OrderCreated = 0x01,
    PaymentConfirmed = 0x02,
    OrderReleased = 0x03,
    OrderCancelled = 0x04,
    OrderExpired = 0x05,
    OrderDisputed = 0x06,
    DisputeResolved = 0x07,
    ReputationChanged = 0x08,
    EscrowPaused = 0x09,
    RoleChanged = 0x0a,
    VaultDeposit = 0x10,
    VaultWithdraw = 0x11,
    VaultTransfer = 0x12,
    RawEvmLog = 0x1f,
    Offchain = 0x20,
    Anchor = 0x30,
};

struct Event {
    std::optional<EvmOrigin> origin; // present exactly for on-chain events
    EventBody body;

    EventKind kind() const;
    bool operator==(const Event&) const = default;
};

std::string_view EventKindName(EventKind kind); // "order_created", ...
bool IsOnChain(EventKind kind);

// Canonical leaf bytes: version byte, kind byte, origin (on-chain kinds), body.
Bytes EncodeEvent(const Event& event);
Result<Event> DecodeEvent(std::span<const uint8_t> leaf);

// An event of an unfinalized block has no ledger index yet (and may never get one): it is
// named by its log instead, "pending:0x<block hash>:<log index>", which no final index
// can be mistaken for. The same log keeps the same id until its block is final or gone.
struct PendingId {
    Hash256 block_hash{};
    uint32_t log_index{0};
    bool operator==(const PendingId&) const = default;
};
std::optional<PendingId> PendingIdOf(const Event& event); // on-chain events only
std::string PendingIdText(const PendingId& id);

// The message the backend signs for an off-chain event (BIP-340 over this 32-byte hash).
Hash256 OffchainSigningHash(const OffchainEvent& event);

} // namespace bitacora::ledger
