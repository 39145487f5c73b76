// Usage reports from ClickHouse: the same sums as the local store's, over every sample this node
// sent (ClickHouse keeps them beyond the local retention). Thread-safe.
#pragma once

#include <string>

#include "metering/clickhouse_transport.h"
#include "metering/report.h"

namespace hearth::metering {

class ClickHouseUsageSource final : public UsageSource {
 public:
  ClickHouseUsageSource(ClickHouseTransport& transport, std::string database, std::string node)
      : transport_(transport), database_(std::move(database)), node_(std::move(node)) {}
  Result<UsageData> Fetch(const ReportQuery& query) override;

 private:
  ClickHouseTransport& transport_;
  std::string database_, node_;
};

}  // namespace hearth::metering
