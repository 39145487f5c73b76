// Usage reports (`hearth usage`, GET /v1/usage): per VM and in total over a time range,
// optionally by minute, hour or day. A source (the local store or ClickHouse) sums the samples
// per bucket and VM and lists the wakes; the report is built from that here, the same way for
// every source, so that their reports agree.
//
// A sample belongs to the bucket its interval ends in, and to the range if its end is in
// [since, until). Samples older than a day are kept locally as hourly sums: locally, a range or a
// minute bucket older than that is resolved to the hour.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "metering/usage.h"

namespace hearth::metering {

enum class Bucket { kMinute, kHour, kDay };
std::string_view ToString(Bucket b);
Result<Bucket> ParseBucket(std::string_view text);
int64_t BucketMs(Bucket b);

struct ReportQuery {
  Timestamp since, until;
  std::optional<Bucket> by;  // unset: one bucket for the whole range
  std::string vm;            // a VM name; empty: every VM
  // The start of the bucket `t` falls in (the range's start without `by`).
  Timestamp BucketOf(Timestamp t) const;
};

// Reads a query from request parameters: vm, since, until (RFC 3339, or a duration meaning that
// long before `now`, or "now"), by. Defaults: the 24 hours up to `now`. Errors name the parameter.
Result<ReportQuery> ParseReportQuery(const std::map<std::string, std::string>& params,
                                     Timestamp now);

// What a source returns: sums per bucket and VM, and the wakes in the range.
struct UsageRow {
  Timestamp bucket;
  std::string vm_id, vm_name;
  Usage usage;
  bool operator==(const UsageRow&) const = default;
};
struct WakeRecord {
  Timestamp time;
  std::string vm_id, vm_name;
  double latency_ms = 0;
  bool operator==(const WakeRecord&) const = default;
};
struct UsageData {
  std::vector<UsageRow> rows;
  std::vector<WakeRecord> wakes;
};

class UsageSource {
 public:
  virtual ~UsageSource() = default;
  virtual Result<UsageData> Fetch(const ReportQuery& query) = 0;
};

struct ReportLine {
  std::optional<Timestamp> bucket;  // set in `rows`
  std::string vm_id, vm_name;       // empty in `total`
  Usage usage;
  int64_t wakes = 0;
  std::optional<double> wake_p50_ms, wake_p99_ms;
  bool operator==(const ReportLine&) const = default;
};

struct Report {
  ReportQuery query;
  std::string source;            // "local" or "clickhouse"
  std::vector<ReportLine> rows;  // by bucket, then VM (only with `by`)
  std::vector<ReportLine> vms;   // one per VM, over the whole range
  ReportLine total;
};

Report BuildReport(const ReportQuery& query, const UsageData& data, std::string source);
nlohmann::json ReportToJson(const Report& report);

// The nearest-rank percentile (p in (0, 100]) of `values`; nullopt when empty.
std::optional<double> Percentile(std::vector<double> values, double p);

}  // namespace hearth::metering
