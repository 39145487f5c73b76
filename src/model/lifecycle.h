// The VM lifecycle: which event is legal in which state, and the state it leads to. This is the
// only place that decides; the node (API requests, jobs, timers, the waker, recovery), the
// validator and metering ask it. An illegal event is a failed_precondition error naming the VM,
// its state and what to do instead; nothing is overwritten.
//
// States (VmState). Settled: created, running, suspended, stopped, failed. Transitional (a job of
// the node owns the VM and will settle it): starting, suspending, resuming, stopping, deleting.
//
// Requests (from the API, the timer thread and the waker):
//   edit           created, running, suspended, stopped, failed -> same state. Changes fields
//                  that do not touch the machine (timers, wake, restart policy).
//   edit-hardware  created, stopped, failed -> same state. vcpus, memory, kernel, disks, cmdline,
//                  image or published ports: only while the VM has no process and no saved
//                  state (a suspended VM's state needs the old values).
//   discard-state  suspended -> stopped. An edit with --discard-state: the snapshot is deleted and
//                  the next start cold-boots.
//   start          created, stopped, failed -> starting (a job launches the VMM and waits for the
//                  guest); suspended -> resuming (start of a suspended VM resumes it).
//   start-fresh    created, stopped, failed, suspended -> starting; a snapshot is discarded.
//   stop, kill     starting -> starting (the start is cancelled; its job settles the VM as
//                  stopped); running -> stopping (a job asks the guest to power off, or kills
//                  the VMM, and waits for it); suspended -> stopped (the snapshot is discarded).
//   suspend        running -> suspending (a job saves the VM's state and ends the VMM).
//   resume         suspended -> resuming (a job restores the snapshot).
//   wake           suspended -> resuming: a packet for a VM that wakes on packets (the waker).
//   timer-fired    running -> running: a timer fell due; a suspend or stop request follows.
//   delete         created, stopped, failed -> removed.
//   force-delete   created, stopped, failed, suspended -> removed; running -> deleting (the VMM is
//                  killed, then the record removed).
//
// Outcomes (reported by the jobs and by recovery after a restart of hearthd):
//   launched       starting -> starting: the VMM runs; its pid is recorded.
//   booted         starting -> running: the guest reported ready.
//   cancelled      starting -> stopped: a stop came while it was starting.
//   exited         starting, running -> stopped: the VMM ended by itself, cleanly.
//   crashed        starting, running -> failed: the VMM ended uncleanly; no restart follows.
//   restart        starting, running -> starting: the restart policy starts the VM again.
//   failed         starting, running, suspending, resuming -> failed: a step failed and left
//                  nothing to go back to (a crash loop, a snapshot used up).
//   ended          stopping -> stopped; deleting -> removed: a requested end of the VMM is done.
//   saved          suspending -> suspended: the snapshot is whole and the VMM has ended.
//   save-failed    suspending -> running: the save failed and the guest runs on.
//   restored       resuming -> running.
//   restore-failed resuming -> suspended: the guest never ran; the snapshot is kept. Also
//                  suspended -> suspended, when the move to resuming was never written.
//   adopted        running, suspending, resuming -> running: a new hearthd took over the VMM.
//   recovered      created, suspended, stopped, failed -> same: a new hearthd cleared a stale
//                  process of a settled VM.
//
// Idempotent requests. A lifecycle request whose goal already holds, or that a job under way is
// reaching, succeeds and changes nothing (it is not a transition, so the table has no row for it):
//   start, start-fresh  already: running;              under way: starting, resuming
//   resume              already: running;              under way: resuming, starting
//   stop, kill          already: created, stopped;     under way: stopping
//   suspend             already: suspended;            under way: suspending
// A kill while a guest shutdown is under way waits for that (it kills the VMM after 10 s).
#pragma once

#include <string_view>

#include "common/result.h"
#include "model/vm.h"

namespace hearth {

enum class VmEvent {
  // requests
  kEdit,
  kEditHardware,
  kDiscardState,
  kStart,
  kStartFresh,
  kStop,
  kKill,
  kSuspend,
  kResume,
  kWake,
  kTimerFired,
  kDelete,
  kForceDelete,
  // outcomes
  kLaunched,
  kBooted,
  kCancelled,
  kExited,
  kCrashed,
  kRestart,
  kFailed,
  kEnded,
  kSaved,
  kSaveFailed,
  kRestored,
  kRestoreFailed,
  kAdopted,
  kRecovered,
};
inline constexpr int kVmEvents = static_cast<int>(VmEvent::kRecovered) + 1;
inline constexpr int kVmStates = static_cast<int>(VmState::kDeleting) + 1;

// "start", "force-delete", "restore-failed": the names in the table above.
std::string_view ToString(VmEvent e);
// True for events a user or a timer asks for (as opposed to outcomes of the node's jobs).
bool IsRequest(VmEvent e);

// Where a legal event leads.
struct Step {
  VmState state;         // the state after the event
  bool removes = false;  // the record is deleted (state: the one it is written in last)
  bool operator==(const Step&) const = default;
};

// The step `event` takes from `from`, or failed_precondition naming both.
Result<Step> Next(VmState from, VmEvent event);
// The same for VM `vm`, in the words the API answers with: "cannot suspend vm 'web': it is
// stopped; only a running VM can be suspended".
Result<Step> Next(const VmRecord& vm, VmEvent event);
// Whether `event` is legal in state `from`.
bool Allows(VmState from, VmEvent event);

// Whether request `event` in state `from` is a no-op (see "Idempotent requests" above).
enum class NoChange {
  kNo,        // a transition (or a refusal): ask Next
  kAlready,   // the goal holds: succeed, change nothing
  kUnderWay,  // a job is reaching the goal: succeed, change nothing, let the caller wait
};
NoChange Idempotent(VmState from, VmEvent event);

// HoldsMemory and IsTransitional (model/vm.h) are defined with the table, in lifecycle.cc.

// How metering counts time spent in a state.
enum class StateClass {
  kRunning,     // running: the guest runs and holds its RAM
  kSuspended,   // suspended: no process; the saved state is on disk
  kStopped,     // created, stopped, failed: nothing held
  kTransition,  // starting, stopping, suspending, resuming, deleting
};
inline constexpr int kStateClasses = 4;
StateClass Classify(VmState state);

}  // namespace hearth
