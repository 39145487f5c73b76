#include "cli/output.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <ctime>

#include "common/text.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

std::string Str(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void EmitYaml(YAML::Emitter& out, const json& v) {
  if (v.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, item] : v.items()) {
      out << YAML::Key << k << YAML::Value;
      EmitYaml(out, item);
    }
    out << YAML::EndMap;
  } else if (v.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& item : v) EmitYaml(out, item);
    out << YAML::EndSeq;
  } else if (v.is_null()) {
    out << YAML::Null;
  } else if (v.is_string()) {
    out << YAML::DoubleQuoted << v.get<std::string>();
  } else {
    out << v.dump();
  }
}

// A scalar whose text is not UTF-8 (YAML's "\xFF" escapes make such bytes in a UTF-8 file).
struct NotUtf8Scalar {
  int line = 0;
};

json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (FindInvalidUtf8(s)) throw NotUtf8Scalar{node.Mark().line + 1};
  if (node.Tag() == "!") return s;  // quoted
  if (s == "~" || s == "null" || s.empty()) return nullptr;
  if (s == "true") return true;
  if (s == "false") return false;
  int64_t i = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (ec == std::errc{} && end == s.data() + s.size()) return i;
  return s;
}

// yaml-cpp keeps every pair of a mapping, duplicates included: a key given twice is refused
// rather than the last one silently taken.
struct DuplicateYamlKey {
  std::string key;
  int line = 0;
};

// Deeper than this is refused: a spec is a few levels deep, and an anchor that holds an alias of
// itself (`a: &x {b: *x}`) would recurse without end.
constexpr int kMaxYamlDepth = 64;
struct TooDeepYaml {
  int line = 0;
};

json NodeToJson(const YAML::Node& node, int depth = 0) {
  if (depth > kMaxYamlDepth) throw TooDeepYaml{node.Mark().line + 1};
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json obj = json::object();
      for (const auto& kv : node) {
        std::string key = kv.first.as<std::string>();
        if (FindInvalidUtf8(key)) throw NotUtf8Scalar{kv.first.Mark().line + 1};
        if (obj.contains(key)) throw DuplicateYamlKey{key, kv.first.Mark().line + 1};
        obj[key] = NodeToJson(kv.second, depth + 1);
      }
      return obj;
    }
    case YAML::NodeType::Sequence: {
      json arr = json::array();
      for (const auto& item : node) arr.push_back(NodeToJson(item, depth + 1));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    default:
      return nullptr;
  }
}

std::string Publish(const json& vm) {
  std::string out;
  for (const auto& p : vm.value("publish", json::array())) {
    if (!out.empty()) out += ",";
    std::string ip = p.value("host_ip", "0.0.0.0");
    out += fmt::format("{}{}:{}/{}", ip == "0.0.0.0" ? "" : ip + ":", p["host_port"].get<int>(),
                       p["guest_port"].get<int>(), p["protocol"].get<std::string>());
  }
  return out.empty() ? "-" : out;
}

// In the words of the flags that set them: "idle-timeout=30s stop-after=2h on-timer=suspend".
std::string Timers(const json& vm) {
  const json& t = vm.value("timers", json::object());
  std::string out;
  for (const char* key : {"idle_timeout", "stop_after", "stop_at"}) {
    if (t.contains(key) && !t[key].is_null()) {
      std::string flag = key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      out += fmt::format("{}={} ", flag, Str(t[key]));
    }
  }
  if (out.empty()) return "-";
  return out + "on-timer=" + Str(t.value("on_timer", json("suspend")));
}

std::string Labels(const json& vm) {
  std::string out;
  const json labels = vm.value("labels", json::object());
  for (const auto& [k, v] : labels.items()) {
    out += fmt::format("{}{}={}", out.empty() ? "" : ",", k, Str(v));
  }
  return out.empty() ? "-" : out;
}

// "4m12s" from now to `at`, to the second (to the minute past an hour); "now" once it is past.
std::string Remaining(Timestamp at, Timestamp now) {
  if (at <= now) return "now";
  auto left = std::chrono::ceil<std::chrono::seconds>(at - now);
  if (left >= std::chrono::hours(1)) left = std::chrono::floor<std::chrono::minutes>(left);
  return "in " + FormatDuration(std::chrono::duration_cast<Duration>(left));
}

// "idle-timeout: suspend in 4m12s" (the timer's flag, what it does, when; `detail`: and the
// time); "-" without a timer.
std::string NextTimer(const json& vm, Timestamp now, bool detail) {
  const json t = vm.value("next_timer", json());
  if (!t.is_object()) return "-";
  auto at = ParseTime(t.value("at", ""));
  if (!at) return "-";
  std::string out =
      fmt::format("{}: {} {}", t.value("kind", "?"), t.value("action", "?"), Remaining(*at, now));
  if (detail) out += fmt::format(" (at {})", t.value("at", ""));
  return out;
}

// "5 MiB on disk, taken 2026-11-26T07:40:28Z"; "-" without saved state.
std::string Snapshot(const json& vm) {
  const json s = vm.value("snapshot", json());
  if (!s.is_object()) return "-";
  return fmt::format("{} MiB on disk, taken {}", s.value("bytes", int64_t{0}) >> 20,
                     s.value("taken_at", "?"));
}

}  // namespace

Result<Format> ParseFormat(std::string_view text) {
  if (text == "table") return Format::kTable;
  if (text == "wide") return Format::kWide;
  if (text == "json") return Format::kJson;
  if (text == "yaml") return Format::kYaml;
  return Fail(Code::kInvalidArgument,
              fmt::format("-o: '{}' is not one of table, wide, json, yaml", text), "-o");
}

std::string Render(const json& value, Format format, std::string (*table)(const json&)) {
  switch (format) {
    case Format::kJson:
      return value.dump(2) + "\n";
    case Format::kYaml:
      return ToYaml(value);
    case Format::kTable:
    case Format::kWide:
      return table(value);
  }
  return "";
}

std::string ToYaml(const json& value) {
  YAML::Emitter out;
  EmitYaml(out, value);
  return std::string(out.c_str()) + "\n";
}

Result<json> YamlToJson(std::string_view text) {
  auto docs = YamlDocumentsToJson(text, /*one=*/true);
  if (!docs) return Fail(docs.error());
  return docs->empty() ? json(nullptr) : std::move(docs->front());
}

Result<std::vector<json>> YamlDocumentsToJson(std::string_view text, bool one) {
  // JSON is UTF-8: a file that is not would make the request body impossible to write.
  if (auto at = FindInvalidUtf8(text)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("not valid UTF-8 (byte 0x{:02x} at offset {}); save the file as UTF-8",
                            static_cast<unsigned char>(text[*at]), *at));
  }
  try {
    std::vector<json> out;
    if (one) {
      out.push_back(NodeToJson(YAML::Load(std::string(text))));
    } else {
      for (const YAML::Node& doc : YAML::LoadAll(std::string(text))) {
        out.push_back(NodeToJson(doc));
      }
    }
    return out;
  } catch (const YAML::Exception& e) {
    return Fail(Code::kInvalidArgument, fmt::format("not valid YAML: {}", e.what()));
  } catch (const TooDeepYaml& e) {
    return Fail(Code::kInvalidArgument,
                fmt::format("line {}: nested deeper than {} levels (or an alias inside its own "
                            "anchor); a VM spec is a few levels deep",
                            e.line, kMaxYamlDepth));
  } catch (const NotUtf8Scalar& e) {
    return Fail(Code::kInvalidArgument,
                fmt::format("line {}: a value that is not valid UTF-8 (from an escape such as "
                            "\\xff); JSON carries only UTF-8 text",
                            e.line));
  } catch (const DuplicateYamlKey& e) {
    return Fail(Code::kInvalidArgument,
                fmt::format("key '{}' is given twice (again on line {}); give each key once",
                            Printable(e.key), e.line),
                e.key);
  }
}

Result<int64_t> ParseMemoryMib(std::string_view text) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                fmt::format("--memory: '{}' is not a size like 512, 256M or 2G", text), "memory");
  };
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end == text.data() || n < 0) return bad();
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  if (unit.empty() || unit == "M" || unit == "MiB" || unit == "m") return n;
  if (unit == "G" || unit == "GiB" || unit == "g") {
    if (n > (int64_t{1} << 40)) return bad();
    return n * 1024;
  }
  return bad();
}

Result<json> ParseLabelFlags(const std::vector<std::string>& flags) {
  json out = json::object();
  for (const std::string& flag : flags) {
    size_t eq = flag.find('=');
    if (eq != std::string::npos && eq > 0) {
      out[flag.substr(0, eq)] = flag.substr(eq + 1);
    } else if (eq == std::string::npos && flag.size() > 1 && flag.back() == '-') {
      out[flag.substr(0, flag.size() - 1)] = nullptr;
    } else {
      return Fail(Code::kInvalidArgument,
                  fmt::format("--label: '{}' is neither KEY=VALUE (set) nor KEY- (remove), e.g. "
                              "--label env=prod",
                              Printable(flag)),
                  "labels");
    }
  }
  return out;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& cells) {
  // Cells come from the server, and through it from guests (console lines in a reason): no
  // control character in them reaches the terminal.
  std::vector<std::vector<std::string>> rows;
  rows.reserve(cells.size());
  for (const auto& row : cells) {
    rows.emplace_back();
    for (const auto& cell : row) rows.back().push_back(EscapeText(cell));
  }
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string VmListTable(const json& list) { return VmListTable(list, SystemClock().Now()); }

std::string VmListTable(const json& list, Timestamp now) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "VCPUS", "MEMORY", "IP", "PUBLISH", "TIMERS", "NEXT TIMER", "VERSION"}};
  for (const auto& vm : list.value("vms", json::array())) {
    std::string state = Str(vm["state"]);
    // Suspended VMs hold no RAM but keep their state on disk: make that visible at a glance.
    if (state == "suspended" && vm.contains("snapshot") && vm["snapshot"].is_object()) {
      state += fmt::format(" ({} MiB on disk)", vm["snapshot"].value("bytes", 0) >> 20);
    }
    rows.push_back({Str(vm["name"]), state, Str(vm["vcpus"]),
                    fmt::format("{}M", vm.value("memory_mib", 0)), Str(vm["ip"]), Publish(vm),
                    Timers(vm), NextTimer(vm, now, false), Str(vm["version"])});
  }
  if (rows.size() == 1) return "No VMs. Create one with `hearth vm create NAME --kernel PATH`.\n";
  return FormatTable(rows);
}

std::string VmWideTable(const json& list) { return VmWideTable(list, SystemClock().Now()); }

std::string VmWideTable(const json& list, Timestamp now) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "STATE", "VCPUS", "MEMORY", "IMAGE",
                                                 "IP", "PUBLISH", "WAKE", "TIMERS", "NEXT TIMER",
                                                 "BACKEND", "PID", "LABELS", "VERSION"}};
  for (const auto& vm : list.value("vms", json::array())) {
    rows.push_back({Str(vm["name"]), Str(vm["id"]), Str(vm["state"]), Str(vm["vcpus"]),
                    fmt::format("{}M", vm.value("memory_mib", 0)),
                    vm.contains("image") ? Str(vm["image"]) : "-", Str(vm["ip"]), Publish(vm),
                    vm.contains("wake") ? Str(vm["wake"]) : "-", Timers(vm),
                    NextTimer(vm, now, false), vm.contains("backend") ? Str(vm["backend"]) : "-",
                    vm.contains("pid") ? Str(vm["pid"]) : "-", Labels(vm), Str(vm["version"])});
  }
  if (rows.size() == 1) return VmListTable(list, now);
  return FormatTable(rows);
}

std::string VmDetailTable(const json& vm) { return VmDetailTable(vm, SystemClock().Now()); }

std::string VmDetailTable(const json& vm, Timestamp now) {
  std::vector<std::vector<std::string>> rows;
  for (const char* key : {"name",       "id",      "state",   "state_reason",  "vcpus",
                          "memory_mib", "kernel",  "initrd",  "rootfs",        "rootfs_readonly",
                          "image",      "cmdline", "ip",      "pid",           "backend",
                          "wake",       "restart", "version", "running_since", "created_at",
                          "updated_at"}) {
    if (vm.contains(key)) rows.push_back({std::string(key) + ":", Str(vm[key])});
  }
  rows.push_back({"labels:", Labels(vm)});
  rows.push_back({"snapshot:", Snapshot(vm)});
  rows.push_back({"publish:", Publish(vm)});
  rows.push_back({"timers:", Timers(vm)});
  rows.push_back({"next_timer:", NextTimer(vm, now, true)});
  std::string wake_ports;
  for (const auto& p : vm.value("wake_ports", json::array())) {
    wake_ports += (wake_ports.empty() ? "" : ",") + Str(p);
  }
  rows.push_back({"wake_ports:", wake_ports.empty() ? "any" : wake_ports});
  return FormatTable(rows);
}

std::string EventsTable(const json& events) { return EventsTable(events, false); }
std::string LocalEventsTable(const json& events) { return EventsTable(events, true); }

std::string EventsTable(const json& events, bool local) {
  std::vector<std::vector<std::string>> rows = {{"TIME", "TYPE", "MESSAGE"}};
  for (const auto& e : events.value("events", json::array())) {
    std::string time = Str(e["time"]);
    if (auto t = ParseTime(time); t && local) time = FormatLocalTime(*t);
    rows.push_back({time, Str(e["type"]), e.value("message", "")});
  }
  return FormatTable(rows);
}

std::string FormatLocalTime(Timestamp t) {
  auto ms_total = t.time_since_epoch().count();
  time_t secs = static_cast<time_t>(ms_total / 1000);
  int ms = static_cast<int>(ms_total % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  struct tm tm {};
  localtime_r(&secs, &tm);
  long off = tm.tm_gmtoff / 60;  // minutes east of UTC
  char sign = off < 0 ? '-' : '+';
  off = off < 0 ? -off : off;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}{:02}:{:02}", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ms ? fmt::format(".{:03}", ms) : "", sign, off / 60, off % 60);
}

std::string NodeTable(const json& n) {
  std::string backends;
  for (const auto& b : n.value("backends", json::array())) {
    backends += (backends.empty() ? "" : ", ") + Str(b);
  }
  std::string by_state;
  const json by_state_json = n["vms"].value("by_state", json::object());
  for (const auto& [state, count] : by_state_json.items()) {
    by_state += fmt::format("{}{} {}", by_state.empty() ? "" : ", ", count.get<int>(), state);
  }
  return FormatTable({
      {"hostname:", Str(n["hostname"])},
      {"hearthd:", Str(n["version"])},
      {"cpus:", Str(n["cpus"])},
      {"memory:", fmt::format("{} MiB", Str(n["memory_mib"]))},
      {"memory running:",
       fmt::format("{} MiB of {} MiB admissible (ratio {})", Str(n["memory_running_mib"]),
                   Str(n["memory_admission_mib"]), Str(n["memory_ratio"]))},
      {"backends:", backends.empty() ? "none" : backends},
      {"why:", Str(n["backend_note"])},
      {"vms:",
       fmt::format("{}{}", Str(n["vms"]["total"]), by_state.empty() ? "" : " (" + by_state + ")")},
  });
}

}  // namespace hearth::cli
