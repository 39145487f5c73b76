#include "store/sqlite_state_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "common/disk_space.h"
#include "model/vm_json.h"
#include "store/sqlite_error.h"
#include "store/sqlite_schema.h"

namespace hearth::store {
namespace {

using nlohmann::json;

int64_t ToMillis(Timestamp t) { return t.time_since_epoch().count(); }
Timestamp FromMillis(int64_t ms) { return Timestamp{Duration{ms}}; }

std::string RuntimeJson(const VmRecord& vm) {
  json r = json::object();
  if (vm.pid) r["pid"] = *vm.pid;
  if (vm.pid_start) r["pid_start"] = vm.pid_start;
  if (vm.running_since) r["running_since_ms"] = ToMillis(*vm.running_since);
  if (!vm.ip.empty()) r["ip"] = vm.ip;
  if (!vm.backend.empty()) r["backend"] = vm.backend;
  if (vm.snapshot) {
    r["snapshot"] = {{"taken_ms", ToMillis(vm.snapshot->taken_at)}, {"bytes", vm.snapshot->bytes}};
  }
  return r.dump();
}

}  // namespace

// A prepared statement bound for one use; finalized on destruction.
class SqliteStateStore::Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

namespace {

constexpr const char* kVmColumns =
    "name, id, spec, state, state_reason, version, created_ms, updated_ms, runtime, generation";

}  // namespace

// Columns 0-6: seq, vm_id, vm_name, time_ms, type, message, measures.
Event SqliteStateStore::ReadEvent(const Statement& q) {
  Event e{q.Int(0), q.Text(1), q.Text(2), FromMillis(q.Int(3)), q.Text(4), q.Text(5)};
  if (std::string m = q.Text(6); !m.empty()) {
    json measures = json::parse(m, nullptr, false);
    if (measures.is_object()) {
      for (const auto& [k, v] : measures.items()) {
        if (v.is_number()) e.measures[k] = v.get<double>();
      }
    }
  }
  return e;
}

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e =
        SqliteError(db, path, fmt::format("opening store {}", path.string()), Code::kUnavailable);
    sqlite3_close(db);
    return Fail(e);
  }
  std::unique_ptr<SqliteStateStore> store(new SqliteStateStore(db, path));
  for (const char* pragma : {"PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = WAL",
                             "PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON"}) {
    if (auto s = store->Exec(pragma); !s) return Fail(s.error());
  }
  if (auto s = store->Migrate(); !s) return Fail(s.error());
  return store;
}

SqliteStateStore::SqliteStateStore(sqlite3* db, std::filesystem::path path)
    : db_(db), path_(std::move(path)) {}

SqliteStateStore::~SqliteStateStore() { sqlite3_close(db_); }

int SqliteStateStore::SchemaVersion() { return static_cast<int>(SqliteMigrations().size()); }

Error SqliteStateStore::SqlError(std::string_view what) const {
  int rc = sqlite3_errcode(db_) & 0xff;
  Code code = (rc == SQLITE_IOERR || rc == SQLITE_BUSY) ? Code::kUnavailable : Code::kInternal;
  Error e = SqliteError(db_, path_, fmt::format("store {}: {}", path_.string(), what), code);
  if (IsDiskFull(e) && on_disk_full_) on_disk_full_(e);
  return e;
}

Status SqliteStateStore::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    // The statement's start names it well enough (a migration is a page long).
    std::string_view what(sql);
    what.remove_prefix(std::min(what.find_first_not_of(" \n"), what.size()));
    what = what.substr(0, std::min(what.find('\n'), size_t{40}));
    return Fail(SqlError(what));
  }
  return Ok();
}

void SqliteStateStore::SetOnDiskFull(std::function<void(const Error&)> on_full) {
  std::lock_guard lock(mu_);
  on_disk_full_ = std::move(on_full);
}

Status SqliteStateStore::Commit(const std::function<Status()>& body) {
  // Group commit: the first writer to find no commit under way becomes the leader and runs every
  // queued write in one transaction, each inside a savepoint so that one refused write does not
  // undo the others; one fsync then makes the whole batch durable.
  PendingWrite mine{&body};
  std::unique_lock queue_lock(queue_mu_);
  queue_.push_back(&mine);
  while (!mine.done) {
    if (committing_) {
      queue_cv_.wait(queue_lock);
      continue;
    }
    committing_ = true;
    std::vector<PendingWrite*> batch;
    batch.swap(queue_);
    queue_lock.unlock();
    {
      std::lock_guard db_lock(mu_);
      Status begun = Exec("BEGIN IMMEDIATE");
      for (PendingWrite* w : batch) {
        if (!begun) {
          w->result = begun;
          continue;
        }
        Exec("SAVEPOINT write");
        w->result = (*w->body)();
        if (!w->result) Exec("ROLLBACK TO write");
        Exec("RELEASE write");
      }
      if (begun) {
        if (auto committed = Exec("COMMIT"); !committed) {
          Exec("ROLLBACK");
          for (PendingWrite* w : batch) {
            if (w->result) w->result = committed;
          }
        }
      }
    }
    queue_lock.lock();
    for (PendingWrite* w : batch) w->done = true;
    committing_ = false;
    queue_cv_.notify_all();
  }
  return mine.result;
}

Status SqliteStateStore::Migrate() {
  int current = 0;
  {
    std::lock_guard lock(mu_);
    Statement q(db_, "PRAGMA user_version");
    if (!q.ok() || q.Step() != SQLITE_ROW) return Fail(SqlError("reading schema version"));
    current = static_cast<int>(q.Int(0));
  }
  int latest = SchemaVersion();
  if (current > latest) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("store {} has schema version {}, newer than this hearthd knows ({}); "
                            "run a newer hearthd",
                            path_.string(), current, latest));
  }
  for (int v = current; v < latest; ++v) {
    auto s = Commit([&]() -> Status {
      if (auto e = Exec(SqliteMigrations()[v]); !e) return e;
      return Exec(fmt::format("PRAGMA user_version = {}", v + 1).c_str());
    });
    if (!s) return Fail(s.error().Wrap(fmt::format("migrating schema to version {}", v + 1)));
  }
  return Ok();
}

namespace {

// One row of the vms table, as read (kVmColumns).
struct VmRow {
  std::string name, id, spec, state, reason;
  int64_t version = 0, created = 0, updated = 0;
  std::string runtime;
  int64_t generation = 0;
};

Result<VmRecord> VmFromRow(const VmRow& row) {
  const auto& [name, id, spec, state, reason, version, created, updated, runtime, generation] = row;
  VmRecord vm;
  vm.name = name;
  vm.id = id;
  json spec_json = json::parse(spec, nullptr, false);
  if (spec_json.is_discarded()) {
    return Fail(Code::kInternal, fmt::format("vm '{}': stored spec is not JSON", name));
  }
  if (auto s = ApplySpecJson(spec_json, vm.spec); !s) {
    return Fail(s.error().Wrap(fmt::format("vm '{}': stored spec", name)));
  }
  auto st = ParseVmState(state);
  if (!st) return Fail(st.error().Wrap(fmt::format("vm '{}'", name)));
  vm.state = *st;
  vm.state_reason = reason;
  vm.version = version;
  vm.generation = generation;
  vm.created_at = FromMillis(created);
  vm.updated_at = FromMillis(updated);
  json rt = json::parse(runtime, nullptr, false);
  if (rt.is_object()) {
    if (rt.contains("pid")) vm.pid = rt["pid"].get<int64_t>();
    vm.pid_start = rt.value("pid_start", uint64_t{0});
    if (rt.contains("running_since_ms")) {
      vm.running_since = FromMillis(rt["running_since_ms"].get<int64_t>());
    }
    vm.ip = rt.value("ip", "");
    vm.backend = rt.value("backend", "");
    if (rt.contains("snapshot")) {
      vm.snapshot = SnapshotInfo{FromMillis(rt["snapshot"].value("taken_ms", int64_t{0})),
                                 rt["snapshot"].value("bytes", int64_t{0})};
    }
  }
  return vm;
}

}  // namespace

Result<VmRecord> SqliteStateStore::ReadVm(const Statement& q) {
  return VmFromRow({q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Int(5), q.Int(6),
                    q.Int(7), q.Text(8), q.Int(9)});
}

Result<std::vector<VmRecord>> SqliteStateStore::ListVms() {
  std::lock_guard lock(mu_);
  Statement q(db_, fmt::format("SELECT {} FROM vms ORDER BY name", kVmColumns).c_str());
  if (!q.ok()) return Fail(SqlError("listing vms"));
  std::vector<VmRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto vm = ReadVm(q);
    if (!vm) return Fail(vm.error());
    out.push_back(std::move(*vm));
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("listing vms"));
  return out;
}

Result<std::optional<VmRecord>> SqliteStateStore::GetVm(std::string_view name) {
  std::lock_guard lock(mu_);
  Statement q(db_, fmt::format("SELECT {} FROM vms WHERE name = ?", kVmColumns).c_str());
  if (!q.ok()) return Fail(SqlError("reading vm"));
  q.Bind(1, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<VmRecord>();
  if (rc != SQLITE_ROW) return Fail(SqlError("reading vm"));
  auto vm = ReadVm(q);
  if (!vm) return Fail(vm.error());
  return std::optional<VmRecord>(std::move(*vm));
}

Status SqliteStateStore::InsertEvent(const Event& e, const VmRecord* vm, bool deleted) {
  Statement q(db_,
              "INSERT INTO events (vm_id, vm_name, time_ms, type, message, state, vcpus, "
              "memory_mib, snapshot_bytes, measures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  std::string_view state = deleted ? "deleted" : vm ? ToString(vm->state) : "";
  q.Bind(1, e.vm_id)
      .Bind(2, e.vm_name)
      .Bind(3, ToMillis(e.time))
      .Bind(4, e.type)
      .Bind(5, e.message)
      .Bind(6, state)
      .Bind(7, int64_t{vm ? vm->spec.vcpus : 0})
      .Bind(8, vm ? vm->spec.memory.value : 0)
      .Bind(9, vm && vm->snapshot ? vm->snapshot->bytes : 0)
      .Bind(10, e.measures.empty() ? std::string() : json(e.measures).dump());
  if (!q.ok() || q.Step() != SQLITE_DONE) return Fail(SqlError("appending event"));
  return Ok();
}

Status SqliteStateStore::AppendEvent(const Event& event) {
  return Commit([&] { return InsertEvent(event, nullptr, false); });
}

Status SqliteStateStore::CreateVm(const VmRecord& vm, const Event& event) {
  return Commit([&]() -> Status {
    Statement q(
        db_, fmt::format("INSERT INTO vms ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kVmColumns)
                 .c_str());
    q.Bind(1, vm.name).Bind(2, vm.id).Bind(3, SpecToJson(vm.spec, false).dump());
    q.Bind(4, ToString(vm.state)).Bind(5, vm.state_reason).Bind(6, vm.version);
    q.Bind(7, ToMillis(vm.created_at)).Bind(8, ToMillis(vm.updated_at)).Bind(9, RuntimeJson(vm));
    q.Bind(10, vm.generation);
    int rc = q.ok() ? q.Step() : SQLITE_ERROR;
    if (rc == SQLITE_CONSTRAINT) {
      return Fail(Code::kAlreadyExists, fmt::format("vm '{}' already exists", vm.name), "name");
    }
    if (rc != SQLITE_DONE) return Fail(SqlError(fmt::format("creating vm '{}'", vm.name)));
    return InsertEvent(event, &vm, false);
  });
}

Status SqliteStateStore::MissingOrStale(std::string_view name, int64_t expected_version) {
  Statement v(db_, "SELECT version FROM vms WHERE name = ?");
  v.Bind(1, name);
  if (v.Step() != SQLITE_ROW) {
    return Fail(Code::kNotFound, fmt::format("vm '{}' does not exist", name));
  }
  return Fail(Code::kFailedPrecondition,
              fmt::format("vm '{}' is at version {}, not {}: it changed since it was read; read it "
                          "again and retry",
                          name, v.Int(0), expected_version),
              "version");
}

Status SqliteStateStore::UpdateVm(const VmRecord& vm, int64_t expected_version,
                                  const Event& event) {
  return Commit([&]() -> Status {
    Statement q(db_,
                "UPDATE vms SET spec = ?, state = ?, state_reason = ?, version = ?, "
                "updated_ms = ?, runtime = ?, generation = ? WHERE name = ? AND version = ?");
    q.Bind(1, SpecToJson(vm.spec, false).dump()).Bind(2, ToString(vm.state));
    q.Bind(3, vm.state_reason).Bind(4, vm.version).Bind(5, ToMillis(vm.updated_at));
    q.Bind(6, RuntimeJson(vm)).Bind(7, vm.generation).Bind(8, vm.name).Bind(9, expected_version);
    if (!q.ok() || q.Step() != SQLITE_DONE) {
      return Fail(SqlError(fmt::format("updating vm '{}'", vm.name)));
    }
    if (sqlite3_changes(db_) == 0) return MissingOrStale(vm.name, expected_version);
    return InsertEvent(event, &vm, false);
  });
}

Status SqliteStateStore::DeleteVm(std::string_view name, int64_t expected_version,
                                  const Event& event) {
  return Commit([&]() -> Status {
    Statement q(db_, "DELETE FROM vms WHERE name = ? AND version = ?");
    q.Bind(1, name).Bind(2, expected_version);
    if (!q.ok() || q.Step() != SQLITE_DONE) {
      return Fail(SqlError(fmt::format("deleting vm '{}'", name)));
    }
    if (sqlite3_changes(db_) == 0) return MissingOrStale(name, expected_version);
    return InsertEvent(event, nullptr, true);
  });
}

Result<std::vector<Event>> SqliteStateStore::ListEvents(std::string_view vm_id, int limit) {
  std::lock_guard lock(mu_);
  Statement q(db_,
              "SELECT seq, vm_id, vm_name, time_ms, type, message, measures FROM ("
              "  SELECT * FROM events WHERE vm_id = ? ORDER BY seq DESC LIMIT ?"
              ") ORDER BY seq");
  if (!q.ok()) return Fail(SqlError("listing events"));
  q.Bind(1, vm_id).Bind(2, int64_t{limit});
  std::vector<Event> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back(ReadEvent(q));
  if (rc != SQLITE_DONE) return Fail(SqlError("listing events"));
  return out;
}

Result<std::vector<RecordedEvent>> SqliteStateStore::ListEventsAfter(int64_t after, int limit) {
  std::lock_guard lock(mu_);
  Statement q(db_,
              "SELECT seq, vm_id, vm_name, time_ms, type, message, measures, state, vcpus, "
              "memory_mib, snapshot_bytes FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!q.ok()) return Fail(SqlError("reading the event stream"));
  q.Bind(1, after).Bind(2, int64_t{limit});
  std::vector<RecordedEvent> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    RecordedEvent r;
    r.event = ReadEvent(q);
    std::string state = q.Text(7);
    r.deleted = state == "deleted";
    // Events from before schema version 2 have no state: they changed nothing metering knows.
    if (auto s = ParseVmState(state); !state.empty() && !r.deleted && s) r.state = *s;
    r.vcpus = static_cast<int>(q.Int(8));
    r.memory = MiB{q.Int(9)};
    r.snapshot_bytes = q.Int(10);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("reading the event stream"));
  return out;
}

Result<int64_t> SqliteStateStore::LastEventSeq() {
  std::lock_guard lock(mu_);
  Statement q(db_, "SELECT coalesce(max(seq), 0) FROM events");
  if (!q.ok() || q.Step() != SQLITE_ROW) return Fail(SqlError("reading the last event seq"));
  return q.Int(0);
}

Result<std::optional<std::string>> SqliteStateStore::GetSetting(std::string_view key) {
  std::lock_guard lock(mu_);
  Statement q(db_, "SELECT value FROM settings WHERE key = ?");
  q.Bind(1, key);
  int rc = q.ok() ? q.Step() : SQLITE_ERROR;
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return Fail(SqlError("reading setting"));
  return std::optional<std::string>(q.Text(0));
}

Status SqliteStateStore::PutSetting(std::string_view key, std::string_view value) {
  return Commit([&]() -> Status {
    Statement q(db_,
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    q.Bind(1, key).Bind(2, value);
    if (!q.ok() || q.Step() != SQLITE_DONE) return Fail(SqlError("writing setting"));
    return Ok();
  });
}

}  // namespace hearth::store
