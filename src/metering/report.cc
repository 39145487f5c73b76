#include "metering/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common/text.h"
#include "model/validator.h"

namespace hearth::metering {
namespace {

using nlohmann::json;

int64_t Ms(Timestamp t) { return t.time_since_epoch().count(); }

tl::unexpected<Error> Bad(std::string_view param, std::string message) {
  return Fail(Code::kInvalidArgument, fmt::format("{}: {}", param, message), std::string(param));
}

Result<Timestamp> ParseWhen(std::string_view param, std::string_view text, Timestamp now) {
  if (text == "now") return now;
  if (auto t = ParseTime(text); t) return *t;
  if (auto d = ParseDuration(text); d) {
    // Only times RFC 3339 can write (from 1970 on): `now - d` must neither wrap nor go before it.
    if (*d > now - kEarliestTime) {
      return Bad(param, fmt::format("'{}' before now ({}) is before {}; give a shorter duration",
                                    Printable(text), FormatTime(now), FormatTime(kEarliestTime)));
    }
    return now - *d;
  }
  return Bad(param, fmt::format("'{}' is neither an RFC 3339 time (2026-11-26T07:00:00Z), "
                                "a duration before now (24h, 90m) nor now",
                                Printable(text)));
}

json UsageJson(const ReportLine& line) {
  const Usage& u = line.usage;
  json j = {
      {"cpu_seconds", static_cast<double>(u.cpu_ms) / 1e3},
      {"vcpu_seconds", static_cast<double>(u.vcpu_ms) / 1e3},
      {"ram_gib_hours", static_cast<double>(u.ram_mib_ms) / 1024.0 / 3.6e6},
      {"snapshot_gib_hours", static_cast<double>(u.snapshot_kib_ms) / 1048576.0 / 3.6e6},
      {"running_seconds", static_cast<double>(u.ms(StateClass::kRunning)) / 1e3},
      {"suspended_seconds", static_cast<double>(u.ms(StateClass::kSuspended)) / 1e3},
      {"stopped_seconds", static_cast<double>(u.ms(StateClass::kStopped)) / 1e3},
      {"transition_seconds", static_cast<double>(u.ms(StateClass::kTransition)) / 1e3},
      {"net_rx_bytes", u.net_rx_bytes},
      {"net_tx_bytes", u.net_tx_bytes},
      {"net_rx_packets", u.net_rx_packets},
      {"net_tx_packets", u.net_tx_packets},
      {"disk_read_bytes", u.disk_read_bytes},
      {"disk_write_bytes", u.disk_write_bytes},
      {"disk_read_ops", u.disk_read_ops},
      {"disk_write_ops", u.disk_write_ops},
      {"wakes", line.wakes},
      {"wake_p50_ms", line.wake_p50_ms ? json(*line.wake_p50_ms) : json(nullptr)},
      {"wake_p99_ms", line.wake_p99_ms ? json(*line.wake_p99_ms) : json(nullptr)},
  };
  if (line.bucket) j["start"] = FormatTime(*line.bucket);
  if (!line.vm_id.empty()) {
    j["vm"] = line.vm_name;
    j["vm_id"] = line.vm_id;
  }
  return j;
}

void SetWakes(ReportLine& line, const std::vector<double>& latencies) {
  line.wakes = static_cast<int64_t>(latencies.size());
  line.wake_p50_ms = Percentile(latencies, 50);
  line.wake_p99_ms = Percentile(latencies, 99);
}

}  // namespace

std::string_view ToString(Bucket b) {
  switch (b) {
    case Bucket::kMinute:
      return "minute";
    case Bucket::kHour:
      return "hour";
    case Bucket::kDay:
      return "day";
  }
  return "unknown";
}

Result<Bucket> ParseBucket(std::string_view text) {
  for (Bucket b : {Bucket::kMinute, Bucket::kHour, Bucket::kDay}) {
    if (text == ToString(b)) return b;
  }
  return Bad("by", fmt::format("'{}' is not one of minute, hour, day", Printable(text)));
}

int64_t BucketMs(Bucket b) {
  switch (b) {
    case Bucket::kMinute:
      return 60'000;
    case Bucket::kHour:
      return 3'600'000;
    case Bucket::kDay:
      return 86'400'000;
  }
  return 1;
}

Timestamp ReportQuery::BucketOf(Timestamp t) const {
  if (!by) return since;
  int64_t b = BucketMs(*by);
  return Timestamp{Duration{Ms(t) / b * b}};
}

Result<ReportQuery> ParseReportQuery(const std::map<std::string, std::string>& params,
                                     Timestamp now) {
  ReportQuery q;
  q.until = now;
  q.since = now - std::chrono::hours(24);
  for (const auto& [key, value] : params) {
    if (key == "since" || key == "until") {
      auto t = ParseWhen(key, value, now);
      if (!t) return Fail(t.error());
      (key == "since" ? q.since : q.until) = *t;
    } else if (key == "by") {
      if (value.empty()) continue;
      auto b = ParseBucket(value);
      if (!b) return Fail(b.error());
      q.by = *b;
    } else if (key == "vm") {
      if (auto s = ValidateName(value); !value.empty() && !s) {
        return Bad("vm", s.error().message);
      }
      q.vm = value;
    } else if (key != "source") {
      return Bad(Printable(key), "is not a usage parameter; use vm, since, until, by or source");
    }
  }
  if (q.since >= q.until) {
    return Bad("since", fmt::format("{} is not before until ({})", FormatTime(q.since),
                                    FormatTime(q.until)));
  }
  // Bound the work: at most 100,000 buckets. since and until are both within 1970..9999 (ParseWhen
  // and ParseTime), so their difference cannot overflow.
  if (q.by && (Ms(q.until) - Ms(q.since)) / BucketMs(*q.by) > 100'000) {
    return Bad("by", fmt::format("{} buckets of a {} are too many; pick a shorter range or a "
                                 "larger bucket",
                                 (Ms(q.until) - Ms(q.since)) / BucketMs(*q.by), ToString(*q.by)));
  }
  return q;
}

std::optional<double> Percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

Report BuildReport(const ReportQuery& query, const UsageData& data, std::string source) {
  Report r;
  r.query = query;
  r.source = std::move(source);
  using Key = std::tuple<int64_t, std::string, std::string>;  // bucket, name, id
  std::map<Key, ReportLine> rows;
  std::map<std::pair<std::string, std::string>, ReportLine> vms;  // name, id
  std::map<Key, std::vector<double>> row_wakes;
  std::map<std::pair<std::string, std::string>, std::vector<double>> vm_wakes;
  std::vector<double> all_wakes;
  auto line = [](std::optional<Timestamp> bucket, const std::string& id, const std::string& name) {
    ReportLine l;
    l.bucket = bucket;
    l.vm_id = id;
    l.vm_name = name;
    return l;
  };
  for (const UsageRow& row : data.rows) {
    Key key{Ms(row.bucket), row.vm_name, row.vm_id};
    auto it = rows.try_emplace(key, line(row.bucket, row.vm_id, row.vm_name)).first;
    it->second.usage += row.usage;
    auto v = vms.try_emplace({row.vm_name, row.vm_id}, line({}, row.vm_id, row.vm_name)).first;
    v->second.usage += row.usage;
    r.total.usage += row.usage;
  }
  for (const WakeRecord& w : data.wakes) {
    Timestamp bucket = query.BucketOf(w.time);
    Key key{Ms(bucket), w.vm_name, w.vm_id};
    rows.try_emplace(key, line(bucket, w.vm_id, w.vm_name));
    vms.try_emplace({w.vm_name, w.vm_id}, line({}, w.vm_id, w.vm_name));
    row_wakes[key].push_back(w.latency_ms);
    vm_wakes[{w.vm_name, w.vm_id}].push_back(w.latency_ms);
    all_wakes.push_back(w.latency_ms);
  }
  if (query.by) {
    for (auto& [key, l] : rows) {
      SetWakes(l, row_wakes[key]);
      r.rows.push_back(std::move(l));
    }
  }
  for (auto& [key, l] : vms) {
    SetWakes(l, vm_wakes[key]);
    r.vms.push_back(std::move(l));
  }
  SetWakes(r.total, all_wakes);
  return r;
}

json ReportToJson(const Report& report) {
  json rows = json::array(), vms = json::array();
  for (const auto& l : report.rows) rows.push_back(UsageJson(l));
  for (const auto& l : report.vms) vms.push_back(UsageJson(l));
  json out = {
      {"since", FormatTime(report.query.since)},
      {"until", FormatTime(report.query.until)},
      {"by", report.query.by ? json(std::string(ToString(*report.query.by))) : json(nullptr)},
      {"source", report.source},
      {"vms", std::move(vms)},
      {"total", UsageJson(report.total)},
  };
  if (report.query.by) out["rows"] = std::move(rows);
  return out;
}

}  // namespace hearth::metering
