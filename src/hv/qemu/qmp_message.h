// What hearth reads out of QMP messages, without a socket: one line to a message, a message to a
// command's answer or an event, and the answers the driver uses (query-cpus-fast,
// query-blockstats, MIGRATION events). QEMU is a guest-facing process: its bytes are untrusted, so
// none of these throws or trusts a field's type; a value of the wrong type counts as missing.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "hv/driver.h"

namespace hearth::hv::qemu {

// One QMP line as a JSON object; unavailable ("<where>: not a JSON object: <line>") otherwise.
Result<nlohmann::json> ParseQmpLine(std::string_view line, std::string_view where);

// Whether `message` is an asynchronous event (it has an "event" member).
bool IsQmpEvent(const nlohmann::json& message);
// The event's name; empty when "event" is not a string.
std::string QmpEventName(const nlohmann::json& message);
// The event's "data" when it is an object, else an empty object.
nlohmann::json QmpEventData(const nlohmann::json& message);

// The answer to `command`: its "return" value; a QMP error becomes failed_precondition
// "qmp <command>: <class>: <desc>", anything else unavailable "unexpected answer".
Result<nlohmann::json> QmpCommandAnswer(const nlohmann::json& message, std::string_view command);

// The vCPU thread ids of a query-cpus-fast answer, ordered by cpu-index; entries without an
// integer cpu-index and thread-id are skipped.
std::vector<int64_t> VcpuThreadsFromQuery(const nlohmann::json& cpus);
// The sums of a query-blockstats answer's rd/wr bytes and operations (non-negative integers only;
// saturating at INT64_MAX).
DiskCounters DiskCountersFromQuery(const nlohmann::json& stats);
// The "status" of a MIGRATION event's data; empty when it has none.
std::string MigrationStatus(const nlohmann::json& data);

}  // namespace hearth::hv::qemu
