// A mutex that clang's -Wthread-safety can reason about (GUARDED_BY, REQUIRES),
// in the manner of Bitcoin Core's threadsafety.h and sync.h.
#pragma once

#include <condition_variable>
#include <mutex>
#include <shared_mutex>

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
#define SHARED_LOCK_FUNCTION(...) BITACORA_TSA(acquire_shared_capability(__VA_ARGS__))
#define SHARED_UNLOCK_FUNCTION(...) BITACORA_TSA(release_shared_capability(__VA_ARGS__))
#define SHARED_LOCKS_REQUIRED(...) BITACORA_TSA(requires_shared_capability(__VA_ARGS__))
#define LOCK_RETURNED(x) BITACORA_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS BITACORA_TSA(no_thread_safety_analysis)

namespace bitacora {

class LOCKABLE Mutex {
public:
    void lock() EXCLUSIVE_LOCK_FUNCTION() { m_mutex.lock(); }
    void unlock() UNLOCK_FUNCTION() { m_mutex.unlock(); }
    std::mutex& native() { return m_mutex; }

private:
    std::mutex m_mutex;
};

// Many readers or one writer: the ledger serves API reads from several threads.
class LOCKABLE SharedMutex {
public:
    void lock() EXCLUSIVE_LOCK_FUNCTION() { m_mutex.lock(); }
    void unlock() UNLOCK_FUNCTION() { m_mutex.unlock(); }
    void lock_shared() SHARED_LOCK_FUNCTION() { m_mutex.lock_shared(); }
    void unlock_shared() SHARED_UNLOCK_FUNCTION() { m_mutex.unlock_shared(); }

private:
    std::shared_mutex m_mutex;
};

// Waits on a Mutex itself (inside its LOCK scope: `while (!ready) cv.wait(mutex);`), so
// that the guarded state read around the wait stays visible to -Wthread-safety.
using ConditionVariable = std::condition_variable_any;

template <typename M>
class SCOPED_LOCKABLE LockGuard {
public:
    explicit LockGuard(M& mutex) EXCLUSIVE_LOCK_FUNCTION(mutex) : m_mutex(mutex) { m_mutex.lock(); }
    ~LockGuard() UNLOCK_FUNCTION() { m_mutex.unlock(); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

private:
    M& m_mutex;
};

class SCOPED_LOCKABLE ReadLockGuard {
public:
    explicit ReadLockGuard(SharedMutex& mutex) SHARED_LOCK_FUNCTION(mutex) : m_mutex(mutex) { m_mutex.lock_shared(); }
    ~ReadLockGuard() UNLOCK_FUNCTION() { m_mutex.unlock_shared(); }
    ReadLockGuard(const ReadLockGuard&) = delete;
    ReadLockGuard& operator=(const ReadLockGuard&) = delete;

private:
    SharedMutex& m_mutex;
};

} // namespace bitacora

#define BITACORA_CONCAT_INNER(a, b) a##b
#define BITACORA_CONCAT(a, b) BITACORA_CONCAT_INNER(a, b)
#define LOCK(mutex) ::bitacora::LockGuard BITACORA_CONCAT(lock_guard_, __LINE__)(mutex)
#define READ_LOCK(mutex) ::bitacora::ReadLockGuard BITACORA_CONCAT(read_lock_guard_, __LINE__)(mutex)
