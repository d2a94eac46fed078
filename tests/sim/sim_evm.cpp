#include "tests/sim/sim_evm.h"

#include "indexer/evm/keccak.h"
#include "indexer/evm/platform_events.h"
#include "indexer/evm/verify.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

namespace bitacora::sim {
namespace {

using evm::Address;
using evm::Log;
using nlohmann::json;

// --- JSON text, written by hand: a node's answers are text, and this is the hot path ---

constexpr char kHexDigits[] = "0123456789abcdef";

// Each byte's two hex digits, so that a byte is one lookup.
constexpr std::array<char, 512> kHexPairs = [] {
    std::array<char, 512> out{};
    for (size_t i = 0; i < 256; ++i) {
        out[2 * i] = kHexDigits[i >> 4];
        out[2 * i + 1] = kHexDigits[i & 15];
    }
    return out;
}();

void AppendHex(std::string& out, std::span<const uint8_t> bytes)
{
    const size_t at = out.size();
    out.resize(at + 2 + 2 * bytes.size());
    char* p = out.data() + at;
    *p++ = '0';
    *p++ = 'x';
    for (const uint8_t byte : bytes) {
        std::memcpy(p, &kHexPairs[2 * size_t{byte}], 2);
        p += 2;
    }
}

std::string Hex(std::span<const uint8_t> bytes)
{
    std::string out;
    AppendHex(out, bytes);
    return out;
}

void AppendQuantity(std::string& out, uint64_t value)
{
    char buffer[16];
    size_t n = 0;
    do {
        buffer[n++] = kHexDigits[value & 15];
        value >>= 4;
    } while (value != 0);
    out += "0x";
    while (n > 0) out += buffer[--n];
}

std::string Quantity(uint64_t value)
{
    std::string out;
    AppendQuantity(out, value);
    return out;
}

// `"name":"value"` with a comma before it unless it opens the object.
void Member(std::string& out, std::string_view name, std::string_view value)
{
    if (out.back() != '{') out += ',';
    out += '"';
    out += name;
    out += "\":\"";
    out += value;
    out += '"';
}

void MemberRaw(std::string& out, std::string_view name, std::string_view value)
{
    if (out.back() != '{') out += ',';
    out += '"';
    out += name;
    out += "\":";
    out += value;
}

// Replaces the 0x-hex value of `"name":"0x…"` in a rendered object; false if absent.
bool ReplaceHexMember(std::string& text, std::string_view name, std::string_view value)
{
    const std::string key = fmt::format("\"{}\":\"", name);
    const size_t at = text.find(key);
    if (at == std::string::npos) return false;
    const size_t begin = at + key.size();
    const size_t end = text.find('"', begin);
    if (end == std::string::npos) return false;
    text.replace(begin, end - begin, value);
    return true;
}

// --- the platform's events, by name ---

struct EventRef {
    const evm::EventAbi* abi{nullptr};
    Hash256 topic0{};
};

struct Events {
    EventRef created, confirmed, released, cancelled, expired, disputed, resolved, reputation;
    EventRef deposit, withdraw, transfer;
    Hash256 raw_topic0{};   // an escrow event the ledger does not know
    Hash256 erc20_transfer{};
};

const Events& PlatformTopics()
{
    static const Events events = [] {
        Events out;
        auto find = [](evm::PlatformContract contract, std::string_view name) {
            for (const auto& event : evm::PlatformEvents()) {
                if (event.contract == contract && event.abi.name == name) return EventRef{&event.abi, event.abi.Topic0()};
            }
            assert(false && "an event of platform_events.cpp is missing");
            return EventRef{};
        };
        using evm::PlatformContract;
        out.created = find(PlatformContract::Escrow, "OrderCreated");
        out.confirmed = find(PlatformContract::Escrow, "PaymentConfirmed");
        out.released = find(PlatformContract::Escrow, "OrderReleased");
        out.cancelled = find(PlatformContract::Escrow, "OrderCancelled");
        out.expired = find(PlatformContract::Escrow, "OrderExpired");
        out.disputed = find(PlatformContract::Escrow, "OrderDisputed");
        out.resolved = find(PlatformContract::Escrow, "DisputeResolved");
        out.reputation = find(PlatformContract::Escrow, "ReputationChanged");
        out.deposit = find(PlatformContract::Vault, "Deposit");
        out.withdraw = find(PlatformContract::Vault, "Withdraw");
        out.transfer = find(PlatformContract::Vault, "Transfer");
        out.raw_topic0 = evm::Keccak(std::string_view("SimulatedFeeChanged(uint256)"));
        out.erc20_transfer = evm::Keccak(std::string_view("Transfer(address,address,uint256)"));
        return out;
    }();
    return events;
}

Hash256 Word(uint64_t value)
{
    Hash256 out{};
    for (int i = 0; i < 8; ++i) out[31 - i] = static_cast<uint8_t>(value >> (8 * i));
    return out;
}

Hash256 Word(const Address& address)
{
    Hash256 out{};
    std::copy(address.begin(), address.end(), out.begin() + 12);
    return out;
}

uint64_t WordU64(const uint8_t* w)
{
    uint64_t out = 0;
    for (int i = 24; i < 32; ++i) out = (out << 8) | w[i];
    return out;
}

Address WordAddress(const uint8_t* w)
{
    Address out{};
    std::copy_n(w + 12, 20, out.begin());
    return out;
}

// The i-th parameter's word of a log of `abi`: topics for indexed ones, data for the rest.
const uint8_t* Param(const evm::EventAbi& abi, const Log& log, size_t index)
{
    size_t topic = 1;
    size_t word = 0;
    for (size_t i = 0; i < index; ++i) (abi.params[i].indexed ? topic : word) += 1;
    return abi.params[index].indexed ? log.topics[topic].data() : log.data.data() + 32 * word;
}

constexpr std::string_view kEmptyTrieRoot = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421";
constexpr std::string_view kEmptyUnclesHash = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347";
constexpr std::string_view kEmptyRequestsHash = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr std::string_view kSequencerFeeVault = "0x4200000000000000000000000000000000000011";
constexpr uint64_t kBlockGasLimit = 150'000'000;
constexpr uint64_t kDepositGas = 43'887;
constexpr uint64_t kSnapshotEvery = 32; // heights between generator-state snapshots
constexpr size_t kBloomCacheMax = 1u << 16; // remembered items per kind

} // namespace

size_t SimChain::HashKey::operator()(const Hash256& h) const
{
    // Every word: topics of addresses and small numbers are mostly zero bytes.
    uint64_t out = 0;
    for (size_t i = 0; i < h.size(); i += 8) {
        uint64_t word = 0;
        std::memcpy(&word, h.data() + i, sizeof(word));
        out = (out ^ word) * 0x9e3779b97f4a7c15ull;
    }
    return static_cast<size_t>(out ^ (out >> 29));
}

ChainConfig ChainConfig::FromSeed(uint64_t seed, const evm::Address& escrow, const evm::Address& vault)
{
    Prng prng(seed ^ 0xc0ffee);
    ChainConfig out;
    out.seed = seed;
    out.escrow = escrow;
    out.vault = vault;
    out.empty_block_probability = 0.1 + 0.5 * prng.Unit();
    out.token_log_probability = 0.3 * prng.Unit();
    out.raw_log_probability = 0.03 * prng.Unit();
    out.users = static_cast<uint32_t>(prng.Between(3, 24));
    out.safe_lag = prng.Between(0, 8);
    out.finalized_lag = out.safe_lag + prng.Between(2, 48);
    out.safe_step_probability = 0.3 + 0.7 * prng.Unit();
    out.finalized_step_probability = 0.05 + 0.45 * prng.Unit();
    return out;
}

// A block being made: its header fields, transactions and logs, then sealed.
struct SimChain::Builder {
    SimBlock block;
    Hash256 state_root{};
    Hash256 mix_hash{};
    Hash256 beacon_root{};

    SimTx& BeginTx(Prng& prng, const Address& from, const Address& to, uint8_t type = 2)
    {
        SimTx& tx = block.txs.emplace_back();
        tx.hash = prng.Hash();
        tx.type = type;
        tx.from = from;
        tx.to = to;
        tx.logs_begin = tx.logs_end = static_cast<uint32_t>(block.logs.size());
        return tx;
    }
    void EndTx(Prng& prng)
    {
        SimTx& tx = block.txs.back();
        tx.logs_end = static_cast<uint32_t>(block.logs.size());
        tx.gas_used = tx.type == 0x7e ? kDepositGas : prng.Between(30'000, 40'000 + 25'000 * (tx.logs_end - tx.logs_begin));
        block.gas_used += tx.gas_used;
        tx.cumulative_gas_used = block.gas_used;
    }
    // A log of the event with these parameter values (words), in declaration order; an
    // event without an ABI gets topic0 only (the caller adds the rest).
    Log& Emit(const Address& address, const EventRef& event, std::initializer_list<Hash256> values)
    {
        assert(event.abi == nullptr ? values.size() == 0 : values.size() == event.abi->params.size());
        Log& log = block.logs.emplace_back();
        log.address = address;
        log.topics.push_back(event.topic0);
        size_t i = 0;
        for (const Hash256& value : values) {
            if (event.abi->params[i++].indexed) log.topics.push_back(value);
            else log.data.insert(log.data.end(), value.begin(), value.end());
        }
        log.block_number = block.number;
        log.tx_hash = block.txs.back().hash;
        log.log_index = static_cast<uint32_t>(block.logs.size() - 1);
        block.log_tx.push_back(static_cast<uint32_t>(block.txs.size() - 1));
        return log;
    }
};

SimChain::SimChain(ChainConfig config) : m_config(config), m_prng(config.seed)
{
    if (m_config.users < 2) m_config.users = 2;
    m_blocks.reserve(1'024);
    m_by_hash.reserve(1'024);
    Prng names = m_prng.Fork();
    for (uint32_t i = 0; i < m_config.users; ++i) m_users.push_back(names.Bytes<20>());
    m_arbiter = names.Bytes<20>();
    if (m_config.token == Address{}) m_config.token = names.Bytes<20>();
    m_state.shares.assign(m_users.size(), 0);
    m_state.reputation.assign(m_users.size(), 50);
    Builder genesis;
    genesis.block.timestamp = m_config.genesis_timestamp;
    Seal(genesis);
}

uint32_t SimChain::UserIndex(const Address& address) const
{
    for (size_t i = 0; i < m_users.size(); ++i) {
        if (m_users[i] == address) return static_cast<uint32_t>(i);
    }
    return static_cast<uint32_t>(m_users.size());
}

// The generator's view of the contracts follows the logs, so that a replay of the
// canonical chain after a reorg gives the state at the fork.
void SimChain::Apply(State& state, const Log& log) const
{
    const Events& ev = PlatformTopics();
    const Hash256& topic0 = log.topics.at(0);
    auto order = [&](const EventRef& event) -> Order* {
        const uint64_t id = WordU64(Param(*event.abi, log, 0));
        for (auto& o : state.open) {
            if (o.id == id) return &o;
        }
        return nullptr;
    };
    auto close = [&](const EventRef& event) {
        const uint64_t id = WordU64(Param(*event.abi, log, 0));
        std::erase_if(state.open, [&](const Order& o) { return o.id == id; });
    };
    if (log.address == m_config.escrow) {
        if (topic0 == ev.created.topic0) {
            const auto& abi = *ev.created.abi;
            state.open.push_back({WordU64(Param(abi, log, 0)), UserIndex(WordAddress(Param(abi, log, 1))),
                                  UserIndex(WordAddress(Param(abi, log, 2))), WordU64(Param(abi, log, 3)),
                                  WordU64(Param(abi, log, 4)), 0});
            state.next_order_id = WordU64(Param(abi, log, 0)) + 1;
        } else if (topic0 == ev.confirmed.topic0) {
            if (Order* o = order(ev.confirmed)) o->status = 1;
        } else if (topic0 == ev.disputed.topic0) {
            if (Order* o = order(ev.disputed)) o->status = 2;
        } else if (topic0 == ev.released.topic0) {
            close(ev.released);
        } else if (topic0 == ev.cancelled.topic0) {
            close(ev.cancelled);
        } else if (topic0 == ev.expired.topic0) {
            close(ev.expired);
        } else if (topic0 == ev.resolved.topic0) {
            close(ev.resolved);
        } else if (topic0 == ev.reputation.topic0) {
            const uint32_t seller = UserIndex(WordAddress(Param(*ev.reputation.abi, log, 0)));
            if (seller < state.reputation.size()) state.reputation[seller] = Param(*ev.reputation.abi, log, 2)[31];
        }
    } else if (log.address == m_config.vault && topic0 == ev.transfer.topic0) {
        const auto& abi = *ev.transfer.abi;
        const uint32_t from = UserIndex(WordAddress(Param(abi, log, 0)));
        const uint32_t to = UserIndex(WordAddress(Param(abi, log, 1)));
        const uint64_t value = WordU64(Param(abi, log, 2));
        if (from < state.shares.size()) state.shares[from] -= std::min(state.shares[from], value);
        if (to < state.shares.size()) state.shares[to] += value;
    }
}

void SimChain::RebuildState()
{
    // From the last snapshot below the fork, then the canonical logs after it.
    uint64_t start = 0;
    m_state = State{};
    m_state.shares.assign(m_users.size(), 0);
    m_state.reputation.assign(m_users.size(), 50);
    for (uint64_t h = (Head() / kSnapshotEvery) * kSnapshotEvery; h > 0; h -= kSnapshotEvery) {
        if (auto it = m_snapshots.find(m_canonical[h]); it != m_snapshots.end()) {
            m_state = it->second;
            start = h + 1;
            break;
        }
    }
    for (uint64_t h = std::max<uint64_t>(start, 1); h <= Head(); ++h) {
        for (const Log& log : m_blocks[m_canonical[h]].logs) Apply(m_state, log);
    }
}

SimChain::Order* SimChain::PickOrder(uint8_t status, uint64_t expired_before)
{
    auto& open = m_state.open;
    if (open.empty()) return nullptr;
    const size_t start = m_prng.Below(open.size());
    for (size_t k = 0; k < open.size(); ++k) {
        Order& o = open[(start + k) % open.size()];
        if (o.status == status && (expired_before == 0 || o.expiry < expired_before)) return &o;
    }
    return nullptr;
}

uint32_t SimChain::OtherUser(uint32_t user)
{
    const uint32_t users = static_cast<uint32_t>(m_users.size());
    return (user + 1 + static_cast<uint32_t>(m_prng.Below(users - 1))) % users;
}

std::optional<uint32_t> SimChain::Holder()
{
    const uint32_t users = static_cast<uint32_t>(m_users.size());
    const uint32_t start = static_cast<uint32_t>(m_prng.Below(users));
    for (uint32_t k = 0; k < users; ++k) {
        if (m_state.shares[(start + k) % users] > 0) return (start + k) % users;
    }
    return std::nullopt;
}

// Kinds 0-14 of AddAction: an order's life. false: no order is in the state it needs.
bool SimChain::EscrowAction(Builder& b, uint64_t kind, uint32_t logs_left)
{
    const Events& ev = PlatformTopics();
    const Address& escrow = m_config.escrow;
    const uint64_t now = b.block.timestamp;
    auto emit = [&](const EventRef& event, std::initializer_list<Hash256> values) { Apply(m_state, b.Emit(escrow, event, values)); };
    auto user = [&](uint32_t index) { return Word(m_users[index]); };
    // With as many orders open as allowed, a new one gives way to a resolution.
    if (kind <= 3 && m_state.open.size() >= m_config.open_orders_max) kind = 13;
    if (kind <= 3) {
        const uint32_t seller = static_cast<uint32_t>(m_prng.Below(m_users.size()));
        const uint32_t buyer = OtherUser(seller);
        const uint64_t amount = m_prng.Between(1, 5'000) * 1'000'000 + m_prng.Below(1'000'000);
        b.BeginTx(m_prng, m_users[seller], escrow);
        emit(ev.created, {Word(m_state.next_order_id), user(seller), user(buyer), Word(amount), Word(now + m_prng.Between(60, 1'800))});
        return true;
    }
    // 4-8 need a created order (8 an expired one), 9-12 a paid one, 13-14 a disputed one.
    const Order* o = PickOrder(kind <= 8 ? 0 : kind <= 12 ? 1 : 2, kind == 8 ? now : 0);
    if (o == nullptr) return false;
    const Order order = *o; // Apply may move it
    if (kind <= 6) {
        b.BeginTx(m_prng, m_users[order.buyer], escrow);
        emit(ev.confirmed, {Word(order.id), user(order.buyer), m_prng.Hash()});
    } else if (kind == 7) {
        b.BeginTx(m_prng, m_users[order.seller], escrow);
        emit(ev.cancelled, {Word(order.id), user(order.seller), Word(order.amount)});
    } else if (kind == 8) {
        const uint32_t caller = static_cast<uint32_t>(m_prng.Below(m_users.size()));
        b.BeginTx(m_prng, m_users[caller], escrow);
        emit(ev.expired, {Word(order.id), user(order.seller), user(caller), Word(order.amount)});
    } else if (kind <= 11) {
        b.BeginTx(m_prng, m_users[order.seller], escrow);
        emit(ev.released, {Word(order.id), user(order.seller), user(order.buyer), Word(order.amount)});
        const uint8_t previous = m_state.reputation[order.seller];
        if (logs_left >= 2 && previous < 100) emit(ev.reputation, {user(order.seller), Word(previous), Word(previous + 1u)});
    } else if (kind == 12) {
        const bool by_buyer = m_prng.Chance(0.5);
        const uint32_t by = by_buyer ? order.buyer : order.seller;
        b.BeginTx(m_prng, m_users[by], escrow);
        emit(ev.disputed, {Word(order.id), user(by), Word(by_buyer ? 1u : 0u)});
    } else {
        const bool favor_buyer = m_prng.Chance(0.5);
        b.BeginTx(m_prng, m_arbiter, escrow);
        emit(ev.resolved, {Word(order.id), Word(m_arbiter), Word(favor_buyer ? 1u : 0u),
                           user(favor_buyer ? order.buyer : order.seller), Word(order.amount)});
    }
    return true;
}

// Kinds 15-19 of AddAction: ERC-4626 deposits and withdrawals (their Transfer, then the
// event), and share transfers. false: nothing fits.
bool SimChain::VaultAction(Builder& b, uint64_t kind, uint32_t logs_left)
{
    const Events& ev = PlatformTopics();
    const Address& vault = m_config.vault;
    auto emit = [&](const EventRef& event, std::initializer_list<Hash256> values) { Apply(m_state, b.Emit(vault, event, values)); };
    auto user = [&](uint32_t index) { return Word(m_users[index]); };
    if (kind <= 16) {
        if (logs_left < 2) return false;
        const uint32_t owner = static_cast<uint32_t>(m_prng.Below(m_users.size()));
        const uint64_t assets = m_prng.Between(1, 10'000) * 1'000'000;
        const uint64_t shares = assets / 1'000 * 999;
        b.BeginTx(m_prng, m_users[owner], vault);
        emit(ev.transfer, {Word(Address{}), user(owner), Word(shares)});
        emit(ev.deposit, {user(owner), user(owner), Word(assets), Word(shares)});
        return true;
    }
    // (The draws in the order they were first written: a seed keeps its chain.)
    if (kind == 17 && logs_left < 2) return false;
    const auto owner = Holder();
    if (!owner) return false;
    if (kind == 17) {
        const uint64_t shares = m_prng.Between(1, m_state.shares[*owner]);
        b.BeginTx(m_prng, m_users[*owner], vault);
        emit(ev.transfer, {user(*owner), Word(Address{}), Word(shares)});
        emit(ev.withdraw, {user(*owner), user(*owner), user(*owner), Word(shares / 999 * 1'000 + shares % 999), Word(shares)});
        return true;
    }
    const uint32_t to = OtherUser(*owner);
    b.BeginTx(m_prng, m_users[*owner], vault);
    emit(ev.transfer, {user(*owner), user(to), Word(m_prng.Between(1, m_state.shares[*owner]))});
    return true;
}

// One transaction of the platform: 1 or 2 logs (at most `logs_left`), always one that the
// contracts could have emitted in this state. Returns the logs added (0: none fits).
uint32_t SimChain::AddAction(Builder& b, uint32_t logs_left)
{
    const size_t before = b.block.logs.size();
    if (m_prng.Chance(m_config.raw_log_probability)) {
        b.BeginTx(m_prng, m_arbiter, m_config.escrow);
        Log& log = b.Emit(m_config.escrow, EventRef{nullptr, PlatformTopics().raw_topic0}, {});
        const Hash256 fee = Word(m_prng.Below(1000));
        log.data.assign(fee.begin(), fee.end());
    } else {
        // Weights out of 20: create 4, confirm 3, cancel 1, expire 1, release 3, dispute 1,
        // resolve 2, deposit 2, withdraw 1, transfer 2; a kind that cannot happen creates.
        const uint64_t kind = m_prng.Below(20);
        const bool done = kind <= 14 ? EscrowAction(b, kind, logs_left) : VaultAction(b, kind, logs_left);
        if (!done && !EscrowAction(b, 0, logs_left)) return 0;
    }
    b.EndTx(m_prng);
    return static_cast<uint32_t>(b.block.logs.size() - before);
}

void SimChain::FillBlock(Builder& b)
{
    // Every OP-stack block opens with the L1-attributes deposit (no logs).
    static const Address depositor = [] {
        Address a{};
        std::fill(a.begin(), a.end(), uint8_t{0xde});
        a[19] = 0x01;
        return a;
    }();
    static const Address l1_block = [] {
        Address a{};
        a[0] = 0x42;
        a[19] = 0x15;
        return a;
    }();
    b.BeginTx(m_prng, depositor, l1_block, 0x7e);
    b.EndTx(m_prng);
    const uint32_t target = m_prng.Chance(m_config.empty_block_probability)
                                ? 0 : static_cast<uint32_t>(m_prng.Between(1, std::max(1u, m_config.logs_per_block_max)));
    if (target > 0 && m_prng.Chance(m_config.token_log_probability)) {
        const Events& ev = PlatformTopics();
        const uint32_t from = static_cast<uint32_t>(m_prng.Below(m_users.size()));
        b.BeginTx(m_prng, m_users[from], m_config.token);
        Log& log = b.Emit(m_config.token, EventRef{nullptr, ev.erc20_transfer}, {});
        log.topics.push_back(Word(m_users[from]));
        log.topics.push_back(Word(m_config.escrow)); // into the escrow: a bloom hit for a watched address
        const Hash256 value = Word(m_prng.Between(1, 1'000) * 1'000'000);
        log.data.assign(value.begin(), value.end());
        b.EndTx(m_prng);
    }
    while (b.block.logs.size() < target) {
        if (AddAction(b, target - static_cast<uint32_t>(b.block.logs.size())) == 0) break;
    }
}

namespace {

void MemberHex(std::string& out, std::string_view name, std::span<const uint8_t> bytes)
{
    out += ",\"";
    out += name;
    out += "\":\"";
    AppendHex(out, bytes);
    out += '"';
}

void MemberQuantity(std::string& out, std::string_view name, uint64_t value)
{
    out += ",\"";
    out += name;
    out += "\":\"";
    AppendQuantity(out, value);
    out += '"';
}

void AppendLog(std::string& out, const SimBlock& block, size_t i)
{
    const Log& log = block.logs[i];
    out += "{\"address\":\"";
    AppendHex(out, log.address);
    out += "\",\"topics\":[";
    for (size_t t = 0; t < log.topics.size(); ++t) {
        out += t > 0 ? ",\"" : "\"";
        AppendHex(out, log.topics[t]);
        out += '"';
    }
    out += ']';
    MemberHex(out, "data", log.data);
    MemberQuantity(out, "blockNumber", block.number);
    MemberHex(out, "blockHash", block.hash);
    MemberQuantity(out, "blockTimestamp", block.timestamp);
    MemberHex(out, "transactionHash", log.tx_hash);
    MemberQuantity(out, "transactionIndex", block.log_tx[i]);
    MemberQuantity(out, "logIndex", log.log_index);
    out += ",\"removed\":false}";
}

// The consensus fields, in the order HeaderHashFromFields asks for them.
enum Field : uint8_t {
    kParentHash, kSha3Uncles, kMiner, kStateRoot, kTransactionsRoot, kReceiptsRoot, kLogsBloom, kDifficulty, kNumber,
    kGasLimit, kGasUsed, kTimestamp, kExtraData, kMixHash, kNonce, kBaseFee, kWithdrawalsRoot, kBlobGasUsed,
    kExcessBlobGas, kBeaconRoot, kRequestsHash, kFieldCount,
};
constexpr std::string_view kFieldNames[kFieldCount] = {
    "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot", "logsBloom", "difficulty",
    "number", "gasLimit", "gasUsed", "timestamp", "extraData", "mixHash", "nonce", "baseFeePerGas", "withdrawalsRoot",
    "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot", "requestsHash",
};

// A block's JSON as it is written: where each consensus field's value is, for the hash.
struct HeaderText {
    std::string& out;
    std::array<std::pair<size_t, size_t>, kFieldCount> spans{};
    size_t cursor{0};

    void Text(Field field, std::string_view value)
    {
        Open(field);
        out += value;
        Close(field);
    }
    void HexValue(Field field, std::span<const uint8_t> bytes)
    {
        Open(field);
        AppendHex(out, bytes);
        Close(field);
    }
    void QuantityValue(Field field, uint64_t value)
    {
        Open(field);
        AppendQuantity(out, value);
        Close(field);
    }
    std::optional<std::string_view> Find(std::string_view name)
    {
        for (size_t k = 0; k < kFieldCount; ++k, cursor = (cursor + 1) % kFieldCount) {
            if (kFieldNames[cursor] == name) {
                return std::string_view(out).substr(spans[cursor].first, spans[cursor].second - spans[cursor].first);
            }
        }
        return std::nullopt;
    }

private:
    void Open(Field field)
    {
        out += out.back() == '{' ? "\"" : ",\"";
        out += kFieldNames[field];
        out += "\":\"";
        spans[field].first = out.size();
    }
    void Close(Field field)
    {
        spans[field].second = out.size();
        out += '"';
    }
};

} // namespace

std::string_view SimBlock::LogJson(size_t i) const
{
    if (log_json_end.size() != logs.size()) { // written when first asked for
        logs_json.reserve(logs.size() * 700);
        for (size_t k = 0; k < logs.size(); ++k) {
            AppendLog(logs_json, *this, k);
            log_json_end.push_back(static_cast<uint32_t>(logs_json.size()));
        }
    }
    const size_t begin = i == 0 ? 0 : log_json_end[i - 1];
    return std::string_view(logs_json).substr(begin, log_json_end[i] - begin);
}

void SimChain::AddToBloom(evm::Bloom& bloom, std::span<const uint8_t> item)
{
    Hash256 key{};
    std::copy(item.begin(), item.end(), key.begin());
    auto& cache = m_bloom_bits[item.size() == 32 ? 1 : 0];
    auto it = cache.find(key);
    if (it == cache.end()) {
        if (cache.size() >= kBloomCacheMax) cache.clear();
        // The project's own BloomAdd decides the bits; they are only remembered here.
        evm::Bloom alone{};
        evm::BloomAdd(alone, item);
        BloomBits bits;
        for (size_t i = 0; i < alone.size() && bits.count < 3; ++i) {
            if (alone[i] == 0) continue;
            bits.index[bits.count] = static_cast<uint8_t>(i);
            bits.mask[bits.count++] = alone[i];
        }
        it = cache.emplace(key, bits).first;
    }
    for (uint8_t k = 0; k < it->second.count; ++k) bloom[it->second.index[k]] |= it->second.mask[k];
}

// The block's logsBloom and, with receipts, its receiptsRoot.
void SimChain::Commit(Builder& b)
{
    SimBlock& block = b.block;
    std::vector<evm::Receipt> receipts;
    for (const SimTx& tx : block.txs) {
        evm::Bloom bloom{};
        for (uint32_t i = tx.logs_begin; i < tx.logs_end; ++i) {
            AddToBloom(bloom, block.logs[i].address);
            for (const Hash256& topic : block.logs[i].topics) AddToBloom(bloom, topic);
        }
        for (size_t i = 0; i < bloom.size(); ++i) block.logs_bloom[i] |= bloom[i];
        if (!m_config.receipts) continue;
        evm::Receipt& r = receipts.emplace_back();
        r.type = tx.type;
        r.status = true;
        r.cumulative_gas_used = tx.cumulative_gas_used;
        r.logs.assign(block.logs.begin() + tx.logs_begin, block.logs.begin() + tx.logs_end);
        r.logs_bloom = bloom;
        r.tx_hash = tx.hash;
        if (tx.type == 0x7e) {
            r.deposit_nonce = block.number;
            r.deposit_receipt_version = 1;
        }
    }
    block.receipts_root = m_config.receipts || block.txs.empty() ? evm::ReceiptsRoot(receipts) : m_prng.Hash();
}

void SimChain::Seal(Builder& b)
{
    Commit(b);
    SimBlock& block = b.block;
    // Not a trie of real transactions (there are none to check it against): a commitment.
    const std::string tx_root = block.txs.empty() ? std::string(kEmptyTrieRoot) : Hex(m_prng.Hash());

    // The JSON first, in a node's key order; the hash over its fields; then the hash in it.
    std::string& out = block.json;
    out.reserve(2'200 + 70 * block.txs.size());
    out += '{';
    HeaderText h{out};
    h.QuantityValue(kBaseFee, block.base_fee);
    h.Text(kBlobGasUsed, "0x0");
    h.Text(kDifficulty, "0x0");
    h.Text(kExcessBlobGas, "0x0");
    h.Text(kExtraData, "0x");
    h.QuantityValue(kGasLimit, kBlockGasLimit);
    h.QuantityValue(kGasUsed, block.gas_used);
    const size_t hash_at = out.size();
    h.HexValue(kLogsBloom, block.logs_bloom);
    h.Text(kMiner, kSequencerFeeVault);
    h.HexValue(kMixHash, b.mix_hash);
    h.Text(kNonce, "0x0000000000000000");
    h.QuantityValue(kNumber, block.number);
    h.HexValue(kBeaconRoot, b.beacon_root);
    h.HexValue(kParentHash, block.parent_hash);
    h.HexValue(kReceiptsRoot, block.receipts_root);
    h.Text(kRequestsHash, kEmptyRequestsHash);
    h.Text(kSha3Uncles, kEmptyUnclesHash);
    MemberQuantity(out, "size", 600 + 160 * block.txs.size());
    h.HexValue(kStateRoot, b.state_root);
    h.QuantityValue(kTimestamp, block.timestamp);
    out += ",\"totalDifficulty\":\"0x0\",\"transactions\":[";
    for (size_t i = 0; i < block.txs.size(); ++i) {
        out += i == 0 ? "\"" : ",\"";
        AppendHex(out, block.txs[i].hash);
        out += '"';
    }
    out += ']';
    h.Text(kTransactionsRoot, tx_root);
    out += ",\"uncles\":[],\"withdrawals\":[]";
    h.Text(kWithdrawalsRoot, kEmptyTrieRoot);
    out += '}';
    auto hash = evm::HeaderHashFromFields([&](std::string_view name) { return h.Find(name); });
    assert(hash.ok());
    block.hash = *hash;
    std::string hash_member;
    MemberHex(hash_member, "hash", block.hash);
    out.insert(hash_at, hash_member);

    for (Log& log : block.logs) log.block_hash = block.hash;

    const uint32_t index = static_cast<uint32_t>(m_blocks.size());
    m_by_hash.emplace(block.hash, index);
    m_blocks.push_back(std::move(block));
    m_canonical.push_back(index);
}

void SimChain::MineOne()
{
    const SimBlock& parent = HeadBlock();
    Builder b;
    b.block.txs.reserve(m_config.logs_per_block_max + 2);
    b.block.logs.reserve(m_config.logs_per_block_max + 1);
    b.block.log_tx.reserve(m_config.logs_per_block_max + 1);
    b.block.number = parent.number + 1;
    b.block.parent_hash = parent.hash;
    b.block.timestamp = m_config.genesis_timestamp + b.block.number * m_config.block_time_s;
    // EIP-1559 moves the base fee by at most 1/8 a block.
    b.block.base_fee = std::max<uint64_t>(1'000, parent.base_fee + parent.base_fee / 8 - m_prng.Below(parent.base_fee / 4 + 1));
    b.state_root = m_prng.Hash();
    b.mix_hash = m_prng.Hash();
    b.beacon_root = m_prng.Hash();
    FillBlock(b);
    Seal(b);
    if (Head() % kSnapshotEvery == 0) m_snapshots[m_canonical.back()] = m_state;
}

void SimChain::AdvanceTags()
{
    const uint64_t head = Head();
    if (m_prng.Chance(m_config.safe_step_probability)) m_safe = std::max(m_safe, head - std::min(head, m_config.safe_lag));
    if (m_prng.Chance(m_config.finalized_step_probability)) {
        m_finalized = std::max(m_finalized, head - std::min(head, m_config.finalized_lag));
    }
    m_safe = std::max(m_safe, m_finalized);
    m_finalized_high = std::max(m_finalized_high, m_finalized);
}

void SimChain::Mine(uint64_t blocks)
{
    for (uint64_t i = 0; i < blocks; ++i) {
        MineOne();
        AdvanceTags();
    }
}

ReorgReport SimChain::Reorg(uint64_t depth, int64_t length_delta, bool below_final)
{
    depth = std::min(depth, Head()); // the genesis block stays
    if (!below_final) depth = std::min(depth, Head() - m_finalized);
    if (depth == 0) return {};
    const uint64_t fork = Head() - depth + 1;
    const int64_t count = std::max<int64_t>(1, static_cast<int64_t>(depth) + length_delta);
    ReorgReport report{.fork = fork, .orphaned = depth, .added = static_cast<uint64_t>(count), .below_final = fork <= m_finalized};
    for (uint64_t h = fork; h <= Head(); ++h) m_orphans.push_back(m_canonical[h]);
    m_canonical.resize(fork);
    RebuildState();
    for (int64_t i = 0; i < count; ++i) MineOne();
    // The tags keep their heights where those still exist; safe falls back to the fork.
    if (report.below_final) {
        m_finality_violated = true;
        m_finalized = std::min(m_finalized, Head());
    }
    if (m_safe >= fork) m_safe = std::max(m_finalized, fork - 1);
    m_safe = std::min(m_safe, Head());
    return report;
}

ReorgReport SimChain::RandomReorg(uint64_t depth_max, bool below_final)
{
    uint64_t depth = m_prng.Between(1, std::max<uint64_t>(1, depth_max));
    if (below_final) depth += Head() - m_finalized; // reach the finalized block
    const int64_t delta = static_cast<int64_t>(m_prng.Below(5)) - 2;
    return Reorg(depth, delta, below_final);
}

const SimBlock* SimChain::BlockByNumber(uint64_t number) const
{
    return number < m_canonical.size() ? &m_blocks[m_canonical[number]] : nullptr;
}

const SimBlock* SimChain::BlockByHash(const Hash256& hash) const
{
    const auto it = m_by_hash.find(hash);
    return it == m_by_hash.end() ? nullptr : &m_blocks[it->second];
}

Hash256 SimChain::CanonicalHash(uint64_t number) const
{
    assert(number <= Head());
    return m_blocks[m_canonical[number]].hash;
}

bool SimChain::IsCanonical(const Hash256& hash) const
{
    const auto it = m_by_hash.find(hash);
    if (it == m_by_hash.end()) return false;
    const uint64_t number = m_blocks[it->second].number;
    return number <= Head() && m_canonical[number] == it->second;
}

std::vector<Log> SimChain::LogsOfCanonicalBlocks(uint64_t from, uint64_t to) const
{
    std::vector<Log> out;
    for (uint64_t n = from; n <= std::min(to, Head()); ++n) {
        for (const Log& log : m_blocks[m_canonical[n]].logs) {
            if (log.address == m_config.escrow || log.address == m_config.vault) out.push_back(log);
        }
    }
    return out;
}

SimChain::LogTail SimChain::CanonicalLogsFrom(uint64_t from, uint64_t to, uint64_t first) const
{
    LogTail out;
    for (uint64_t n = from; n <= std::min(to, Head()); ++n) {
        for (const Log& log : m_blocks[m_canonical[n]].logs) {
            if (log.address != m_config.escrow && log.address != m_config.vault) continue;
            if (out.count++ >= first) out.tail.push_back(log);
        }
    }
    return out;
}

std::vector<Hash256> SimChain::Orphans() const
{
    std::vector<Hash256> out;
    out.reserve(m_orphans.size());
    for (uint32_t index : m_orphans) out.push_back(m_blocks[index].hash);
    return out;
}

evm::BlockHeader SimChain::Header(const SimBlock& block)
{
    return evm::BlockHeader{.number = block.number, .hash = block.hash, .parent_hash = block.parent_hash,
                            .timestamp = block.timestamp, .receipts_root = block.receipts_root,
                            .logs_bloom = block.logs_bloom, .fields_hash = block.hash};
}

std::string SimChain::ReceiptsJson(const SimBlock& block)
{
    std::string out = "[";
    for (size_t t = 0; t < block.txs.size(); ++t) {
        const SimTx& tx = block.txs[t];
        if (t > 0) out += ',';
        out += '{';
        Member(out, "blockHash", Hex(block.hash));
        Member(out, "blockNumber", Quantity(block.number));
        MemberRaw(out, "contractAddress", "null");
        Member(out, "cumulativeGasUsed", Quantity(tx.cumulative_gas_used));
        if (tx.type == 0x7e) {
            Member(out, "depositNonce", Quantity(block.number));
            Member(out, "depositReceiptVersion", "0x1");
        }
        Member(out, "effectiveGasPrice", Quantity(tx.type == 0x7e ? 0 : block.base_fee + 1'000));
        Member(out, "from", Hex(tx.from));
        Member(out, "gasUsed", Quantity(tx.gas_used));
        out += ",\"logs\":[";
        for (uint32_t i = tx.logs_begin; i < tx.logs_end; ++i) {
            if (i > tx.logs_begin) out += ',';
            out += block.LogJson(i);
        }
        out += ']';
        Member(out, "logsBloom", Hex(evm::LogsBloom(std::span<const Log>(block.logs).subspan(tx.logs_begin, tx.logs_end - tx.logs_begin))));
        Member(out, "status", "0x1");
        Member(out, "to", Hex(tx.to));
        Member(out, "transactionHash", Hex(tx.hash));
        Member(out, "transactionIndex", Quantity(t));
        Member(out, "type", Quantity(tx.type));
        out += '}';
    }
    out += ']';
    return out;
}

// --- the provider ---

namespace {

struct LimitSpec {
    LogLimit limit;
    std::string_view name;
    std::string_view phrase; // as in the fixture, lower case
    LimitUnit unit;
    int64_t code;
    uint64_t fixed; // the provider's own number, whatever the configuration says
};

constexpr LimitSpec kLimits[kLogLimitCount] = {
    {LogLimit::None, "none", "", LimitUnit::Blocks, 0, 0},
    {LogLimit::Alchemy, "alchemy", "this block range should work: [", LimitUnit::Blocks, -32602, 0},
    {LogLimit::Infura, "infura", "try with this block range [", LimitUnit::Blocks, -32005, 0},
    {LogLimit::BaseRange, "base-range", "block range too large", LimitUnit::Blocks, -32000, 2'000},
    {LogLimit::BaseNoBackend, "base-no-backend", "no backend is currently healthy to serve traffic", LimitUnit::Blocks, -32011, 0},
    {LogLimit::OptimismRange, "optimism-range", "block range is too large", LimitUnit::Blocks, -32000, 0},
    {LogLimit::OptimismSize, "optimism-size", "backend response too large", LimitUnit::Results, -32000, 0},
    {LogLimit::Coinbase, "coinbase", "please limit the query to at most ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::QuickNode, "quicknode", "limited to a ", LimitUnit::Blocks, -32602, 0},
    {LogLimit::BlockPi, "blockpi", "limited to ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::OneRpcSize, "1rpc-size", "response size should not greater than ", LimitUnit::Bytes, -32000, 0},
    {LogLimit::Geth, "geth", "query returned more than ", LimitUnit::Results, -32005, 0},
    {LogLimit::LlamaRpc, "llamarpc", "query exceeds max results", LimitUnit::Results, -32000, 0},
    {LogLimit::AnkrWide, "ankr-wide", "block range is too wide", LimitUnit::Blocks, -32600, 3'000},
    {LogLimit::AnkrDistance, "ankr-distance", "maximum [from, to] blocks distance: ", LimitUnit::Blocks, -32600, 0},
    {LogLimit::Arbitrum, "arbitrum", "logs matched by query exceeds limit of ", LimitUnit::Results, -32000, 0},
    {LogLimit::Avalanche, "avalanche", "maximum is set to ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Cloudflare, "cloudflare", "max range: ", LimitUnit::Blocks, -32047, 0},
    {LogLimit::Thirdweb, "thirdweb", "maximum allowed number of requested blocks is ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Chainstack, "chainstack", "block range limit exceeded.", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Blast, "blast", "exceeds the range allowed for your plan (", LimitUnit::Blocks, -32000, 0},
    {LogLimit::PublicNode, "publicnode", "maximum block range: ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Hyperliquid, "hyperliquid", "query exceeds max block range ", LimitUnit::Blocks, -32602, 0},
    {LogLimit::Moonriver, "moonriver", "block range is too wide (maximum ", LimitUnit::Blocks, -32603, 0},
    {LogLimit::Aurora, "aurora", "up to a ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Harmony, "harmony", "query must be smaller than size ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Swell, "swell", "block range greater than ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Somnia, "somnia", "block range exceeds ", LimitUnit::Blocks, -32000, 0},
    {LogLimit::Merkle, "merkle", "range is too large, max is ", LimitUnit::Blocks, -32000, 10'000},
};

const LimitSpec& Spec(LogLimit limit)
{
    const auto& spec = kLimits[static_cast<size_t>(limit) % kLogLimitCount];
    assert(spec.limit == limit);
    return spec;
}

// 10000 -> "10,000", as QuickNode writes it.
std::string WithCommas(uint64_t value)
{
    std::string digits = std::to_string(value);
    for (size_t at = digits.size(); at > 3; at -= 3) digits.insert(at - 3, ",");
    return digits;
}

// The error text of a query from..to over the limit L (in the limit's unit).
std::string LimitMessage(LogLimit limit, uint64_t l, uint64_t from, uint64_t to)
{
    const uint64_t asked = to - from + 1;
    const uint64_t last = from + l - 1;
    switch (limit) {
    case LogLimit::None: return "";
    case LogLimit::Alchemy:
        return fmt::format("Log response size exceeded. You can make eth_getLogs requests with up to a {} block range and no "
                           "limit on the response size, or you can request any block range with a cap of 10K logs in the "
                           "response. Based on your parameters and the response size limit, this block range should work: "
                           "[{:#x}, {:#x}]", l, from, last);
    case LogLimit::Infura: return fmt::format("query returned more than 10000 results. Try with this block range [{:#x}, {:#x}].", from, last);
    case LogLimit::BaseRange: return "block range too large";
    case LogLimit::BaseNoBackend: return "no backend is currently healthy to serve traffic";
    case LogLimit::OptimismRange: return "Block range is too large";
    case LogLimit::OptimismSize: return "backend response too large";
    case LogLimit::Coinbase: return fmt::format("please limit the query to at most {} blocks", l + 1);
    case LogLimit::QuickNode: return fmt::format("eth_getLogs is limited to a {} range", WithCommas(l));
    case LogLimit::BlockPi: return fmt::format("eth_getLogs is limited to {} block range", l);
    case LogLimit::OneRpcSize: return fmt::format("response size should not greater than {} bytes", l);
    case LogLimit::Geth: return fmt::format("query returned more than {} results", l);
    case LogLimit::LlamaRpc: return "query exceeds max results";
    case LogLimit::AnkrWide: return "block range is too wide";
    case LogLimit::AnkrDistance: return fmt::format("maximum [from, to] blocks distance: {}", l);
    case LogLimit::Arbitrum: return fmt::format("logs matched by query exceeds limit of {}", l);
    case LogLimit::Avalanche: return fmt::format("requested too many blocks from {} to {}, maximum is set to {}", from, to, l + 1);
    case LogLimit::Cloudflare: return fmt::format("Max range: {}", l + 1);
    case LogLimit::Thirdweb: return fmt::format("Maximum allowed number of requested blocks is {}", l);
    case LogLimit::Chainstack: return "Block range limit exceeded.";
    case LogLimit::Blast: return fmt::format("eth_getLogs block range exceeds the range allowed for your plan ({} > {})", asked, l);
    case LogLimit::PublicNode: return fmt::format("maximum block range: {}", l);
    case LogLimit::Hyperliquid: return fmt::format("query exceeds max block range {}", l);
    case LogLimit::Moonriver: return fmt::format("block range is too wide (maximum {})", l);
    case LogLimit::Aurora: return fmt::format("you can request logs of up to a {} block range", l);
    case LogLimit::Harmony: return fmt::format("query must be smaller than size {}", l);
    case LogLimit::Swell: return fmt::format("block range greater than {} max", l);
    case LogLimit::Somnia: return fmt::format("block range exceeds {}", l);
    case LogLimit::Merkle: return "eth_getLogs range is too large, max is 10k blocks";
    }
    return "";
}

} // namespace

std::string_view LogLimitName(LogLimit limit) { return Spec(limit).name; }
std::string_view LogLimitPhrase(LogLimit limit) { return Spec(limit).phrase; }
LimitUnit LogLimitUnit(LogLimit limit) { return Spec(limit).unit; }

FaultConfig FaultConfig::FromSeed(uint64_t seed, double intensity)
{
    Prng prng(seed ^ 0xfa017);
    auto p = [&](double base) { return intensity * base * (0.25 + 1.5 * prng.Unit()); };
    FaultConfig out;
    out.transport = p(0.02);
    out.http_500 = p(0.02);
    out.rate_limit = p(0.02);
    out.truncated = p(0.01);
    out.too_large = p(0.005);
    out.rpc_error = p(0.02);
    out.wrong_id = p(0.005);
    out.lie_header_hash = p(0.003);
    out.lie_log_block_hash = p(0.01);
    out.lie_header_height = p(0.005);
    out.retry_after_s_max = prng.Between(1, 5);
    return out;
}

ProviderConfig ProviderConfig::FromSeed(uint64_t seed, double fault_intensity)
{
    Prng prng(seed ^ 0x9e0de);
    ProviderConfig out;
    out.seed = seed;
    out.log_limit = static_cast<LogLimit>(prng.Below(kLogLimitCount));
    switch (LogLimitUnit(out.log_limit)) {
    case LimitUnit::Blocks: {
        constexpr uint64_t kTypical[] = {5, 10, 100, 500, 1'000, 2'000, 10'000};
        out.log_limit_value = prng.Chance(0.5) ? kTypical[prng.Below(std::size(kTypical))] : prng.Between(2, 3'000);
        break;
    }
    case LimitUnit::Results: out.log_limit_value = prng.Between(20, 2'000); break;
    case LimitUnit::Bytes: out.log_limit_value = prng.Between(20'000, 1'000'000); break;
    }
    out.faults = FaultConfig::FromSeed(seed, fault_intensity);
    out.shuffle_batches = prng.Chance(0.7);
    out.receipts = prng.Chance(0.8);
    out.orphans_by_hash = prng.Chance(0.5);
    out.latency_ms = prng.Between(1, 200);
    return out;
}

uint64_t ProviderStats::faults() const
{
    return transport + http_500 + rate_limited + truncated + too_large + rpc_errors + wrong_ids + lie_header_hash +
           lie_log_block_hash + lie_header_height;
}

std::string ProviderStats::ToString() const
{
    return fmt::format(
        "http_requests={} batches={} calls={} eth_getBlockByNumber={} eth_getBlockByHash={} eth_getLogs={} "
        "eth_getBlockReceipts={} eth_chainId={} other_methods={} method_not_found={} blocks_served={} logs_served={} "
        "bytes_served={} shuffled_batches={} limit_errors={} over_answer_cap={} faults={} transport={} timeouts={} "
        "http_500={} rate_limited={} truncated={} too_large={} rpc_errors={} wrong_ids={} lie_header_hash={} "
        "lie_log_block_hash={} lie_header_height={}",
        http_requests, batches, calls, get_block_by_number, get_block_by_hash, get_logs, get_block_receipts, chain_id,
        other_methods, method_not_found, blocks_served, logs_served, bytes_served, shuffled_batches, limit_errors,
        over_answer_cap, faults(), transport, timeouts, http_500, rate_limited, truncated, too_large, rpc_errors, wrong_ids,
        lie_header_hash, lie_log_block_hash, lie_header_height);
}

struct SimProvider::Answer {
    std::string result; // JSON text
    bool is_error{false};
    int64_t code{0};
    std::string message;

    static Answer Ok(std::string result) { return Answer{.result = std::move(result)}; }
    static Answer Error(int64_t code, std::string message)
    {
        return Answer{.is_error = true, .code = code, .message = std::move(message)};
    }
};

namespace {

std::optional<uint64_t> ResolveTag(const SimChain& chain, const json& tag)
{
    if (!tag.is_string()) return std::nullopt;
    const std::string& text = tag.get_ref<const std::string&>();
    if (text == "latest" || text == "pending") return chain.Head();
    if (text == "safe") return chain.SafeNumber();
    if (text == "finalized") return chain.FinalizedNumber();
    if (text == "earliest") return 0;
    auto number = evm::ParseQuantity(tag);
    if (!number) return std::nullopt;
    return *number;
}

bool IsHexNumber(const json& tag)
{
    return tag.is_string() && tag.get_ref<const std::string&>().starts_with("0x") && tag.get_ref<const std::string&>().size() < 20;
}

std::string QuantityJson(uint64_t value) { return "\"" + Quantity(value) + "\""; }

// eth_getLogs's "address" (one or a list) and "topics" (per position: any, one, or any of a list).
struct LogFilter {
    std::vector<Address> addresses;
    std::vector<std::vector<Hash256>> topics;

    bool Matches(const Log& log) const
    {
        if (!addresses.empty() && std::find(addresses.begin(), addresses.end(), log.address) == addresses.end()) return false;
        for (size_t i = 0; i < topics.size(); ++i) {
            if (topics[i].empty()) continue;
            if (i >= log.topics.size() || std::find(topics[i].begin(), topics[i].end(), log.topics[i]) == topics[i].end()) return false;
        }
        return true;
    }
};

std::optional<LogFilter> ReadFilter(const json& filter)
{
    LogFilter out;
    auto address = [&](const json& value) {
        Address a{};
        if (!value.is_string() || !HexDecodeExact(value.get_ref<const std::string&>(), a)) return false;
        out.addresses.push_back(a);
        return true;
    };
    if (auto it = filter.find("address"); it != filter.end() && !it->is_null()) {
        if (it->is_array()) {
            for (const auto& value : *it) {
                if (!address(value)) return std::nullopt;
            }
        } else if (!address(*it)) {
            return std::nullopt;
        }
    }
    if (auto it = filter.find("topics"); it != filter.end() && !it->is_null()) {
        if (!it->is_array() || it->size() > 4) return std::nullopt;
        for (const auto& position : *it) {
            auto& any = out.topics.emplace_back();
            for (const auto& topic : position.is_array() ? position : json::array({position})) {
                if (topic.is_null()) continue;
                auto hash = evm::ParseHash(topic);
                if (!hash) return std::nullopt;
                any.push_back(*hash);
            }
        }
    }
    return out;
}

} // namespace

SimProvider::SimProvider(const SimChain& chain, ProviderConfig config, ManualClock* clock)
    : m_chain(chain), m_config(config), m_clock(clock), m_prng(config.seed ^ 0x7072'6f76'6964'6572ull)
{
    const LimitSpec& spec = Spec(m_config.log_limit);
    if (m_config.log_limit == LogLimit::None) {
        m_limit_value = 0;
    } else if (spec.fixed != 0) {
        m_limit_value = spec.fixed;
    } else if (m_config.log_limit == LogLimit::Chainstack) {
        m_limit_value = m_config.log_limit_value >= 10'000 ? 10'000 : 100; // paid or free plan
    } else {
        m_limit_value = m_config.log_limit_value != 0 ? m_config.log_limit_value
                        : spec.unit == LimitUnit::Bytes ? 1'000'000 : 1'000;
    }
}

bool SimProvider::Fault(double probability)
{
    return !m_quiet && m_prng.Chance(probability);
}

std::optional<evm::HttpReply> SimProvider::HttpFault()
{
    const FaultConfig& f = m_config.faults;
    evm::HttpReply reply;
    if (Fault(f.transport)) {
        ++m_stats.transport;
        reply.outcome = evm::HttpReply::Outcome::Transport;
        if (m_prng.Chance(0.5)) {
            ++m_stats.timeouts;
            reply.error = fmt::format("Operation timed out after {} milliseconds with 0 bytes received", f.timeout_ms);
            if (m_clock != nullptr) m_clock->Advance(std::chrono::milliseconds(f.timeout_ms));
        } else {
            constexpr const char* kErrors[] = {"Couldn't connect to server", "Connection reset by peer",
                                               "Server returned nothing (no headers, no data)"};
            reply.error = kErrors[m_prng.Below(std::size(kErrors))];
        }
        return reply;
    }
    if (Fault(f.http_500)) {
        ++m_stats.http_500;
        constexpr std::pair<long, const char*> kStatuses[] = {
            {500, "Internal Server Error"}, {502, "<html><body><h1>502 Bad Gateway</h1></body></html>"},
            {503, "upstream connect error or disconnect/reset before headers"}};
        const auto& [status, text] = kStatuses[m_prng.Below(std::size(kStatuses))];
        reply.status = status;
        reply.body = text;
        return reply;
    }
    if (Fault(f.rate_limit)) {
        ++m_stats.rate_limited;
        reply.status = 429;
        reply.retry_after_s = m_prng.Between(1, std::max<uint64_t>(1, f.retry_after_s_max));
        reply.body = R"({"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"rate limit exceeded"}})";
        return reply;
    }
    return std::nullopt;
}

evm::HttpReply SimProvider::Post(const std::string&, const std::string& body, size_t answer_bytes_max)
{
    ++m_stats.http_requests;
    if (m_clock != nullptr && m_config.latency_ms > 0) m_clock->Advance(std::chrono::milliseconds(m_config.latency_ms));
    if (auto fault = HttpFault()) return std::move(*fault);
    evm::HttpReply reply;
    reply.body = Respond(body);
    const FaultConfig& f = m_config.faults;
    if (!reply.body.empty() && Fault(f.truncated)) {
        ++m_stats.truncated;
        reply.body.resize(m_prng.Below(reply.body.size()));
    } else if (Fault(f.too_large)) {
        ++m_stats.too_large;
        reply.outcome = evm::HttpReply::Outcome::TooLarge;
        reply.body.resize(std::min(reply.body.size(), answer_bytes_max));
    } else if (reply.body.size() > answer_bytes_max) {
        // As curl cuts the transfer off at the cap.
        ++m_stats.over_answer_cap;
        reply.outcome = evm::HttpReply::Outcome::TooLarge;
        reply.body.resize(answer_bytes_max);
    }
    m_stats.bytes_served += reply.body.size();
    return reply;
}

struct SimProvider::RequestParser {
    simdjson::dom::parser parser;
};

namespace {

// A JSON value of a request's params (small and shallow: simdjson bounds the depth).
json ToJson(simdjson::dom::element element)
{
    simdjson::dom::array array;
    simdjson::dom::object object;
    std::string_view text;
    int64_t signed_number = 0;
    uint64_t number = 0;
    double real = 0;
    bool flag = false;
    if (!element.get_array().get(array)) {
        json out = json::array();
        for (auto item : array) out.push_back(ToJson(item));
        return out;
    }
    if (!element.get_object().get(object)) {
        json out = json::object();
        for (auto field : object) out[std::string(field.key)] = ToJson(field.value);
        return out;
    }
    if (!element.get_string().get(text)) return std::string(text);
    if (!element.get_uint64().get(number)) return number; // unsigned when it can be, as nlohmann reads it
    if (!element.get_int64().get(signed_number)) return signed_number;
    if (!element.get_double().get(real)) return real;
    if (!element.get_bool().get(flag)) return flag;
    return nullptr;
}

SimProvider::Call ReadCall(simdjson::dom::element element)
{
    SimProvider::Call call;
    simdjson::dom::object object;
    if (element.get_object().get(object)) return call;
    call.is_object = true;
    simdjson::dom::element id, method, params;
    if (!object["id"].get(id)) {
        call.id = simdjson::minify(id);
        uint64_t number = 0;
        if (id.is_uint64() && !id.get_uint64().get(number)) call.id_number = number;
    }
    std::string_view name;
    if (!object["method"].get(method) && !method.get_string().get(name)) call.method = std::string(name);
    call.params = object["params"].get(params) ? json(nullptr) : ToJson(params);
    return call;
}

} // namespace

std::string SimProvider::Respond(const std::string& body)
{
    if (!m_request_parser) m_request_parser = std::make_shared<RequestParser>();
    simdjson::dom::element request;
    if (m_request_parser->parser.parse(body).get(request)) {
        return R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}})";
    }
    simdjson::dom::array calls;
    if (request.get_array().get(calls)) return AnswerCall(ReadCall(request));
    if (calls.size() == 0) return R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"empty batch"}})";
    ++m_stats.batches;
    std::vector<std::string> answers;
    answers.reserve(calls.size());
    for (auto call : calls) answers.push_back(AnswerCall(ReadCall(call)));
    if (m_config.shuffle_batches && answers.size() > 1 && m_prng.Chance(0.5)) {
        ++m_stats.shuffled_batches;
        for (size_t i = answers.size() - 1; i > 0; --i) std::swap(answers[i], answers[m_prng.Below(i + 1)]);
    }
    size_t size = 2;
    for (const auto& answer : answers) size += answer.size() + 1;
    std::string out;
    out.reserve(size);
    out += '[';
    for (size_t i = 0; i < answers.size(); ++i) {
        if (i > 0) out += ',';
        out += answers[i];
    }
    out += ']';
    return out;
}

SimProvider::Answer SimProvider::RandomRpcError()
{
    // None of them is a range-limit phrase: the follower must back off and ask again.
    constexpr std::pair<int64_t, const char*> kErrors[] = {
        {-32000, "header not found"}, {-32603, "internal error"}, {-32000, "request timed out"},
        {-32005, "rate limit exceeded"}, {-32002, "resource not available: the node is syncing"}};
    const auto& [code, message] = kErrors[m_prng.Below(std::size(kErrors))];
    return Answer::Error(code, message);
}

std::string SimProvider::AnswerCall(const Call& call)
{
    ++m_stats.calls;
    if (!call.is_object) return R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}})";
    std::string id = call.id;
    Answer answer;
    if (!call.method) {
        answer = Answer::Error(-32600, "invalid request");
    } else if (Fault(m_config.faults.rpc_error)) {
        ++m_stats.rpc_errors;
        answer = RandomRpcError();
    } else {
        static const json kNoParams = json::array();
        answer = Dispatch(*call.method, call.params.is_null() ? kNoParams : call.params);
    }
    if (Fault(m_config.faults.wrong_id)) {
        ++m_stats.wrong_ids;
        id = call.id_number ? std::to_string(*call.id_number + 1 + m_prng.Below(7)) : "\"sim-wrong-id\"";
    }
    std::string out;
    out.reserve(answer.result.size() + answer.message.size() + 64);
    out += R"({"jsonrpc":"2.0","id":)";
    out += id;
    if (answer.is_error) {
        out += R"(,"error":{"code":)";
        out += std::to_string(answer.code);
        out += R"(,"message":)";
        out += json(answer.message).dump();
        out += "}}";
    } else {
        out += R"(,"result":)";
        out += answer.result;
        out += '}';
    }
    return out;
}

SimProvider::Answer SimProvider::Dispatch(const std::string& method, const json& params)
{
    if (method == "eth_getBlockByNumber") return GetBlockByNumber(params);
    if (method == "eth_getLogs") return GetLogs(params);
    if (method == "eth_getBlockByHash") return GetBlockByHash(params);
    if (method == "eth_getBlockReceipts" && m_config.receipts && m_chain.config().receipts) return GetBlockReceipts(params);
    if (method == "eth_chainId") {
        ++m_stats.chain_id;
        return Answer::Ok(QuantityJson(m_chain.config().chain_id));
    }
    ++m_stats.other_methods;
    if (method == "eth_blockNumber") return Answer::Ok(QuantityJson(m_chain.Head()));
    if (method == "net_version") return Answer::Ok("\"" + std::to_string(m_chain.config().chain_id) + "\"");
    if (method == "web3_clientVersion") return Answer::Ok("\"op-geth/v1.101500.0-sim/linux-amd64/go1.23\"");
    if (method == "eth_syncing") return Answer::Ok("false");
    ++m_stats.method_not_found;
    return Answer::Error(-32601, fmt::format("the method {} does not exist/is not available", method));
}

std::string SimProvider::BlockJson(const SimBlock& block)
{
    ++m_stats.blocks_served;
    if (!Fault(m_config.faults.lie_header_hash)) return block.json;
    // The hash stays, a committed field changes: CheckHeaderHash must refuse it.
    ++m_stats.lie_header_hash;
    std::string text = block.json;
    const bool replaced = ReplaceHexMember(text, "stateRoot", Hex(m_prng.Hash()));
    assert(replaced);
    static_cast<void>(replaced);
    return text;
}

const SimBlock* SimProvider::ByHash(const json& value) const
{
    Hash256 hash{};
    if (!value.is_string() || !HexDecodeExact(value.get_ref<const std::string&>(), hash)) return nullptr;
    const SimBlock* block = m_chain.BlockByHash(hash);
    if (block != nullptr && !m_config.orphans_by_hash && !m_chain.IsCanonical(hash)) return nullptr;
    return block;
}

SimProvider::Answer SimProvider::GetBlockByNumber(const json& params)
{
    ++m_stats.get_block_by_number;
    if (!params.is_array() || params.empty()) return Answer::Error(-32602, "missing value for required argument 0");
    const auto number = ResolveTag(m_chain, params[0]);
    if (!number) return Answer::Error(-32602, "invalid argument 0: hex string without 0x prefix");
    const SimBlock* block = m_chain.BlockByNumber(*number);
    if (block == nullptr) return Answer::Ok("null");
    // Only for a height asked by number: another height for a tag is indistinguishable
    // from the tag having moved (a lie about finality no check could catch).
    if (IsHexNumber(params[0]) && Fault(m_config.faults.lie_header_height)) {
        const SimBlock* other = m_chain.BlockByNumber(*number + 1);
        if (other == nullptr && *number > 0) other = m_chain.BlockByNumber(*number - 1);
        if (other != nullptr) {
            ++m_stats.lie_header_height;
            block = other;
        }
    }
    return Answer::Ok(BlockJson(*block));
}

SimProvider::Answer SimProvider::GetBlockByHash(const json& params)
{
    ++m_stats.get_block_by_hash;
    if (!params.is_array() || params.empty()) return Answer::Error(-32602, "missing value for required argument 0");
    const SimBlock* block = ByHash(params[0]);
    return Answer::Ok(block == nullptr ? "null" : BlockJson(*block));
}

SimProvider::Answer SimProvider::GetBlockReceipts(const json& params)
{
    ++m_stats.get_block_receipts;
    if (!params.is_array() || params.empty()) return Answer::Error(-32602, "missing value for required argument 0");
    const json& which = params[0];
    const SimBlock* block = nullptr;
    if (which.is_string() && which.get_ref<const std::string&>().size() == 66) {
        block = ByHash(which);
    } else if (auto number = ResolveTag(m_chain, which)) {
        block = m_chain.BlockByNumber(*number);
    } else {
        return Answer::Error(-32602, "invalid argument 0: neither a block hash nor a block number");
    }
    return Answer::Ok(block == nullptr ? "null" : SimChain::ReceiptsJson(*block));
}

SimProvider::Answer SimProvider::LimitError(uint64_t from, uint64_t to)
{
    ++m_stats.limit_errors;
    return Answer::Error(Spec(m_config.log_limit).code, LimitMessage(m_config.log_limit, m_limit_value, from, to));
}

SimProvider::Answer SimProvider::GetLogs(const json& params)
{
    ++m_stats.get_logs;
    if (!params.is_array() || params.empty() || !params[0].is_object()) {
        return Answer::Error(-32602, "invalid argument 0: expected a filter object");
    }
    const json& object = params[0];
    const auto filter = ReadFilter(object);
    if (!filter) return Answer::Error(-32602, "invalid argument 0: malformed address or topics");
    std::vector<std::pair<const SimBlock*, size_t>> hits;
    auto collect = [&](const SimBlock& block) {
        for (size_t i = 0; i < block.logs.size(); ++i) {
            if (filter->Matches(block.logs[i])) hits.emplace_back(&block, i);
        }
    };
    const LimitUnit unit = LogLimitUnit(m_config.log_limit);
    if (auto it = object.find("blockHash"); it != object.end()) {
        if (object.contains("fromBlock") || object.contains("toBlock")) {
            return Answer::Error(-32602, "invalid argument 0: cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other");
        }
        const SimBlock* block = ByHash(*it);
        if (block == nullptr) return Answer::Error(-32000, "unknown block");
        collect(*block);
    } else {
        const auto from = ResolveTag(m_chain, object.value("fromBlock", json("latest")));
        const auto to = ResolveTag(m_chain, object.value("toBlock", json("latest")));
        if (!from || !to) return Answer::Error(-32602, "invalid argument 0: hex string without 0x prefix");
        if (*from > *to) return Answer::Error(-32602, "invalid block range params");
        // As execution-apis specifies (and geth, reth, Nethermind, Besu and Erigon do).
        if (*to > m_chain.Head()) return Answer::Error(-32602, "block range extends beyond current head block");
        if (m_limit_value != 0 && unit == LimitUnit::Blocks && *to - *from + 1 > m_limit_value) return LimitError(*from, *to);
        for (uint64_t n = *from; n <= *to; ++n) {
            collect(*m_chain.BlockByNumber(n));
            if (m_limit_value != 0 && unit == LimitUnit::Results && hits.size() > m_limit_value) return LimitError(*from, *to);
        }
        size_t bytes = 2;
        for (const auto& [block, i] : hits) bytes += block->LogJson(i).size() + 1;
        if (m_limit_value != 0 && unit == LimitUnit::Bytes && bytes > m_limit_value) return LimitError(*from, *to);
    }
    m_stats.logs_served += hits.size();
    // A lie: one log claims another block (its parent, or its child at the genesis).
    size_t lie = hits.size();
    std::string lie_text;
    if (!hits.empty() && Fault(m_config.faults.lie_log_block_hash)) {
        ++m_stats.lie_log_block_hash;
        lie = m_prng.Below(hits.size());
        const SimBlock& block = *hits[lie].first;
        const SimBlock* other = block.number > 0 ? m_chain.BlockByHash(block.parent_hash) : m_chain.BlockByNumber(1);
        lie_text = block.LogJson(hits[lie].second);
        ReplaceHexMember(lie_text, "blockHash", Hex(other != nullptr ? other->hash : m_prng.Hash()));
    }
    std::string out = "[";
    for (size_t k = 0; k < hits.size(); ++k) {
        if (k > 0) out += ',';
        if (k == lie) out += lie_text;
        else out += hits[k].first->LogJson(hits[k].second);
    }
    out += ']';
    return Answer::Ok(std::move(out));
}

} // namespace bitacora::sim
