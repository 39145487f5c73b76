// UsageStore on the node's embedded SQLite database (state.db), over a connection of its own.
// The tables (usage_*) come with the state store's schema (store/sqlite_schema.h), so the state
// store must have opened, and migrated, the database first. Commits are durable when they return
// (synchronous=FULL), like the state store's.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>

#include "metering/usage_store.h"

struct sqlite3;

namespace hearth::metering {

class SqliteUsageStore final : public UsageStore {
 public:
  // failed_precondition when the database's schema has no metering tables yet.
  static Result<std::unique_ptr<SqliteUsageStore>> Open(const std::filesystem::path& path);
  ~SqliteUsageStore() override;

  // Asked before each Commit and Maintain; when it fails they fail with its error and write
  // nothing (e.g. the node is read-only: the space its full disk has left is for deletes, and
  // the sampler samples the interval again later). Set before sharing the store.
  void SetWriteGate(std::function<Status()> gate) { gate_ = std::move(gate); }

  Result<MeteringState> LoadState() override;
  Result<std::vector<int64_t>> Commit(const TickWrite& write) override;
  Result<std::vector<StoredSample>> SamplesAfter(int64_t after, int limit) override;
  Result<std::vector<UsageEvent>> EventsAfter(int64_t after, int limit) override;
  Result<int64_t> LastSampleSeq() override;
  Status Maintain(Timestamp now, Duration raw_keep, Duration retention) override;
  Result<UsageData> Fetch(const ReportQuery& query) override;

 private:
  SqliteUsageStore(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  Status Exec(const char* sql);
  Error SqlError(std::string_view what) const;
  // Runs `body` in one IMMEDIATE transaction (mu_ held), rolled back if it fails.
  Status Transaction(const std::function<Status()>& body);
  Status PutCursor(std::string_view key, int64_t value);

  std::mutex mu_;
  sqlite3* db_;
  std::filesystem::path path_;
  std::function<Status()> gate_;
};

}  // namespace hearth::metering
