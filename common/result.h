// The one error type of the code base, and Result<T, E>: a value or an error.
// (std::expected is C++23; assertions are never used to validate input.)
//
// Every error has a kind (ErrorKind) and a message for people. A caller that acts on what
// failed reads the kind, never the words of the message. Error is the error of our own
// layers; an upstream client's error (evm::RpcError, btc::BtcError) keeps the node's code
// and HTTP status for its retry decisions, and tells its ErrorKind the same way, through
// error_kind().
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace bitacora {

// What kind of failure an error is, for a caller that answers each kind differently (the
// API maps kinds to its error codes in rpc/json_rpc.cpp).
enum class ErrorKind {
    Other,    // a failure of ours (an invariant): nothing the caller can change
    Invalid,  // the input is malformed or out of range
    Conflict, // the input contradicts what is already recorded (an idempotency key reused)
    TooLarge, // the input or an answer is over one of our limits: asking for less can succeed
    NotFound, // what was asked for does not exist (yet)
    ReadOnly, // the ledger refuses writes (after a write error, or opened read-only)
    Io,       // storage failed: a read or write error, a full disk
    Corrupt,  // stored data does not decode or does not verify
    Upstream, // a node (EVM provider, bitcoind) failed or answered wrongly
    Stopped,  // the process is stopping; the work was abandoned
};

struct Error {
    std::string message;
    ErrorKind kind{ErrorKind::Other};

    ErrorKind error_kind() const { return kind; }
};

template <typename T, typename E = Error>
class [[nodiscard]] Result {
public:
    Result(T value) : m_state(std::in_place_index<0>, std::move(value)) {}
    Result(E error) : m_state(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return m_state.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(m_state); }
    const T& value() const& { assert(ok()); return std::get<0>(m_state); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(m_state)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    // Error's message; an upstream error whole (its code and status are what callers read).
    decltype(auto) error() const
    {
        assert(!ok());
        if constexpr (std::is_same_v<E, Error>) {
            return static_cast<const std::string&>(std::get<1>(m_state).message);
        } else {
            return static_cast<const E&>(std::get<1>(m_state));
        }
    }
    ErrorKind error_kind() const { assert(!ok()); return std::get<1>(m_state).error_kind(); }
    // The whole error, to pass on with its kind.
    const E& failure() const { assert(!ok()); return std::get<1>(m_state); }

private:
    std::variant<T, E> m_state;
};

// Success or an Error.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : m_error(std::move(error)), m_failed(true) {}
    static Status Ok() { return {}; }
    bool ok() const { return !m_failed; }
    explicit operator bool() const { return ok(); }
    const std::string& error() const { assert(m_failed); return m_error.message; }
    ErrorKind error_kind() const { assert(m_failed); return m_error.kind; }
    const Error& failure() const { assert(m_failed); return m_error; }

private:
    Error m_error;
    bool m_failed{false};
};

} // namespace bitacora
