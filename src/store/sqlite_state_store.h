// StateStore on an embedded SQLite database in WAL mode with synchronous=FULL: a committed
// transaction is on disk before the call returns. Concurrent writes are group-committed: they
// share one transaction and one fsync, and each still succeeds or fails on its own. The schema is
// versioned (PRAGMA user_version) and migrated forward on open; a database from a newer hearth is
// refused. A write or an open that finds the filesystem full fails with a disk-full
// resource_exhausted (HTTP 507) naming the database's path and the free space.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "store/state_store.h"

struct sqlite3;

namespace hearth::store {

class SqliteStateStore final : public StateStore {
 public:
  // Opens (creating if needed) the database at `path` and applies pending migrations.
  static Result<std::unique_ptr<SqliteStateStore>> Open(const std::filesystem::path& path);
  ~SqliteStateStore() override;

  // Called (under the store's lock: it must not call the store) with every disk-full error,
  // e.g. to enter read-only mode (store/disk_reserve.h). Set it before sharing the store.
  void SetOnDiskFull(std::function<void(const Error&)> on_full);

  // The schema version this build writes.
  static int SchemaVersion();

  Result<std::vector<VmRecord>> ListVms() override;
  Result<std::optional<VmRecord>> GetVm(std::string_view name) override;
  Status CreateVm(const VmRecord& vm, const Event& event) override;
  Status UpdateVm(const VmRecord& vm, int64_t expected_version, const Event& event) override;
  Status DeleteVm(std::string_view name, int64_t expected_version, const Event& event) override;
  Status AppendEvent(const Event& event) override;
  Result<std::vector<Event>> ListEvents(std::string_view vm_id, int limit) override;
  Result<std::vector<RecordedEvent>> ListEventsAfter(int64_t after, int limit) override;
  Result<int64_t> LastEventSeq() override;
  Result<std::optional<std::string>> GetSetting(std::string_view key) override;
  Status PutSetting(std::string_view key, std::string_view value) override;

 private:
  class Statement;
  explicit SqliteStateStore(sqlite3* db, std::filesystem::path path);
  Status Exec(const char* sql);
  Status Migrate();
  // Appends `event` with the facts of `vm` (null: no record changed) or of a deletion.
  Status InsertEvent(const Event& event, const VmRecord* vm, bool deleted);
  static Event ReadEvent(const Statement& q);
  static Result<VmRecord> ReadVm(const Statement& q);
  // After an UPDATE/DELETE matched no row: not_found, or failed_precondition naming the version.
  Status MissingOrStale(std::string_view name, int64_t expected_version);
  // Runs a write durably, batched with concurrent writes (see the class comment).
  Status Commit(const std::function<Status()>& body);
  Error SqlError(std::string_view what) const;

  struct PendingWrite {
    const std::function<Status()>* body;
    Status result;
    bool done = false;
  };

  std::mutex mu_;  // the connection
  sqlite3* db_;
  std::mutex queue_mu_;  // the writes waiting for the next group commit
  std::condition_variable queue_cv_;
  std::vector<PendingWrite*> queue_;
  bool committing_ = false;
  std::filesystem::path path_;
  std::function<void(const Error&)> on_disk_full_;
};

}  // namespace hearth::store
