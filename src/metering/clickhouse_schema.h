// hearth's tables in ClickHouse and the statements metering sends, as plain text built here (and
// unit-tested) before any I/O. Written for ClickHouse 18.16 (Debian 12), which also runs them on
// current releases: MergeTree engines with PARTITION BY/ORDER BY, DateTime and Date (no
// DateTime64, LowCardinality, TTL or CODEC), no query parameters (values are inlined, checked or
// escaped), and JSONEachRow rows that carry every column.
//
// Tables (database from the URL, "hearth" by default):
//   schema_versions  version UInt32, applied DateTime: one row per migration applied
//   samples          one row per VM and sample; ReplacingMergeTree keyed by (vm_id, end_ms)
//   events           one row per metering event; ReplacingMergeTree keyed by (vm_id, seq)
// A row sent twice (a retried batch) has the same key and is merged away; reports read with
// FINAL, so they count it once even before the merge. `batch` names the spool batch a row came
// in, so that a batch whose insert had no answer can be looked for before it is sent again.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "metering/report.h"
#include "metering/usage.h"

namespace hearth::metering {

// The schema version this build writes. A database at a newer version is refused.
inline constexpr int kClickHouseSchemaVersion = 1;

// The statements that take the database from version `version` - 1 to `version` (1-based).
std::vector<std::string> ClickHouseMigration(int version, std::string_view db);
// Creates the database and the version table; idempotent.
std::vector<std::string> ClickHouseBootstrap(std::string_view db);
std::string SchemaVersionQuery(std::string_view db);  // one number in TabSeparated

enum class ChTable { kSamples, kEvents };
std::string_view TableName(ChTable t);

// One JSONEachRow line (with its '\n') per row.
std::string SampleRow(const Sample& s, std::string_view node, std::string_view batch);
std::string EventRow(const UsageEvent& e, std::string_view node, std::string_view batch);

std::string InsertStatement(std::string_view db, ChTable table);
// SELECT batch, count() for `batches` of `node`: which of them arrived (TabSeparated).
std::string BatchCountQuery(std::string_view db, ChTable table, std::string_view node,
                            const std::vector<std::string>& batches);

// The report's sums and wakes for `node` (JSONEachRow), and their parsing.
std::string UsageQuery(std::string_view db, std::string_view node, const ReportQuery& q);
std::string WakesQuery(std::string_view db, std::string_view node, const ReportQuery& q);
Result<std::vector<UsageRow>> ParseUsageRows(std::string_view body);
Result<std::vector<WakeRecord>> ParseWakes(std::string_view body);

// A string literal for ClickHouse SQL: quoted, with quotes and backslashes escaped.
std::string Quote(std::string_view text);
// ClickHouse's name for what went wrong, from an error reply ("Code: 60, ..." -> 60); 0 if none.
int ExceptionCode(std::string_view body);
// True for errors that sending the same rows again cannot fix (they do not parse).
bool IsPermanentInsertError(std::string_view body);

}  // namespace hearth::metering
