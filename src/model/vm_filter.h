// Which VMs a list shows: `GET /v1/vms?state=running,suspended&label=env=prod&label=team=a`
// (`hearth vm ls --state ... --label ...`). Plain data; the API parses it, the node's list is
// filtered by it.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "model/vm.h"

namespace hearth {

struct VmFilter {
  std::set<VmState> states;  // empty: any state
  // Every one must match (AND): the VM has the label with this value.
  std::vector<std::pair<std::string, std::string>> labels;

  bool Matches(const VmRecord& vm) const;
};

// `states`: comma-separated state names ("" for any); `labels`: each "KEY=VALUE". An unknown state
// or a malformed label is invalid_argument naming the value (field "state" or "label").
Result<VmFilter> ParseVmFilter(std::string_view states, const std::vector<std::string>& labels);

}  // namespace hearth
