// Result<T>: a value or a human-readable error, for inputs that may be bad.
// (std::expected is C++23; assertions are never used to validate input.)
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace bitacora {

// What kind of failure an Error is, for a caller that answers each kind differently (the
// API maps kinds to its error codes in rpc/json_rpc.cpp): never tell them apart by message.
enum class ErrorKind {
    Other,    // a failure of ours (storage, an invariant): nothing the caller can change
    Invalid,  // the input is malformed or out of range
    Conflict, // the input contradicts what is already recorded (an idempotency key reused)
    TooLarge, // the input is over one of our limits: asking for less can succeed
};

struct Error {
    std::string message;
    ErrorKind kind{ErrorKind::Other};
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_state(std::move(value)) {}
    Result(Error error) : m_state(std::move(error)) {}

    bool ok() const { return std::holds_alternative<T>(m_state); }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<T>(m_state); }
    const T& value() const& { assert(ok()); return std::get<T>(m_state); }
    T&& value() && { assert(ok()); return std::get<T>(std::move(m_state)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const std::string& error() const { assert(!ok()); return std::get<Error>(m_state).message; }
    ErrorKind error_kind() const { assert(!ok()); return std::get<Error>(m_state).kind; }
    // The whole error, to pass on with its kind.
    const Error& failure() const { assert(!ok()); return std::get<Error>(m_state); }

private:
    std::variant<T, Error> m_state;
};

// Result<void>-like: success or an error message.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : m_error(std::move(error.message)), m_failed(true) {}
    static Status Ok() { return {}; }
    bool ok() const { return !m_failed; }
    explicit operator bool() const { return ok(); }
    const std::string& error() const { assert(m_failed); return m_error; }

private:
    std::string m_error;
    bool m_failed{false};
};

} // namespace bitacora
