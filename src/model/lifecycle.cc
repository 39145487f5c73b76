#include "model/lifecycle.h"

#include <fmt/format.h>

#include <array>
#include <initializer_list>
#include <optional>

namespace hearth {
namespace {

using S = VmState;
using E = VmEvent;

struct Transition {
  VmState from;
  VmEvent event;
  VmState to;
  bool removes = false;
};

// The whole lifecycle; every pair not listed is illegal. Documented in lifecycle.h.
constexpr Transition kTable[] = {
    {S::kCreated, E::kEdit, S::kCreated},
    {S::kRunning, E::kEdit, S::kRunning},
    {S::kSuspended, E::kEdit, S::kSuspended},
    {S::kStopped, E::kEdit, S::kStopped},
    {S::kFailed, E::kEdit, S::kFailed},
    {S::kCreated, E::kEditHardware, S::kCreated},
    {S::kStopped, E::kEditHardware, S::kStopped},
    {S::kFailed, E::kEditHardware, S::kFailed},
    {S::kSuspended, E::kDiscardState, S::kStopped},
    {S::kCreated, E::kStart, S::kStarting},
    {S::kStopped, E::kStart, S::kStarting},
    {S::kFailed, E::kStart, S::kStarting},
    {S::kSuspended, E::kStart, S::kResuming},
    {S::kCreated, E::kStartFresh, S::kStarting},
    {S::kStopped, E::kStartFresh, S::kStarting},
    {S::kFailed, E::kStartFresh, S::kStarting},
    {S::kSuspended, E::kStartFresh, S::kStarting},
    {S::kStarting, E::kStop, S::kStarting},
    {S::kRunning, E::kStop, S::kStopping},
    {S::kSuspended, E::kStop, S::kStopped},
    {S::kStarting, E::kKill, S::kStarting},
    {S::kRunning, E::kKill, S::kStopping},
    {S::kSuspended, E::kKill, S::kStopped},
    {S::kRunning, E::kSuspend, S::kSuspending},
    {S::kSuspended, E::kResume, S::kResuming},
    {S::kSuspended, E::kWake, S::kResuming},
    {S::kRunning, E::kTimerFired, S::kRunning},
    {S::kCreated, E::kDelete, S::kCreated, true},
    {S::kStopped, E::kDelete, S::kStopped, true},
    {S::kFailed, E::kDelete, S::kFailed, true},
    {S::kCreated, E::kForceDelete, S::kCreated, true},
    {S::kStopped, E::kForceDelete, S::kStopped, true},
    {S::kFailed, E::kForceDelete, S::kFailed, true},
    {S::kSuspended, E::kForceDelete, S::kSuspended, true},
    {S::kRunning, E::kForceDelete, S::kDeleting},
    // outcomes
    {S::kStarting, E::kLaunched, S::kStarting},
    {S::kStarting, E::kBooted, S::kRunning},
    {S::kStarting, E::kCancelled, S::kStopped},
    {S::kStarting, E::kExited, S::kStopped},
    {S::kRunning, E::kExited, S::kStopped},
    {S::kStarting, E::kCrashed, S::kFailed},
    {S::kRunning, E::kCrashed, S::kFailed},
    {S::kStarting, E::kRestart, S::kStarting},
    {S::kRunning, E::kRestart, S::kStarting},
    {S::kStarting, E::kFailed, S::kFailed},
    {S::kRunning, E::kFailed, S::kFailed},
    {S::kSuspending, E::kFailed, S::kFailed},
    {S::kResuming, E::kFailed, S::kFailed},
    {S::kStopping, E::kEnded, S::kStopped},
    {S::kDeleting, E::kEnded, S::kDeleting, true},
    {S::kSuspending, E::kSaved, S::kSuspended},
    {S::kSuspending, E::kSaveFailed, S::kRunning},
    {S::kResuming, E::kRestored, S::kRunning},
    {S::kResuming, E::kRestoreFailed, S::kSuspended},
    {S::kSuspended, E::kRestoreFailed, S::kSuspended},
    {S::kRunning, E::kAdopted, S::kRunning},
    {S::kSuspending, E::kAdopted, S::kRunning},
    {S::kResuming, E::kAdopted, S::kRunning},
    {S::kCreated, E::kRecovered, S::kCreated},
    {S::kSuspended, E::kRecovered, S::kSuspended},
    {S::kStopped, E::kRecovered, S::kStopped},
    {S::kFailed, E::kRecovered, S::kFailed},
};

struct EventInfo {
  std::string_view name;
  std::string_view verb;  // in "cannot <verb> vm 'x'"; empty for outcomes
  std::string_view hint;  // what to do instead, when refused
};

constexpr EventInfo kEvents[kVmEvents] = {
    {"edit", "edit", "retry when the transition is over"},
    {"edit-hardware", "change the hardware of", "stop it first"},
    {"discard-state", "discard the saved state of", "only a suspended VM has saved state"},
    {"start", "start", ""},
    {"start-fresh", "start", ""},
    {"stop", "stop", "only a running, starting or suspended VM can be stopped"},
    {"kill", "stop", "only a running, starting or suspended VM can be stopped"},
    {"suspend", "suspend", "only a running VM can be suspended"},
    {"resume", "resume", "only a suspended VM can be resumed; use start"},
    {"wake", "wake", "only a suspended VM wakes"},
    {"timer-fired", "fire a timer of", "only a running VM has timers"},
    {"delete", "delete",
     "stop it first, or delete with --force (a suspended VM's saved state is discarded)"},
    {"force-delete", "delete", "retry when the transition is over"},
    {"launched", "", ""},
    {"booted", "", ""},
    {"cancelled", "", ""},
    {"exited", "", ""},
    {"crashed", "", ""},
    {"restart", "", ""},
    {"failed", "", ""},
    {"ended", "", ""},
    {"saved", "", ""},
    {"save-failed", "", ""},
    {"restored", "", ""},
    {"restore-failed", "", ""},
    {"adopted", "", ""},
    {"recovered", "", ""},
};

std::optional<Step> Find(VmState from, VmEvent event) {
  for (const Transition& t : kTable) {
    if (t.from == from && t.event == event) return Step{t.to, t.removes};
  }
  return std::nullopt;
}

// Refusals whose advice depends on the state, not only on the event.
std::string_view Hint(VmState from, VmEvent event) {
  if (event == E::kStart && from == S::kRunning) return "it is already up";
  if (event == E::kDelete && IsTransitional(from)) return "retry when the transition is over";
  return kEvents[static_cast<int>(event)].hint;
}

}  // namespace

std::string_view ToString(VmEvent e) { return kEvents[static_cast<int>(e)].name; }

bool IsRequest(VmEvent e) { return !kEvents[static_cast<int>(e)].verb.empty(); }

Result<Step> Next(VmState from, VmEvent event) {
  if (auto step = Find(from, event)) return *step;
  return Fail(Code::kFailedPrecondition,
              fmt::format("'{}' is not legal in state {}", ToString(event), ToString(from)));
}

Result<Step> Next(const VmRecord& vm, VmEvent event) {
  if (auto step = Find(vm.state, event)) return *step;
  const EventInfo& info = kEvents[static_cast<int>(event)];
  if (!IsRequest(event)) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("vm '{}' is {}: '{}' is not legal in that state", vm.name,
                            ToString(vm.state), info.name));
  }
  std::string_view hint = Hint(vm.state, event);
  return Fail(Code::kFailedPrecondition,
              fmt::format("cannot {} vm '{}': it is {}{}{}", info.verb, vm.name, ToString(vm.state),
                          hint.empty() ? "" : "; ", hint));
}

bool Allows(VmState from, VmEvent event) { return Find(from, event).has_value(); }

NoChange Idempotent(VmState from, VmEvent event) {
  auto is = [from](std::initializer_list<VmState> states) {
    for (VmState s : states) {
      if (s == from) return true;
    }
    return false;
  };
  switch (event) {
    case E::kStart:
    case E::kStartFresh:
    case E::kResume:
      if (from == S::kRunning) return NoChange::kAlready;
      return is({S::kStarting, S::kResuming}) ? NoChange::kUnderWay : NoChange::kNo;
    case E::kStop:
    case E::kKill:
      if (is({S::kCreated, S::kStopped})) return NoChange::kAlready;
      return from == S::kStopping ? NoChange::kUnderWay : NoChange::kNo;
    case E::kSuspend:
      if (from == S::kSuspended) return NoChange::kAlready;
      return from == S::kSuspending ? NoChange::kUnderWay : NoChange::kNo;
    default:
      return NoChange::kNo;
  }
}

bool HoldsMemory(VmState s) {
  switch (s) {
    case S::kStarting:
    case S::kRunning:
    case S::kSuspending:
    case S::kResuming:
    case S::kStopping:
      return true;
    default:
      return false;
  }
}

bool IsTransitional(VmState s) {
  switch (s) {
    case S::kStarting:
    case S::kSuspending:
    case S::kResuming:
    case S::kStopping:
    case S::kDeleting:
      return true;
    default:
      return false;
  }
}

StateClass Classify(VmState state) {
  switch (state) {
    case S::kRunning:
      return StateClass::kRunning;
    case S::kSuspended:
      return StateClass::kSuspended;
    case S::kCreated:
    case S::kStopped:
    case S::kFailed:
      return StateClass::kStopped;
    default:
      return StateClass::kTransition;
  }
}

}  // namespace hearth
