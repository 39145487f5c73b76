#include "metering/clickhouse_schema.h"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "metering/clickhouse_transport.h"

namespace hearth::metering {
namespace {

using nlohmann::json;

int64_t Ms(Timestamp t) { return t.time_since_epoch().count(); }
Timestamp At(int64_t ms) { return Timestamp{Duration{ms}}; }

// "2026-11-26T07:40:28Z" (DateTime has whole seconds) and "2026-11-26".
std::string IsoSeconds(Timestamp t) {
  return FormatTime(std::chrono::floor<std::chrono::seconds>(t));
}
std::string Day(Timestamp t) { return IsoSeconds(t).substr(0, 10); }

// The additive columns, in Usage order.
constexpr const char* kUsageColumns[] = {
    "running_ms",      "suspended_ms",     "stopped_ms",     "transition_ms",
    "cpu_ms",          "vcpu_ms",          "ram_mib_ms",     "snapshot_kib_ms",
    "net_rx_bytes",    "net_tx_bytes",     "net_rx_packets", "net_tx_packets",
    "disk_read_bytes", "disk_write_bytes", "disk_read_ops",  "disk_write_ops"};

std::vector<int64_t> UsageValues(const Usage& u) {
  std::vector<int64_t> v(u.state_ms.begin(), u.state_ms.end());
  v.insert(v.end(), {u.cpu_ms, u.vcpu_ms, u.ram_mib_ms, u.snapshot_kib_ms, u.net_rx_bytes,
                     u.net_tx_bytes, u.net_rx_packets, u.net_tx_packets, u.disk_read_bytes,
                     u.disk_write_bytes, u.disk_read_ops, u.disk_write_ops});
  return v;
}

Usage UsageFrom(const json& row) {
  Usage u;
  std::vector<int64_t*> slots;
  for (auto& s : u.state_ms) slots.push_back(&s);
  for (int64_t* p : {&u.cpu_ms, &u.vcpu_ms, &u.ram_mib_ms, &u.snapshot_kib_ms, &u.net_rx_bytes,
                     &u.net_tx_bytes, &u.net_rx_packets, &u.net_tx_packets, &u.disk_read_bytes,
                     &u.disk_write_bytes, &u.disk_read_ops, &u.disk_write_ops}) {
    slots.push_back(p);
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    *slots[i] = row.at(std::string("u_") + kUsageColumns[i]).get<int64_t>();
  }
  return u;
}

std::string Where(std::string_view node, const ReportQuery& q, std::string_view time_column) {
  std::string out = fmt::format("node = {} AND {} >= {} AND {} < {}", Quote(node), time_column,
                                Ms(q.since), time_column, Ms(q.until));
  if (!q.vm.empty()) out += fmt::format(" AND vm_name = {}", Quote(q.vm));
  return out;
}

template <class T, class F>
Result<std::vector<T>> ParseLines(std::string_view body, F&& parse) {
  std::vector<T> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) {
      return Fail(Code::kInternal,
                  fmt::format("clickhouse: not a JSON row: {}", std::string(line.substr(0, 200))));
    }
    try {
      out.push_back(parse(j));
    } catch (const json::exception& e) {
      return Fail(Code::kInternal, fmt::format("clickhouse: unexpected row: {}", e.what()));
    }
  }
  return out;
}

}  // namespace

std::string ClickHouseEndpoint::Describe() const {
  return fmt::format("http://{}:{}/{}", host, port, database);
}

Result<ClickHouseEndpoint> ParseClickHouseUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return Fail(Code::kInvalidArgument,
                fmt::format("--clickhouse: '{}' {}; use http://[USER[:PASSWORD]@]HOST[:PORT]"
                            "[/DATABASE], e.g. http://127.0.0.1:8123/hearth",
                            url, why),
                "clickhouse");
  };
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad("does not start with http://");
  std::string_view rest = url.substr(kScheme.size());
  ClickHouseEndpoint e;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) e.database = std::string(db);
  }
  for (char c : e.database) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return bad("has a database name other than letters, digits and '_'");
    }
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = cred.find(':');
    e.user = std::string(cred.substr(0, colon));
    if (colon != std::string_view::npos) e.password = std::string(cred.substr(colon + 1));
  }
  std::string_view host = rest;
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos && rest.back() != ']') {
    host = rest.substr(0, colon);
    std::string_view port = rest.substr(colon + 1);
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || end != port.data() + port.size() || p < 1 || p > 65535) {
      return bad("has a port that is not 1-65535");
    }
    e.port = static_cast<uint16_t>(p);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return bad("has no host");
  e.host = std::string(host);
  return e;
}

std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::vector<std::string> ClickHouseBootstrap(std::string_view db) {
  return {fmt::format("CREATE DATABASE IF NOT EXISTS {}", db),
          fmt::format("CREATE TABLE IF NOT EXISTS {}.schema_versions (version UInt32, applied "
                      "DateTime) ENGINE = TinyLog",
                      db)};
}

std::string SchemaVersionQuery(std::string_view db) {
  return fmt::format("SELECT max(version) FROM {}.schema_versions", db);
}

std::vector<std::string> ClickHouseMigration(int version, std::string_view db) {
  if (version != 1) return {};
  std::string usage;
  for (const char* c : kUsageColumns) usage += fmt::format(", {} UInt64", c);
  return {
      fmt::format("CREATE TABLE IF NOT EXISTS {}.samples (node String, vm_id String, vm_name "
                  "String, start_ms UInt64, end_ms UInt64, time DateTime, day Date, state "
                  "String, vcpus UInt32, memory_mib UInt64, rss_bytes UInt64, snapshot_bytes "
                  "UInt64{}, batch String) ENGINE = ReplacingMergeTree() PARTITION BY "
                  "toYYYYMM(day) ORDER BY (vm_id, end_ms)",
                  db, usage),
      fmt::format("CREATE TABLE IF NOT EXISTS {}.events (node String, vm_id String, vm_name "
                  "String, seq UInt64, time_ms UInt64, time DateTime, day Date, type String, "
                  "state String, duration_ms UInt64, latency_ms Float64, memory_mib UInt64, "
                  "snapshot_bytes UInt64, reason String, measures String, batch String) ENGINE = "
                  "ReplacingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (vm_id, seq)",
                  db),
  };
}

std::string_view TableName(ChTable t) { return t == ChTable::kSamples ? "samples" : "events"; }

std::string SampleRow(const Sample& s, std::string_view node, std::string_view batch) {
  json j = {{"node", node},
            {"vm_id", s.vm_id},
            {"vm_name", s.vm_name},
            {"start_ms", Ms(s.start)},
            {"end_ms", Ms(s.end)},
            {"time", IsoSeconds(s.end)},
            {"day", Day(s.end)},
            {"state", ToString(s.state)},
            {"vcpus", s.vcpus},
            {"memory_mib", s.memory_mib},
            {"rss_bytes", s.rss_bytes},
            {"snapshot_bytes", s.snapshot_bytes},
            {"batch", batch}};
  std::vector<int64_t> values = UsageValues(s.usage);
  for (size_t i = 0; i < values.size(); ++i) j[kUsageColumns[i]] = values[i];
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string EventRow(const UsageEvent& e, std::string_view node, std::string_view batch) {
  json j = {{"node", node},
            {"vm_id", e.vm_id},
            {"vm_name", e.vm_name},
            {"seq", e.seq},
            {"time_ms", Ms(e.time)},
            {"time", IsoSeconds(e.time)},
            {"day", Day(e.time)},
            {"type", e.type},
            {"state", e.state},
            {"duration_ms", e.duration_ms},
            {"latency_ms", e.latency_ms},
            {"memory_mib", e.memory_mib},
            {"snapshot_bytes", e.snapshot_bytes},
            {"reason", e.reason},
            {"measures", json(e.measures).dump()},
            {"batch", batch}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string InsertStatement(std::string_view db, ChTable table) {
  return fmt::format("INSERT INTO {}.{} FORMAT JSONEachRow", db, TableName(table));
}

std::string BatchCountQuery(std::string_view db, ChTable table, std::string_view node,
                            const std::vector<std::string>& batches) {
  std::string list;
  for (const auto& b : batches) list += (list.empty() ? "" : ", ") + Quote(b);
  return fmt::format(
      "SELECT batch, count() FROM {}.{} WHERE node = {} AND batch IN ({}) "
      "GROUP BY batch FORMAT TabSeparated",
      db, TableName(table), Quote(node), list);
}

std::string UsageQuery(std::string_view db, std::string_view node, const ReportQuery& q) {
  std::string bucket = q.by ? fmt::format("intDiv(end_ms, {0}) * {0}", BucketMs(*q.by))
                            : fmt::format("toUInt64({})", Ms(q.since));
  std::string sums;
  // Aliases differ from column names: ClickHouse substitutes aliases everywhere, WHERE included.
  for (const char* c : kUsageColumns) sums += fmt::format(", sum({0}) AS u_{0}", c);
  return fmt::format(
      "SELECT {} AS bucket, vm_id, max(vm_name) AS name{} FROM {}.samples "
      "FINAL WHERE {} GROUP BY bucket, vm_id ORDER BY bucket, vm_id "
      "FORMAT JSONEachRow",
      bucket, sums, db, Where(node, q, "end_ms"));
}

std::string WakesQuery(std::string_view db, std::string_view node, const ReportQuery& q) {
  return fmt::format(
      "SELECT time_ms, vm_id, vm_name, latency_ms FROM {}.events FINAL WHERE {} "
      "AND type = {} ORDER BY time_ms, seq FORMAT JSONEachRow",
      db, Where(node, q, "time_ms"), Quote(kWokenEvent));
}

Result<std::vector<UsageRow>> ParseUsageRows(std::string_view body) {
  return ParseLines<UsageRow>(body, [](const json& j) {
    return UsageRow{At(j.at("bucket").get<int64_t>()), j.at("vm_id").get<std::string>(),
                    j.at("name").get<std::string>(), UsageFrom(j)};
  });
}

Result<std::vector<WakeRecord>> ParseWakes(std::string_view body) {
  return ParseLines<WakeRecord>(body, [](const json& j) {
    return WakeRecord{At(j.at("time_ms").get<int64_t>()), j.at("vm_id").get<std::string>(),
                      j.at("vm_name").get<std::string>(), j.at("latency_ms").get<double>()};
  });
}

int ExceptionCode(std::string_view body) {
  constexpr std::string_view kCode = "Code: ";
  size_t at = body.find(kCode);
  if (at == std::string_view::npos) return 0;
  int code = 0;
  const char* p = body.data() + at + kCode.size();
  std::from_chars(p, body.data() + body.size(), code);
  return code;
}

bool IsPermanentInsertError(std::string_view body) {
  // CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
  // CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, CANNOT_PARSE_NUMBER, INCORRECT_DATA, and
  // NO_SUCH_COLUMN_IN_TABLE (a row this schema does not have).
  for (int code : {6, 16, 26, 27, 38, 41, 72, 117}) {
    if (ExceptionCode(body) == code) return true;
  }
  return false;
}

}  // namespace hearth::metering
