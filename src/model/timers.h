// When a VM's timers (VmSpec::timers) fall due: pure functions of the record and of when the node
// last saw packets on the VM's tap. The node's timer thread (node/node_timers.cc) acts on them;
// the API shows the next one.
//
// Timers apply to a running VM only, and count from VmRecord::running_since (when it last became
// running: a start, a resume or an automatic restart):
// - stop-after D fires at running_since + D;
// - stop-at T fires at T, for a run that began before T (a VM started after T is left alone);
// - idle-timeout D fires D after the last packet either way on the tap (or after running_since
//   if none was seen).
// A timer already past is due at once: it fires late, never not at all. Due times are clamped to
// kLatestTime (year 9999), so a long duration never wraps around to a time in the past.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "model/vm.h"

namespace hearth {

enum class TimerKind { kStopAt, kStopAfter, kIdleTimeout };
// "stop-at", "stop-after", "idle-timeout".
std::string_view ToString(TimerKind k);

// A timer that fires at `at` with `action`.
struct DueTimer {
  TimerKind kind = TimerKind::kStopAfter;
  TimerAction action = TimerAction::kSuspend;
  Timestamp at;
  bool operator==(const DueTimer&) const = default;
};

// The timer of `vm` that fires first, or none (the VM is not running, or has no timer that
// applies to this run). `last_activity` is when packets were last seen on the VM's tap; unset,
// idle time counts from running_since. At equal times stop-at wins over stop-after over
// idle-timeout.
std::optional<DueTimer> NextTimer(const VmRecord& vm, std::optional<Timestamp> last_activity);

// The event message of a firing, e.g. "stop-after 30s reached (due 2026-11-26T07:40:28Z):
// suspending".
std::string DescribeFiring(const DueTimer& due, const Timers& timers);

// Keeps `next.running_since` in step with `next.state` as a VM goes from `before` to `next`: set
// to `now` when the VM becomes running (or runs without it, as a record from an older hearthd
// may), kept while it runs and while it is being suspended (a suspend that fails lets the same
// run go on), cleared in every other state.
void TrackRunningSince(const VmRecord& before, VmRecord& next, Timestamp now);

}  // namespace hearth
