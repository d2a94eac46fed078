// A mutex that clang's -Wthread-safety can reason about (GUARDED_BY, REQUIRES),
// in the manner of Bitcoin Core's threadsafety.h and sync.h.
#pragma once

#include <mutex>

#if defined(__clang__)
#define BITACORA_TSA(x) __attribute__((x))
#else
#define BITACORA_TSA(x)
#endif

#define LOCKABLE BITACORA_TSA(capability("mutex"))
#define SCOPED_LOCKABLE BITACORA_TSA(scoped_lockable)
#define GUARDED_BY(x) BITACORA_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) BITACORA_TSA(pt_guarded_by(x))
#define EXCLUSIVE_LOCK_FUNCTION(...) BITACORA_TSA(acquire_capability(__VA_ARGS__))
#define UNLOCK_FUNCTION(...) BITACORA_TSA(release_capability(__VA_ARGS__))
#define EXCLUSIVE_LOCKS_REQUIRED(...) BITACORA_TSA(requires_capability(__VA_ARGS__))
#define LOCKS_EXCLUDED(...) BITACORA_TSA(locks_excluded(__VA_ARGS__))

namespace bitacora {

class LOCKABLE Mutex {
public:
    void lock() EXCLUSIVE_LOCK_FUNCTION() { m_mutex.lock(); }
    void unlock() UNLOCK_FUNCTION() { m_mutex.unlock(); }
    std::mutex& native() { return m_mutex; }

private:
    std::mutex m_mutex;
};

class SCOPED_LOCKABLE LockGuard {
public:
    explicit LockGuard(Mutex& mutex) EXCLUSIVE_LOCK_FUNCTION(mutex) : m_mutex(mutex) { m_mutex.lock(); }
    ~LockGuard() UNLOCK_FUNCTION() { m_mutex.unlock(); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

private:
    Mutex& m_mutex;
};

} // namespace bitacora

#define BITACORA_CONCAT_INNER(a, b) a##b
#define BITACORA_CONCAT(a, b) BITACORA_CONCAT_INNER(a, b)
#define LOCK(mutex) ::bitacora::LockGuard BITACORA_CONCAT(lock_guard_, __LINE__)(mutex)
