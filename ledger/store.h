// The ledger's RocksDB database. Everything the daemon persists lives in this one
// database, so that one WriteBatch can commit events, Merkle nodes, projections and
// cursors together (never several databases committed separately).
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace bitacora::ledger {

struct StoreOptions {
    uint64_t cache_mib{64};          // RocksDB block cache (-dbcache)
    bool create_if_missing{true};
};

class Store {
public:
    // Version of the on-disk layout this build reads and writes.
    static constexpr uint32_t kSchemaVersion = 1;

    static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& dir, const StoreOptions& options);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    uint32_t schema_version() const;
    const std::filesystem::path& path() const;

    // Small typed values in the "meta" column family.
    Result<std::optional<std::string>> GetMeta(const std::string& key) const;
    Status PutMeta(const std::string& key, const std::string& value);

private:
    struct Impl;
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace bitacora::ledger
