#include "ledger/store.h"

#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <unistd.h>

using namespace bitacora;

namespace {
struct TempDir {
    std::filesystem::path path;
    TempDir() : path(std::filesystem::temp_directory_path() / ("bitacora-store-" + std::to_string(::getpid())))
    {
        std::filesystem::remove_all(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};
} // namespace

TEST_CASE("the store is created, reopened, and keeps what was written")
{
    TempDir dir;
    {
        auto store = ledger::Store::Open(dir.path, {});
        REQUIRE_MESSAGE(store, (store ? "" : store.error()));
        CHECK((*store)->schema_version() == ledger::Store::kSchemaVersion);
        REQUIRE((*store)->PutMeta("chain", "regtest"));
        auto missing = (*store)->GetMeta("nothing");
        REQUIRE(missing);
        CHECK_FALSE(missing->has_value());
    }
    auto store = ledger::Store::Open(dir.path, {});
    REQUIRE(store);
    auto chain = (*store)->GetMeta("chain");
    REQUIRE(chain);
    CHECK(chain->value() == "regtest");

    // RocksDB's own lock refuses a second opener of the same directory.
    auto second = ledger::Store::Open(dir.path, {});
    CHECK_FALSE(second);
}

TEST_CASE("a database from a newer release is refused, not misread")
{
    TempDir dir;
    {
        auto store = ledger::Store::Open(dir.path, {});
        REQUIRE(store);
        REQUIRE((*store)->PutMeta("schema_version", std::to_string(ledger::Store::kSchemaVersion + 1)));
    }
    auto store = ledger::Store::Open(dir.path, {});
    REQUIRE_FALSE(store);
    CHECK(store.error().find("newer than this bitacorad supports") != std::string::npos);
}

TEST_CASE("opening without create_if_missing fails on an empty directory")
{
    TempDir dir;
    ledger::StoreOptions options;
    options.create_if_missing = false;
    CHECK_FALSE(ledger::Store::Open(dir.path, options));
}
