// Fault injection for the crash tests. With HEARTH_FAULT="<point>" in hearthd's environment the
// process ends at once (as if killed) when it reaches the named point; with "<point>:vmm" the
// VM's VMM is killed there instead and hearthd carries on. Unset in production, where a point
// costs one comparison. Points are named where they are placed ("suspend-saved", ...).
#pragma once

#include <string_view>

namespace hearth {

enum class FaultAction { kNone, kExit, kKillVmm };

// What to do at `point` (reads HEARTH_FAULT once).
FaultAction FaultAt(std::string_view point);

}  // namespace hearth
