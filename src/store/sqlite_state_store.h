// StateStore on an embedded SQLite database in WAL mode with synchronous=FULL: a committed
// transaction is on disk before the call returns. The schema is versioned (PRAGMA user_version)
// and migrated forward on open; a database from a newer hearth is refused.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>

#include "store/state_store.h"

struct sqlite3;

namespace hearth::store {

class SqliteStateStore final : public StateStore {
 public:
  // Opens (creating if needed) the database at `path` and applies pending migrations.
  static Result<std::unique_ptr<SqliteStateStore>> Open(const std::filesystem::path& path);
  ~SqliteStateStore() override;

  // The schema version this build writes.
  static int SchemaVersion();

  Result<std::vector<VmRecord>> ListVms() override;
  Result<std::optional<VmRecord>> GetVm(std::string_view name) override;
  Status CreateVm(const VmRecord& vm, const Event& event) override;
  Status UpdateVm(const VmRecord& vm, int64_t expected_version, const Event& event) override;
  Status DeleteVm(std::string_view name, int64_t expected_version, const Event& event) override;
  Result<std::vector<Event>> ListEvents(std::string_view vm_id, int limit) override;
  Result<std::optional<std::string>> GetSetting(std::string_view key) override;
  Status PutSetting(std::string_view key, std::string_view value) override;

 private:
  class Statement;
  explicit SqliteStateStore(sqlite3* db, std::filesystem::path path);
  Status Exec(const char* sql);
  Status Migrate();
  Status InsertEvent(const Event& event);
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back on error.
  template <class F>
  Status Transaction(F&& body);
  Error SqlError(std::string_view what) const;

  std::mutex mu_;
  sqlite3* db_;
  std::filesystem::path path_;
};

}  // namespace hearth::store
