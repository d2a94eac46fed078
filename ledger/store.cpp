#include "ledger/store.h"

#include "common/logging.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <charconv>

namespace bitacora::ledger {
namespace {

constexpr const char* kMetaFamily = "meta";
constexpr const char* kSchemaKey = "schema_version";

} // namespace

struct Store::Impl {
    std::filesystem::path path;
    std::unique_ptr<rocksdb::DB> db;
    std::vector<rocksdb::ColumnFamilyHandle*> handles; // owned; destroyed before db
    rocksdb::ColumnFamilyHandle* meta{nullptr};
    uint32_t schema_version{0};

    ~Impl()
    {
        if (db) {
            for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
            db->Close();
        }
    }
};

Store::Store(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& dir, const StoreOptions& options)
{
    rocksdb::Options db_options;
    db_options.create_if_missing = options.create_if_missing;
    db_options.create_missing_column_families = true;
    db_options.paranoid_checks = true;
    rocksdb::BlockBasedTableOptions table_options;
    table_options.block_cache = rocksdb::NewLRUCache(options.cache_mib * 1024 * 1024);
    db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));

    // Open every family already on disk: RocksDB refuses to open a database otherwise.
    std::vector<std::string> families;
    const auto listed = rocksdb::DB::ListColumnFamilies(db_options, dir.string(), &families);
    if (!listed.ok()) families = {rocksdb::kDefaultColumnFamilyName};
    if (std::find(families.begin(), families.end(), kMetaFamily) == families.end()) families.push_back(kMetaFamily);

    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : families) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions(db_options));

    auto impl = std::make_unique<Impl>();
    impl->path = dir;
    rocksdb::DB* raw = nullptr;
    const auto status = rocksdb::DB::Open(db_options, dir.string(), descriptors, &impl->handles, &raw);
    if (!status.ok()) return Error{fmt::format("cannot open database {}: {}", dir.string(), status.ToString())};
    impl->db.reset(raw);
    LogDebug(log::Category::Db, "RocksDB {} opened: {} column families, block cache {} MiB", dir.string(),
             families.size(), options.cache_mib);
    for (size_t i = 0; i < families.size(); ++i) {
        if (families[i] == kMetaFamily) impl->meta = impl->handles[i];
    }

    std::string stored;
    const auto read = impl->db->Get(rocksdb::ReadOptions(), impl->meta, kSchemaKey, &stored);
    if (read.IsNotFound()) {
        rocksdb::WriteOptions write_options;
        write_options.sync = true;
        const auto written = impl->db->Put(write_options, impl->meta, kSchemaKey, std::to_string(kSchemaVersion));
        if (!written.ok()) return Error{fmt::format("cannot initialise database {}: {}", dir.string(), written.ToString())};
        impl->schema_version = kSchemaVersion;
        LogInfo("Created database {} (schema version {})", dir.string(), kSchemaVersion);
    } else if (!read.ok()) {
        return Error{fmt::format("cannot read database {}: {}", dir.string(), read.ToString())};
    } else {
        uint32_t version = 0;
        const auto [ptr, ec] = std::from_chars(stored.data(), stored.data() + stored.size(), version);
        if (ec != std::errc() || ptr != stored.data() + stored.size()) {
            return Error{fmt::format("database {} has a corrupt schema version '{}'", dir.string(), stored)};
        }
        if (version > kSchemaVersion) {
            return Error{fmt::format("database {} has schema version {}, newer than this bitacorad supports ({}); "
                                     "run a newer release",
                                     dir.string(), version, kSchemaVersion)};
        }
        impl->schema_version = version;
        LogInfo("Opened database {} (schema version {})", dir.string(), version);
    }
    return std::unique_ptr<Store>(new Store(std::move(impl)));
}

uint32_t Store::schema_version() const
{
    return m_impl->schema_version;
}

const std::filesystem::path& Store::path() const
{
    return m_impl->path;
}

Result<std::optional<std::string>> Store::GetMeta(const std::string& key) const
{
    std::string value;
    const auto status = m_impl->db->Get(rocksdb::ReadOptions(), m_impl->meta, key, &value);
    if (status.IsNotFound()) return std::optional<std::string>{};
    if (!status.ok()) return Error{fmt::format("database read of {} failed: {}", key, status.ToString())};
    return std::optional<std::string>{std::move(value)};
}

Status Store::PutMeta(const std::string& key, const std::string& value)
{
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    const auto status = m_impl->db->Put(write_options, m_impl->meta, key, value);
    if (!status.ok()) return Error{fmt::format("database write of {} failed: {}", key, status.ToString())};
    return {};
}

} // namespace bitacora::ledger
