#include "hv/qemu/qmp_message.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace hearth::hv::qemu {
namespace {

using nlohmann::json;

// The string member `key` of `object`, or `fallback`.
std::string StringMember(const json& object, std::string_view key, std::string fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::move(fallback);
}

// The integer member `key` of `object` when it is one and fits int64_t.
std::optional<int64_t> IntegerMember(const json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    auto v = it->get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return std::nullopt;
}

void AddSaturating(int64_t& sum, std::optional<int64_t> v) {
  if (!v || *v < 0) return;
  sum = *v > std::numeric_limits<int64_t>::max() - sum ? std::numeric_limits<int64_t>::max()
                                                       : sum + *v;
}

}  // namespace

Result<json> ParseQmpLine(std::string_view line, std::string_view where) {
  json message = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded() || !message.is_object()) {
    return Fail(Code::kUnavailable,
                fmt::format("{}: not a JSON object: {}", where, line.substr(0, 200)));
  }
  return message;
}

bool IsQmpEvent(const json& message) { return message.is_object() && message.contains("event"); }

std::string QmpEventName(const json& message) { return StringMember(message, "event", ""); }

json QmpEventData(const json& message) {
  if (!message.is_object()) return json::object();
  auto it = message.find("data");
  return it != message.end() && it->is_object() ? *it : json::object();
}

Result<json> QmpCommandAnswer(const json& message, std::string_view command) {
  if (message.is_object() && message.contains("error")) {
    const json& e = message["error"];
    return Fail(Code::kFailedPrecondition,
                fmt::format("qmp {}: {}: {}", command, StringMember(e, "class", "Error"),
                            StringMember(e, "desc", e.dump().substr(0, 200))));
  }
  if (!message.is_object() || !message.contains("return")) {
    return Fail(Code::kUnavailable, fmt::format("qmp {}: unexpected answer {}", command,
                                                message.dump().substr(0, 200)));
  }
  return message["return"];
}

std::vector<int64_t> VcpuThreadsFromQuery(const json& cpus) {
  std::vector<std::pair<int64_t, int64_t>> by_index;
  if (cpus.is_array()) {
    for (const auto& cpu : cpus) {
      auto index = IntegerMember(cpu, "cpu-index");
      auto thread = IntegerMember(cpu, "thread-id");
      if (index && thread) by_index.emplace_back(*index, *thread);
    }
  }
  std::sort(by_index.begin(), by_index.end());
  std::vector<int64_t> threads;
  for (const auto& [_, tid] : by_index) threads.push_back(tid);
  return threads;
}

DiskCounters DiskCountersFromQuery(const json& stats) {
  DiskCounters out;
  if (!stats.is_array()) return out;
  for (const auto& dev : stats) {
    if (!dev.is_object() || !dev.contains("stats")) continue;
    const json& s = dev["stats"];
    AddSaturating(out.read_bytes, IntegerMember(s, "rd_bytes"));
    AddSaturating(out.write_bytes, IntegerMember(s, "wr_bytes"));
    AddSaturating(out.read_ops, IntegerMember(s, "rd_operations"));
    AddSaturating(out.write_ops, IntegerMember(s, "wr_operations"));
  }
  return out;
}

std::string MigrationStatus(const json& data) { return StringMember(data, "status", ""); }

}  // namespace hearth::hv::qemu
