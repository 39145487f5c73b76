// The CLI's formats: tables for people, JSON and YAML for scripts, and the parsing of values
// that people type (sizes, spec files).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace hearth::cli {

// kWide: a table with more columns (lists only).
enum class Format { kTable, kWide, kJson, kYaml };
Result<Format> ParseFormat(std::string_view text);

// Renders `value` in `format`; `table` renders the table form.
std::string Render(const nlohmann::json& value, Format format,
                   std::string (*table)(const nlohmann::json&));

std::string ToYaml(const nlohmann::json& value);
// Parses a YAML document (a spec file) into JSON. Plain scalars become numbers, booleans or null
// where they look like one; quoted scalars stay strings.
Result<nlohmann::json> YamlToJson(std::string_view text);
// Every document of a YAML stream ("---" between them); with `one`, only the first.
Result<std::vector<nlohmann::json>> YamlDocumentsToJson(std::string_view text, bool one = false);

// Parses a memory size into MiB: "512" (MiB), "256M", "256MiB", "2G", "2GiB".
Result<int64_t> ParseMemoryMib(std::string_view text);

// `--label` flags as the API's `labels` (a merge patch): "KEY=VALUE" sets, "KEY-" removes (null).
// The label rule itself is hearthd's (model/validator.h); only the shape is checked here.
Result<nlohmann::json> ParseLabelFlags(const std::vector<std::string>& flags);

// Column-aligned rows; the first row is the header. Control characters in cells are escaped
// (common/text.h), here and so in every table below.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// Tables of VMs. The next timer is shown relative to `now` ("suspend in 4m12s").
std::string VmListTable(const nlohmann::json& list);  // {"vms": [...]}
std::string VmListTable(const nlohmann::json& list, Timestamp now);
// -o wide: the list with id, image, wake, backend, pid and labels too.
std::string VmWideTable(const nlohmann::json& list);
std::string VmWideTable(const nlohmann::json& list, Timestamp now);
std::string VmDetailTable(const nlohmann::json& vm);  // one VM object
std::string VmDetailTable(const nlohmann::json& vm, Timestamp now);
// Events with their times as the API has them (RFC 3339 UTC: for pipes), or in the local zone
// (RFC 3339 with the local offset: for a terminal).
std::string EventsTable(const nlohmann::json& events);  // {"events": [...]}
std::string LocalEventsTable(const nlohmann::json& events);
std::string EventsTable(const nlohmann::json& events, bool local);
// `t` in the local time zone (TZ), RFC 3339 with its offset: "2026-11-26T08:40:28+01:00".
std::string FormatLocalTime(Timestamp t);
std::string NodeTable(const nlohmann::json& node);
// A usage report (GET /v1/usage) as a table (by bucket if it has rows, then per VM and TOTAL) and
// as CSV: one line per bucket and VM (or per VM), then a TOTAL line; raw numbers.
std::string UsageTable(const nlohmann::json& report);
std::string UsageCsv(const nlohmann::json& report);

}  // namespace hearth::cli
