// What a newer release does to an older ledger (docs/operator-guide.md, "Upgrades"):
// projections of an older layout are rebuilt from the log at open, the log and its tree
// are kept as they are; a ledger of a newer schema is refused, untouched.
#include "ledger/keys.h"
#include "ledger/ledger.h"
#include "ledger_testing.h"

#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <functional>

using namespace bitacora;
using namespace bitacora::ledger;
using namespace bitacora::ledger::testing;

namespace {

// Opens the database with RocksDB alone, as an older or newer release left it.
void Rewrite(const std::filesystem::path& db, const std::function<void(rocksdb::DB&, std::vector<rocksdb::ColumnFamilyHandle*>&)>& change)
{
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", keys::kMetaFamily, keys::kEventsFamily, keys::kMerkleFamily, keys::kProjectionsFamily,
                             keys::kAnchorsFamily}) {
        families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), db.string(), families, &handles, &raw).ok());
    change(*raw, handles);
    for (auto* handle : handles) raw->DestroyColumnFamilyHandle(handle);
    delete raw;
}

std::string MetaValue(const std::filesystem::path& db, std::string_view key)
{
    std::string value;
    Rewrite(db, [&](rocksdb::DB& raw, std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
        REQUIRE(raw.Get(rocksdb::ReadOptions(), handles[1], std::string(key), &value).ok());
    });
    return value;
}

} // namespace

TEST_CASE("an older projection layout is rebuilt from the log at open; the log stays as it was")
{
    TempDir dir("upgrade-projections");
    const auto db = dir.path / "db";
    Hash256 root{};
    Hash256 state{};
    {
        auto ledger = Ledger::Open(db, {});
        REQUIRE(ledger);
        std::vector<Event> events;
        for (uint64_t i = 0; i < 400; ++i) events.push_back(ReferenceEvent(i));
        REQUIRE((*ledger)->Append(events));
        root = (*ledger)->root();
        state = *(*ledger)->StateHash();
    }
    // An older release: projection version 1 and none of today's projection keys.
    Rewrite(db, [](rocksdb::DB& raw, std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
        REQUIRE(raw.Put(rocksdb::WriteOptions(), handles[1], std::string(keys::kProjectionVersion), "1").ok());
        REQUIRE(raw.DeleteRange(rocksdb::WriteOptions(), handles[4], std::string(1, '\0'), std::string(8, '\xff')).ok());
    });
    {
        auto ledger = Ledger::Open(db, {});
        REQUIRE_MESSAGE(ledger, (ledger ? "" : ledger.error()));
        CHECK((*ledger)->size() == 400);
        CHECK((*ledger)->root() == root);
        CHECK(*(*ledger)->StateHash() == state); // rebuilt: the same projections as before
        CHECK((*ledger)->schema_version() == Ledger::kSchemaVersion);
    }
    CHECK(MetaValue(db, keys::kProjectionVersion) == std::to_string(Ledger::kProjectionVersion));
}

TEST_CASE("a ledger of a newer schema is refused and left untouched")
{
    TempDir dir("upgrade-newer");
    const auto db = dir.path / "db";
    { REQUIRE(Ledger::Open(db, {})); }
    const std::string newer = std::to_string(Ledger::kSchemaVersion + 1);
    Rewrite(db, [&](rocksdb::DB& raw, std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
        REQUIRE(raw.Put(rocksdb::WriteOptions(), handles[1], std::string(keys::kSchemaVersion), newer).ok());
        REQUIRE(raw.Put(rocksdb::WriteOptions(), handles[1], std::string(keys::kProjectionVersion), "999").ok());
    });
    auto ledger = Ledger::Open(db, {});
    REQUIRE_FALSE(ledger);
    CHECK(ledger.error().find("newer than this bitacorad supports") != std::string::npos);
    CHECK(ledger.error().find("run a newer release") != std::string::npos);
    CHECK(MetaValue(db, keys::kSchemaVersion) == newer);
    CHECK(MetaValue(db, keys::kProjectionVersion) == "999"); // no rebuild, no rewrite
}
