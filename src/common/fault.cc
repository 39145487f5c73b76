#include "common/fault.h"

#include <cstdlib>
#include <string>

namespace hearth {

FaultAction FaultAt(std::string_view point) {
  static const std::string spec = [] {
    const char* v = std::getenv("HEARTH_FAULT");
    return std::string(v ? v : "");
  }();
  if (spec.empty()) return FaultAction::kNone;
  std::string_view s = spec;
  bool vmm = s.ends_with(":vmm");
  if (vmm) s.remove_suffix(4);
  if (s != point) return FaultAction::kNone;
  return vmm ? FaultAction::kKillVmm : FaultAction::kExit;
}

}  // namespace hearth
