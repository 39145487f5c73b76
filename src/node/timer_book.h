// The bookkeeping behind a node's timers: what was seen of each running VM (its tap's counters,
// when they last changed, whether a timer already fired in this run) and which timers fall due
// (model/timers.h says when). No thread, lock or I/O of its own: the node reads the taps, calls
// Run under its lock and carries out the firings.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "model/timers.h"
#include "model/vm.h"
#include "net/tap.h"

namespace hearth::node {

// How often the taps of VMs with an idle timeout are read; idle time is known to within this.
inline constexpr std::chrono::milliseconds kIdlePoll{250};
// The longest the timer thread sleeps while a timer is pending, so that a step of the wall clock
// (which stop-at follows) costs at most this much lateness.
inline constexpr std::chrono::milliseconds kMaxTimerSleep{1000};
// A firing whose action was refused is tried again this much later, if the VM still runs.
inline constexpr Duration kTimerRetry{30'000};

using VmMap = std::map<std::string, VmRecord, std::less<>>;
using TapReadings = std::map<std::string, Result<net::TapCounters>, std::less<>>;

class TimerBook {
 public:
  struct Firing {
    std::string name;
    DueTimer due;
    std::string message;
  };
  struct Pass {
    std::vector<Firing> due;
    std::optional<Timestamp> next;  // the next timer after this pass (clock time)
    bool polling = false;           // some running VM has an idle timeout
  };

  // Idle time is counted from no earlier than `epoch` (when the node's timers started: packets
  // of a previous hearthd's time are not known).
  void Start(Timestamp epoch) { epoch_ = epoch; }
  // The taps to read before a pass, as (VM name, tap name): running VMs with an idle timeout.
  static std::vector<std::pair<std::string, std::string>> TapsToRead(const VmMap& vms);
  // One pass at `now` over `vms` with the taps read for it: forgets runs that ended, notes
  // traffic, and returns the timers due (marked fired; a VM for which `busy` holds is looked at
  // again a little later instead).
  template <class Busy>
  Pass Run(const VmMap& vms, const TapReadings& readings, Timestamp now, Busy busy);
  // The timer that fires next for `vm`, if any (retries included).
  std::optional<DueTimer> Next(const VmRecord& vm) const;

 private:
  struct Watch {
    std::optional<Timestamp> run;              // the running_since this watch is about
    std::optional<net::TapCounters> counters;  // as last read
    Timestamp last_activity;                   // when the counters last changed
    std::optional<Timestamp> fired_at;         // a timer fired in this run (retry after 30 s)
    bool idle_watched = false;                 // the VM had an idle timeout at the last pass
    bool read_failed = false;                  // the failure to read the tap was logged
  };
  Timestamp IdleBaseline(const VmRecord& vm) const;
  // Brings the watch of running VM `vm` up to this pass; nullopt when it has no timer due yet
  // (`later` is then told when to look again).
  std::optional<Firing> Check(const VmRecord& vm, const TapReadings& readings, Timestamp now,
                              bool busy, Pass& pass);
  std::map<std::string, Watch, std::less<>> watches_;  // by VM name, while it has a run
  Timestamp epoch_;
};

template <class Busy>
TimerBook::Pass TimerBook::Run(const VmMap& vms, const TapReadings& readings, Timestamp now,
                               Busy busy) {
  // A watch lives as long as its run, which a suspend that fails does not end: the retry time of
  // the timer that started that suspend is kept.
  std::erase_if(watches_, [&](const auto& entry) {
    auto vm = vms.find(entry.first);
    return vm == vms.end() || vm->second.running_since != entry.second.run;
  });
  Pass pass;
  for (const auto& [name, vm] : vms) {
    if (auto firing = Check(vm, readings, now, busy(name), pass)) pass.due.push_back(*firing);
  }
  return pass;
}

}  // namespace hearth::node
