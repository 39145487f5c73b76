#include "model/timers.h"

#include <fmt/format.h>

#include <algorithm>

namespace hearth {

std::string_view ToString(TimerKind k) {
  switch (k) {
    case TimerKind::kStopAt:
      return "stop-at";
    case TimerKind::kStopAfter:
      return "stop-after";
    case TimerKind::kIdleTimeout:
      return "idle-timeout";
  }
  return "?";
}

std::optional<DueTimer> NextTimer(const VmRecord& vm, std::optional<Timestamp> last_activity) {
  if (vm.state != VmState::kRunning || !vm.running_since) return std::nullopt;
  const Timers& t = vm.spec.timers;
  Timestamp since = *vm.running_since;
  std::optional<DueTimer> next;
  // Candidates in tie-break order: a later one replaces the earlier only if strictly sooner.
  auto consider = [&](TimerKind kind, Timestamp at) {
    if (!next || at < next->at) next = DueTimer{kind, t.on_timer, at};
  };
  if (t.stop_at && since < *t.stop_at) consider(TimerKind::kStopAt, *t.stop_at);
  if (t.stop_after) consider(TimerKind::kStopAfter, AddClamped(since, *t.stop_after));
  if (t.idle_timeout) {
    Timestamp quiet_since = last_activity ? std::max(*last_activity, since) : since;
    consider(TimerKind::kIdleTimeout, AddClamped(quiet_since, *t.idle_timeout));
  }
  return next;
}

std::string DescribeFiring(const DueTimer& due, const Timers& timers) {
  std::string what;
  switch (due.kind) {
    case TimerKind::kStopAt:
      what = fmt::format("stop-at {} reached", FormatTime(due.at));
      break;
    case TimerKind::kStopAfter:
      what =
          fmt::format("stop-after {} reached (due {})",
                      FormatDuration(timers.stop_after.value_or(Duration{0})), FormatTime(due.at));
      break;
    case TimerKind::kIdleTimeout: {
      Duration d = timers.idle_timeout.value_or(Duration{0});
      what = fmt::format("idle-timeout {} reached (no packets since {})", FormatDuration(d),
                         FormatTime(due.at - d));
      break;
    }
  }
  return fmt::format("{}: {}", what, due.action == TimerAction::kStop ? "stopping" : "suspending");
}

void TrackRunningSince(const VmRecord& before, VmRecord& next, Timestamp now) {
  bool same_run = before.state == VmState::kRunning || before.state == VmState::kSuspending;
  if (next.state == VmState::kRunning) {
    if (!same_run || !next.running_since) next.running_since = now;
  } else if (next.state != VmState::kSuspending) {
    next.running_since.reset();
  }
}

}  // namespace hearth
