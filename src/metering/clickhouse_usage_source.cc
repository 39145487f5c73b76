#include "metering/clickhouse_usage_source.h"

#include <fmt/format.h>

#include "metering/clickhouse_schema.h"
#include "model/validator.h"

namespace hearth::metering {

Result<UsageData> ClickHouseUsageSource::Fetch(const ReportQuery& query) {
  if (!query.vm.empty()) {
    // Names are inlined (quoted); hearth's names are plain anyway.
    if (auto s = ValidateName(query.vm); !s) return Fail(s.error());
  }
  auto run = [&](const std::string& sql) -> Result<std::string> {
    auto r = transport_.Execute(sql);
    if (!r) return Fail(r.error().Wrap("usage from ClickHouse"));
    if (r->status != 200) {
      return Fail(Code::kUnavailable,
                  fmt::format("usage from ClickHouse {}: HTTP {}: {}", transport_.Describe(),
                              r->status, r->body.substr(0, 300)));
    }
    return std::move(r->body);
  };
  UsageData data;
  auto rows = run(UsageQuery(database_, node_, query));
  if (!rows) return Fail(rows.error());
  auto parsed = ParseUsageRows(*rows);
  if (!parsed) return Fail(parsed.error());
  data.rows = std::move(*parsed);
  auto wakes = run(WakesQuery(database_, node_, query));
  if (!wakes) return Fail(wakes.error());
  auto w = ParseWakes(*wakes);
  if (!w) return Fail(w.error());
  data.wakes = std::move(*w);
  return data;
}

}  // namespace hearth::metering
