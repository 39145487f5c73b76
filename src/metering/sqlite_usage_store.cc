#include "metering/sqlite_usage_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "common/disk_space.h"
#include "store/sqlite_error.h"
#include "store/sqlite_schema.h"
#include "store/sqlite_statement.h"

namespace hearth::metering {
namespace {

using nlohmann::json;
using store::SqliteStatement;

int64_t Ms(Timestamp t) { return t.time_since_epoch().count(); }
Timestamp At(int64_t ms) { return Timestamp{Duration{ms}}; }

// The additive columns, in Usage order; samples, hourly sums and reports share them.
constexpr const char* kUsageColumns =
    "running_ms, suspended_ms, stopped_ms, transition_ms, cpu_ms, vcpu_ms, ram_mib_ms, "
    "snapshot_kib_ms, net_rx_bytes, net_tx_bytes, net_rx_packets, net_tx_packets, "
    "disk_read_bytes, disk_write_bytes, disk_read_ops, disk_write_ops";
constexpr int kUsageCount = 16;

std::string Sums() {
  std::string out;
  std::string cols = kUsageColumns;
  size_t pos = 0;
  while (pos < cols.size()) {
    size_t end = cols.find(", ", pos);
    if (end == std::string::npos) end = cols.size();
    std::string c = cols.substr(pos, end - pos);
    out += fmt::format("{}sum({})", out.empty() ? "" : ", ", c);
    pos = end + 2;
  }
  return out;
}

void BindUsage(SqliteStatement& q, int first, const Usage& u) {
  int i = first;
  for (int64_t v : u.state_ms) q.Bind(i++, v);
  for (int64_t v : {u.cpu_ms, u.vcpu_ms, u.ram_mib_ms, u.snapshot_kib_ms, u.net_rx_bytes,
                    u.net_tx_bytes, u.net_rx_packets, u.net_tx_packets, u.disk_read_bytes,
                    u.disk_write_bytes, u.disk_read_ops, u.disk_write_ops}) {
    q.Bind(i++, v);
  }
}

Usage ReadUsage(const SqliteStatement& q, int first) {
  Usage u;
  int i = first;
  for (int64_t& v : u.state_ms) v = q.Int(i++);
  for (int64_t* v : {&u.cpu_ms, &u.vcpu_ms, &u.ram_mib_ms, &u.snapshot_kib_ms, &u.net_rx_bytes,
                     &u.net_tx_bytes, &u.net_rx_packets, &u.net_tx_packets, &u.disk_read_bytes,
                     &u.disk_write_bytes, &u.disk_read_ops, &u.disk_write_ops}) {
    *v = q.Int(i++);
  }
  return u;
}

std::string MeasuresJson(const std::map<std::string, double>& m) { return json(m).dump(); }

std::map<std::string, double> ParseMeasures(const std::string& text) {
  std::map<std::string, double> out;
  json j = json::parse(text, nullptr, false);
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_number()) out[k] = v.get<double>();
    }
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<SqliteUsageStore>> SqliteUsageStore::Open(
    const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Fail(Code::kUnavailable, fmt::format("metering: opening {}: {}", path.string(), msg));
  }
  std::unique_ptr<SqliteUsageStore> store(new SqliteUsageStore(db, path));
  for (const char* pragma : {"PRAGMA busy_timeout = 10000", "PRAGMA synchronous = FULL"}) {
    if (auto s = store->Exec(pragma); !s) return Fail(s.error());
  }
  SqliteStatement v(db, "PRAGMA user_version");
  if (v.Step() != SQLITE_ROW) return Fail(store->SqlError("reading the schema version"));
  if (v.Int(0) < store::kUsageSchemaVersion) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("metering: {} has schema version {}, without the metering tables "
                            "(version {}); open it with the state store first",
                            path.string(), v.Int(0), store::kUsageSchemaVersion));
  }
  return store;
}

SqliteUsageStore::~SqliteUsageStore() { sqlite3_close(db_); }

Error SqliteUsageStore::SqlError(std::string_view what) const {
  int rc = sqlite3_errcode(db_) & 0xff;
  Code code = (rc == SQLITE_IOERR || rc == SQLITE_BUSY) ? Code::kUnavailable : Code::kInternal;
  return store::SqliteError(db_, path_, fmt::format("metering store {}: {}", path_.string(), what),
                            code);
}

Status SqliteUsageStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    if (store::IsSqliteDiskFull(db_)) {
      return Fail(DiskFullError(fmt::format("metering store {}: {}", path_.string(), msg), path_));
    }
    return Fail(Code::kUnavailable, fmt::format("metering store {}: {}", path_.string(), msg));
  }
  return Ok();
}

Status SqliteUsageStore::Transaction(const std::function<Status()>& body) {
  if (auto s = Exec("BEGIN IMMEDIATE"); !s) return s;
  Status s = body();
  if (s) s = Exec("COMMIT");
  if (!s) Exec("ROLLBACK");
  return s;
}

Status SqliteUsageStore::PutCursor(std::string_view key, int64_t value) {
  SqliteStatement q(db_,
                    "INSERT INTO usage_cursor (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  q.Bind(1, key).Bind(2, value);
  if (q.Step() != SQLITE_DONE) return Fail(SqlError("writing the metering cursor"));
  return Ok();
}

Result<MeteringState> SqliteUsageStore::LoadState() {
  std::lock_guard lock(mu_);
  MeteringState state;
  SqliteStatement c(db_, "SELECT key, value FROM usage_cursor");
  int rc;
  while ((rc = c.Step()) == SQLITE_ROW) {
    std::string key = c.Text(0);
    if (key == "events") {
      state.begun = true;
      state.cursor = c.Int(1);
    }
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("reading the metering cursor"));
  SqliteStatement t(db_, "SELECT vm_id, tracker FROM usage_trackers");
  while ((rc = t.Step()) == SQLITE_ROW) {
    auto tracker = TrackerFromJson(t.Text(1));
    if (!tracker) return Fail(tracker.error().Wrap(fmt::format("vm {}", t.Text(0))));
    state.trackers.emplace(t.Text(0), std::move(*tracker));
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("reading the metering trackers"));
  return state;
}

Result<std::vector<int64_t>> SqliteUsageStore::Commit(const TickWrite& write) {
  if (gate_) {
    if (auto s = gate_(); !s) return Fail(s.error());
  }
  std::lock_guard lock(mu_);
  std::vector<int64_t> seqs;
  auto s = Transaction([&]() -> Status {
    const TickResult& r = *write.result;
    SqliteStatement ins(
        db_, fmt::format("INSERT INTO usage_samples (vm_id, vm_name, start_ms, end_ms, state, "
                         "vcpus, memory_mib, rss_bytes, snapshot_bytes, {}) VALUES (?, ?, ?, ?, "
                         "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         kUsageColumns)
                 .c_str());
    for (const Sample& smp : r.samples) {
      ins.Reset();
      ins.Bind(1, smp.vm_id).Bind(2, smp.vm_name).Bind(3, Ms(smp.start)).Bind(4, Ms(smp.end));
      ins.Bind(5, ToString(smp.state)).Bind(6, int64_t{smp.vcpus}).Bind(7, smp.memory_mib);
      ins.Bind(8, smp.rss_bytes).Bind(9, smp.snapshot_bytes);
      BindUsage(ins, 10, smp.usage);
      if (ins.Step() != SQLITE_DONE) {
        return Fail(SqlError(fmt::format("writing a sample of vm '{}'", smp.vm_name)));
      }
      seqs.push_back(sqlite3_last_insert_rowid(db_));
    }
    // An event already recorded (a tick replayed after a failed commit elsewhere) is kept once.
    SqliteStatement ev(db_,
                       "INSERT OR IGNORE INTO usage_events (seq, vm_id, vm_name, time_ms, type, "
                       "state, duration_ms, latency_ms, memory_mib, snapshot_bytes, reason, "
                       "measures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const UsageEvent& e : r.events) {
      ev.Reset();
      ev.Bind(1, e.seq).Bind(2, e.vm_id).Bind(3, e.vm_name).Bind(4, Ms(e.time)).Bind(5, e.type);
      ev.Bind(6, e.state).Bind(7, e.duration_ms).Bind(8, e.latency_ms).Bind(9, e.memory_mib);
      ev.Bind(10, e.snapshot_bytes).Bind(11, e.reason).Bind(12, MeasuresJson(e.measures));
      if (ev.Step() != SQLITE_DONE) return Fail(SqlError("writing a metering event"));
    }
    SqliteStatement put(db_,
                        "INSERT INTO usage_trackers (vm_id, tracker) VALUES (?, ?) "
                        "ON CONFLICT (vm_id) DO UPDATE SET tracker = excluded.tracker");
    for (const std::string& id : r.changed) {
      auto it = r.trackers.find(id);
      if (it == r.trackers.end()) continue;
      put.Reset();
      put.Bind(1, id).Bind(2, TrackerToJson(it->second));
      if (put.Step() != SQLITE_DONE) return Fail(SqlError("writing a metering tracker"));
    }
    SqliteStatement del(db_, "DELETE FROM usage_trackers WHERE vm_id = ?");
    for (const std::string& id : r.removed) {
      del.Reset();
      del.Bind(1, id);
      if (del.Step() != SQLITE_DONE) return Fail(SqlError("deleting a metering tracker"));
    }
    return PutCursor("events", write.cursor);
  });
  if (!s) return Fail(s.error());
  return seqs;
}

Result<std::vector<StoredSample>> SqliteUsageStore::SamplesAfter(int64_t after, int limit) {
  std::lock_guard lock(mu_);
  SqliteStatement q(db_, fmt::format("SELECT seq, vm_id, vm_name, start_ms, end_ms, state, vcpus, "
                                     "memory_mib, rss_bytes, snapshot_bytes, {} FROM usage_samples "
                                     "WHERE seq > ? ORDER BY seq LIMIT ?",
                                     kUsageColumns)
                             .c_str());
  q.Bind(1, after).Bind(2, int64_t{limit});
  std::vector<StoredSample> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    StoredSample s;
    s.seq = q.Int(0);
    s.sample.vm_id = q.Text(1);
    s.sample.vm_name = q.Text(2);
    s.sample.start = At(q.Int(3));
    s.sample.end = At(q.Int(4));
    s.sample.state = ParseVmState(q.Text(5)).value_or(VmState::kCreated);
    s.sample.vcpus = static_cast<int>(q.Int(6));
    s.sample.memory_mib = q.Int(7);
    s.sample.rss_bytes = q.Int(8);
    s.sample.snapshot_bytes = q.Int(9);
    s.sample.usage = ReadUsage(q, 10);
    out.push_back(std::move(s));
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("reading samples"));
  return out;
}

Result<std::vector<UsageEvent>> SqliteUsageStore::EventsAfter(int64_t after, int limit) {
  std::lock_guard lock(mu_);
  SqliteStatement q(db_,
                    "SELECT seq, vm_id, vm_name, time_ms, type, state, duration_ms, latency_ms, "
                    "memory_mib, snapshot_bytes, reason, measures FROM usage_events "
                    "WHERE seq > ? ORDER BY seq LIMIT ?");
  q.Bind(1, after).Bind(2, int64_t{limit});
  std::vector<UsageEvent> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    UsageEvent e;
    e.seq = q.Int(0);
    e.vm_id = q.Text(1);
    e.vm_name = q.Text(2);
    e.time = At(q.Int(3));
    e.type = q.Text(4);
    e.state = q.Text(5);
    e.duration_ms = q.Int(6);
    e.latency_ms = q.Real(7);
    e.memory_mib = q.Int(8);
    e.snapshot_bytes = q.Int(9);
    e.reason = q.Text(10);
    e.measures = ParseMeasures(q.Text(11));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("reading metering events"));
  return out;
}

Result<int64_t> SqliteUsageStore::LastSampleSeq() {
  std::lock_guard lock(mu_);
  // AUTOINCREMENT's high-water mark survives the deletion of rolled-up samples.
  SqliteStatement q(db_,
                    "SELECT coalesce(max(seq), 0) FROM sqlite_sequence "
                    "WHERE name = 'usage_samples'");
  if (q.Step() != SQLITE_ROW) return Fail(SqlError("reading the last sample seq"));
  return q.Int(0);
}

Status SqliteUsageStore::Maintain(Timestamp now, Duration raw_keep, Duration retention) {
  if (gate_) {
    if (auto s = gate_(); !s) return s;
  }
  std::lock_guard lock(mu_);
  int64_t raw_cut = Ms(now - raw_keep), cut = Ms(now - retention);
  return Transaction([&]() -> Status {
    std::string updates;
    for (std::string c : {"running_ms", "suspended_ms", "stopped_ms", "transition_ms", "cpu_ms",
                          "vcpu_ms", "ram_mib_ms", "snapshot_kib_ms", "net_rx_bytes",
                          "net_tx_bytes", "net_rx_packets", "net_tx_packets", "disk_read_bytes",
                          "disk_write_bytes", "disk_read_ops", "disk_write_ops", "samples"}) {
      updates += fmt::format(", {0} = {0} + excluded.{0}", c);
    }
    // "WHERE true": SQLite's upsert after a SELECT needs a WHERE to parse.
    SqliteStatement roll(
        db_, fmt::format("INSERT INTO usage_hourly (vm_id, hour_ms, vm_name, samples, "
                         "max_rss_bytes, {}) SELECT * FROM (SELECT vm_id, end_ms / 3600000 * "
                         "3600000 AS h, max(vm_name), count(*), max(rss_bytes), {} FROM "
                         "usage_samples WHERE end_ms < ? GROUP BY vm_id, h) WHERE true "
                         "ON CONFLICT (vm_id, hour_ms) DO UPDATE SET max_rss_bytes = "
                         "max(max_rss_bytes, excluded.max_rss_bytes){}",
                         kUsageColumns, Sums(), updates)
                 .c_str());
    roll.Bind(1, raw_cut);
    if (roll.Step() != SQLITE_DONE) return Fail(SqlError("rolling samples up to hours"));
    for (auto [sql, at] : {std::pair{"DELETE FROM usage_samples WHERE end_ms < ?", raw_cut},
                           std::pair{"DELETE FROM usage_hourly WHERE hour_ms < ?", cut},
                           std::pair{"DELETE FROM usage_events WHERE time_ms < ?", cut}}) {
      SqliteStatement del(db_, sql);
      del.Bind(1, at);
      if (del.Step() != SQLITE_DONE) return Fail(SqlError("deleting old metering data"));
    }
    return Ok();
  });
}

Result<UsageData> SqliteUsageStore::Fetch(const ReportQuery& query) {
  std::lock_guard lock(mu_);
  UsageData data;
  std::string bucket = query.by ? "t / ?4 * ?4" : "?1";
  SqliteStatement q(
      db_, fmt::format("SELECT {0} AS bucket, vm_id, max(vm_name), {1} FROM ("
                       "  SELECT end_ms AS t, vm_id, vm_name, {2} FROM usage_samples"
                       "  WHERE end_ms >= ?1 AND end_ms < ?2 AND (?3 = '' OR vm_name = ?3)"
                       "  UNION ALL"
                       "  SELECT hour_ms AS t, vm_id, vm_name, {2} FROM usage_hourly"
                       "  WHERE hour_ms >= ?1 AND hour_ms < ?2 AND (?3 = '' OR vm_name = ?3)"
                       ") GROUP BY bucket, vm_id ORDER BY bucket, vm_id",
                       bucket, Sums(), kUsageColumns)
               .c_str());
  q.Bind(1, Ms(query.since)).Bind(2, Ms(query.until)).Bind(3, query.vm);
  if (query.by) q.Bind(4, BucketMs(*query.by));
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    data.rows.push_back(UsageRow{At(q.Int(0)), q.Text(1), q.Text(2), ReadUsage(q, 3)});
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("summing usage"));
  SqliteStatement w(db_,
                    "SELECT time_ms, vm_id, vm_name, latency_ms FROM usage_events WHERE type = ?4 "
                    "AND time_ms >= ?1 AND time_ms < ?2 AND (?3 = '' OR vm_name = ?3) "
                    "ORDER BY time_ms, seq");
  w.Bind(1, Ms(query.since)).Bind(2, Ms(query.until)).Bind(3, query.vm).Bind(4, kWokenEvent);
  while ((rc = w.Step()) == SQLITE_ROW) {
    data.wakes.push_back(WakeRecord{At(w.Int(0)), w.Text(1), w.Text(2), w.Real(3)});
  }
  if (rc != SQLITE_DONE) return Fail(SqlError("listing wakes"));
  return data;
}

}  // namespace hearth::metering
