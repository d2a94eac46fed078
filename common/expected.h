// Expected<T, E>: a value or a typed error, for results whose error callers inspect
// (an upstream node's error code, whether to retry). Result<T> (result.h) carries a
// message only. (std::expected is C++23.)
#pragma once

#include <optional>
#include <utility>

namespace bitacora {

template <typename T, typename E>
class Expected {
public:
    Expected(T value) : m_value(std::move(value)) {}
    Expected(E error) : m_error(std::move(error)) {}
    bool ok() const { return m_value.has_value(); }
    explicit operator bool() const { return ok(); }
    T& value() { return *m_value; }
    const T& value() const { return *m_value; }
    T& operator*() { return *m_value; }
    const T& operator*() const { return *m_value; }
    T* operator->() { return &*m_value; }
    const T* operator->() const { return &*m_value; }
    const E& error() const { return m_error; }

private:
    std::optional<T> m_value;
    E m_error;
};

} // namespace bitacora
