#include "cli/spec_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli.h"
#include "cli/output.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

// What `vm show` prints about the record rather than the spec: ignored in a file.
constexpr std::array<std::string_view, 11> kStatusFields = {
    "state",      "state_reason", "version", "created_at", "updated_at", "running_since",
    "next_timer", "pid",          "ip",      "backend",    "snapshot"};

// The timers, which a file may also give at the top level, as the flags do.
constexpr std::array<std::string_view, 4> kTimerFields = {"idle_timeout", "stop_after", "stop_at",
                                                          "on_timer"};

bool IsStatus(std::string_view key) {
  for (auto f : kStatusFields) {
    if (f == key) return true;
  }
  return false;
}

Status Invalid(const std::string& field, const std::string& message) {
  return Fail(Code::kInvalidArgument, fmt::format("{}: {}", field, message), field);
}

// `memory: 256M` (the flag's units) into memory_mib; both given must agree.
Status TakeMemory(const json& value, json& spec) {
  std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  auto mib = ParseMemoryMib(text);
  if (!mib) {
    return Invalid("memory", fmt::format("'{}' is not a size like 512, 256M or 2G", text));
  }
  if (spec.contains("memory_mib") && spec["memory_mib"] != *mib) {
    return Invalid("memory", fmt::format("{} disagrees with memory_mib {}; give one of them", text,
                                         spec["memory_mib"].dump()));
  }
  spec["memory_mib"] = *mib;
  return Ok();
}

// A top-level timer field into spec.timers; the same timer given both ways must agree.
Status TakeTimer(const std::string& key, const json& value, json& spec) {
  if (!spec.contains("timers")) spec["timers"] = json::object();
  json& timers = spec["timers"];
  if (!timers.is_object()) return Invalid("timers", "expected a mapping of timer fields");
  if (timers.contains(key) && timers[key] != value) {
    return Invalid(key, fmt::format("{} disagrees with timers.{} {}; give one of them",
                                    value.dump(), key, timers[key].dump()));
  }
  timers[key] = value;
  return Ok();
}

Status TakeIdentity(const std::string& key, const json& value, DeclaredVm& vm) {
  if (key == "name") {
    if (!value.is_string()) return Invalid(key, "expected the VM's name as a string");
    vm.name = value.get<std::string>();
  } else if (key == "id") {
    if (!value.is_string()) return Invalid(key, "expected the VM's id as a string");
    vm.id = value.get<std::string>();
  } else {  // generation
    if (!value.is_number_integer()) return Invalid(key, "expected a whole number");
    vm.generation = value.get<int64_t>();
  }
  return Ok();
}

}  // namespace

Result<DeclaredVm> DeclaredFromJson(const json& doc) {
  if (!doc.is_object()) {
    return Fail(Code::kInvalidArgument,
                "expected a mapping of VM fields (as `hearth vm show NAME -o yaml` prints)");
  }
  DeclaredVm vm;
  // Spec fields first, so that the aliases below can be checked against them.
  for (const auto& [key, value] : doc.items()) {
    bool alias = key == "memory" ||
                 std::find(kTimerFields.begin(), kTimerFields.end(), key) != kTimerFields.end();
    if (alias || IsStatus(key) || key == "name" || key == "id" || key == "generation") continue;
    vm.spec[key] = value;
  }
  for (const auto& [key, value] : doc.items()) {
    Status s = Ok();
    if (key == "memory") {
      s = TakeMemory(value, vm.spec);
    } else if (std::find(kTimerFields.begin(), kTimerFields.end(), key) != kTimerFields.end()) {
      s = TakeTimer(key, value, vm.spec);
    } else if (key == "name" || key == "id" || key == "generation") {
      s = TakeIdentity(key, value, vm);
    }
    if (!s) return Fail(s.error());
  }
  return vm;
}

Result<std::vector<DeclaredVm>> ParseVmFile(std::string_view text) {
  auto docs = YamlDocumentsToJson(text);
  if (!docs) return Fail(docs.error());
  std::vector<json> items;
  for (json& d : *docs) {
    if (d.is_null()) continue;  // an empty document, e.g. after a trailing "---"
    if (d.is_array()) {
      for (json& e : d) items.push_back(std::move(e));
    } else {
      items.push_back(std::move(d));
    }
  }
  if (items.empty()) {
    return Fail(Code::kInvalidArgument,
                "no VM in the file; see `hearth vm create --help` for an example");
  }
  std::vector<DeclaredVm> out;
  for (size_t i = 0; i < items.size(); ++i) {
    auto vm = DeclaredFromJson(items[i]);
    if (!vm) {
      if (items.size() == 1) return Fail(vm.error());
      return Fail(vm.error().Wrap(fmt::format("vm {} of {}", i + 1, items.size())));
    }
    out.push_back(std::move(*vm));
  }
  return out;
}

std::string ReadFileArgument(const std::string& path, std::string_view flag) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path);
  if (!in) throw UsageError{fmt::format("{}: cannot read '{}'", flag, path)};
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace hearth::cli
