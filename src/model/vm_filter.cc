#include "model/vm_filter.h"

#include <fmt/format.h>

#include "common/text.h"
#include "model/validator.h"

namespace hearth {

bool VmFilter::Matches(const VmRecord& vm) const {
  if (!states.empty() && !states.count(vm.state)) return false;
  for (const auto& [key, value] : labels) {
    auto it = vm.spec.labels.find(key);
    if (it == vm.spec.labels.end() || it->second != value) return false;
  }
  return true;
}

Result<VmFilter> ParseVmFilter(std::string_view states, const std::vector<std::string>& labels) {
  VmFilter filter;
  while (!states.empty()) {
    size_t comma = states.find(',');
    std::string_view name = states.substr(0, comma);
    states = comma == std::string_view::npos ? std::string_view{} : states.substr(comma + 1);
    auto state = ParseVmState(name);
    if (!state) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("state: '{}' is not a VM state; use one or more of created, "
                              "starting, running, suspending, suspended, resuming, stopping, "
                              "stopped, failed, deleting, separated by commas",
                              Printable(name)),
                  "state");
    }
    filter.states.insert(*state);
  }
  for (const std::string& label : labels) {
    size_t eq = label.find('=');
    if (eq == std::string::npos) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("label: '{}' is not KEY=VALUE, e.g. env=prod", Printable(label)),
                  "label");
    }
    std::string key = label.substr(0, eq), value = label.substr(eq + 1);
    if (auto s = ValidateLabel(key, value); !s) {
      return Fail(Code::kInvalidArgument, fmt::format("label: {}", s.error().message), "label");
    }
    filter.labels.emplace_back(std::move(key), std::move(value));
  }
  return filter;
}

}  // namespace hearth
