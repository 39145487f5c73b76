// The lifecycle table, cell by cell: every state x event pair is either the step written below
// (the table of model/lifecycle.h, restated) or a failed_precondition naming the VM and its state.
#include "model/lifecycle.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

namespace hearth {
namespace {

constexpr VmState kAllStates[] = {VmState::kCreated,    VmState::kStarting,  VmState::kRunning,
                                  VmState::kSuspending, VmState::kSuspended, VmState::kResuming,
                                  VmState::kStopping,   VmState::kStopped,   VmState::kFailed,
                                  VmState::kDeleting};

VmEvent EventAt(int i) { return static_cast<VmEvent>(i); }

// Per event: "from:to" pairs; "to!" means the record is removed.
const std::map<std::string, std::string>& Expected() {
  static const std::map<std::string, std::string> table = {
      {"edit", "created:created running:running suspended:suspended stopped:stopped failed:failed"},
      {"edit-hardware", "created:created stopped:stopped failed:failed"},
      {"discard-state", "suspended:stopped"},
      {"start", "created:starting stopped:starting failed:starting suspended:resuming"},
      {"start-fresh", "created:starting stopped:starting failed:starting suspended:starting"},
      {"stop", "starting:starting running:stopping suspended:stopped"},
      {"kill", "starting:starting running:stopping suspended:stopped"},
      {"suspend", "running:suspending"},
      {"resume", "suspended:resuming"},
      {"wake", "suspended:resuming"},
      {"timer-fired", "running:running"},
      {"delete", "created:created! stopped:stopped! failed:failed!"},
      {"force-delete",
       "created:created! stopped:stopped! failed:failed! suspended:suspended! running:deleting"},
      {"launched", "starting:starting"},
      {"booted", "starting:running"},
      {"cancelled", "starting:stopped"},
      {"exited", "starting:stopped running:stopped"},
      {"crashed", "starting:failed running:failed"},
      {"restart", "starting:starting running:starting"},
      {"failed", "starting:failed running:failed suspending:failed resuming:failed"},
      {"ended", "stopping:stopped deleting:deleting!"},
      {"saved", "suspending:suspended"},
      {"save-failed", "suspending:running"},
      {"restored", "resuming:running"},
      {"restore-failed", "resuming:suspended suspended:suspended"},
      {"adopted", "running:running suspending:running resuming:running"},
      {"recovered", "created:created suspended:suspended stopped:stopped failed:failed"},
  };
  return table;
}

std::map<VmState, Step> Parse(const std::string& cells) {
  std::map<VmState, Step> out;
  std::istringstream in(cells);
  std::string cell;
  while (in >> cell) {
    auto colon = cell.find(':');
    bool removes = cell.back() == '!';
    std::string to = cell.substr(colon + 1, cell.size() - colon - 1 - (removes ? 1 : 0));
    auto from_state = ParseVmState(cell.substr(0, colon));
    auto to_state = ParseVmState(to);
    EXPECT_TRUE(from_state && to_state) << cell;
    if (from_state && to_state) out[*from_state] = Step{*to_state, removes};
  }
  return out;
}

TEST(LifecycleTest, EveryCellOfTheTable) {
  ASSERT_EQ(Expected().size(), static_cast<size_t>(kVmEvents)) << "an event has no expected row";
  for (int i = 0; i < kVmEvents; ++i) {
    VmEvent event = EventAt(i);
    auto row = Expected().find(std::string(ToString(event)));
    ASSERT_NE(row, Expected().end()) << ToString(event);
    std::map<VmState, Step> legal = Parse(row->second);
    for (VmState from : kAllStates) {
      auto step = Next(from, event);
      auto want = legal.find(from);
      SCOPED_TRACE(std::string(ToString(event)) + " in " + std::string(ToString(from)));
      EXPECT_EQ(Allows(from, event), want != legal.end());
      if (want == legal.end()) {
        ASSERT_FALSE(step);
        EXPECT_EQ(step.error().code, Code::kFailedPrecondition);
        EXPECT_NE(step.error().message.find(ToString(from)), std::string::npos);
      } else {
        ASSERT_TRUE(step) << step.error().message;
        EXPECT_EQ(*step, want->second);
      }
    }
  }
}

TEST(LifecycleTest, RefusedRequestsNameTheVmItsStateAndWhatToDo) {
  VmRecord vm;
  vm.name = "web";
  vm.state = VmState::kStopped;
  auto r = Next(vm, VmEvent::kSuspend);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(r.error().message,
            "cannot suspend vm 'web': it is stopped; only a running VM can be suspended");
  vm.state = VmState::kRunning;
  EXPECT_EQ(Next(vm, VmEvent::kStart).error().message,
            "cannot start vm 'web': it is running; it is already up");
  EXPECT_EQ(Next(vm, VmEvent::kDelete).error().message,
            "cannot delete vm 'web': it is running; stop it first, or delete with --force (a "
            "suspended VM's saved state is discarded)");
  vm.state = VmState::kResuming;
  EXPECT_EQ(Next(vm, VmEvent::kDelete).error().message,
            "cannot delete vm 'web': it is resuming; retry when the transition is over");
  // An outcome a job reports in the wrong state is named as such.
  EXPECT_EQ(Next(vm, VmEvent::kSaved).error().message,
            "vm 'web' is resuming: 'saved' is not legal in that state");
}

// Every request x state pair: a no-op exactly where the header's "Idempotent requests" says,
// and never where the table has a transition (a no-op would hide it).
TEST(LifecycleTest, IdempotentRequestsWhereTheirGoalHoldsOrIsUnderWay) {
  // Per request: the states where it is already done, then (after '|') where it is under way.
  const std::map<VmEvent, std::string> expected = {
      {VmEvent::kStart, "running | starting resuming"},
      {VmEvent::kStartFresh, "running | starting resuming"},
      {VmEvent::kResume, "running | starting resuming"},
      {VmEvent::kStop, "created stopped | stopping"},
      {VmEvent::kKill, "created stopped | stopping"},
      {VmEvent::kSuspend, "suspended | suspending"},
  };
  for (int i = 0; i < kVmEvents; ++i) {
    VmEvent e = EventAt(i);
    auto row = expected.find(e);
    std::map<std::string, NoChange> want;
    if (row != expected.end()) {
      std::istringstream in(row->second);
      NoChange kind = NoChange::kAlready;
      for (std::string word; in >> word;) {
        if (word == "|")
          kind = NoChange::kUnderWay;
        else
          want[word] = kind;
      }
    }
    for (VmState from : kAllStates) {
      auto w = want.find(std::string(ToString(from)));
      NoChange expect = w == want.end() ? NoChange::kNo : w->second;
      EXPECT_EQ(Idempotent(from, e), expect) << ToString(e) << " in " << ToString(from);
      if (expect != NoChange::kNo) {
        EXPECT_FALSE(Allows(from, e)) << ToString(e) << " in " << ToString(from);
      }
    }
  }
}

TEST(LifecycleTest, TransitionalStatesRefuseRequestsButAStopOfAStart) {
  for (VmState from : kAllStates) {
    if (!IsTransitional(from)) continue;
    for (int i = 0; i < kVmEvents; ++i) {
      VmEvent e = EventAt(i);
      if (!IsRequest(e)) continue;
      bool cancel = from == VmState::kStarting && (e == VmEvent::kStop || e == VmEvent::kKill);
      EXPECT_EQ(Allows(from, e), cancel) << ToString(e) << " in " << ToString(from);
    }
  }
}

TEST(LifecycleTest, EveryStateIsReachedAndEveryTransitionalOneLeftForASettledOne) {
  std::set<VmState> reached = {VmState::kCreated};
  for (bool grew = true; grew;) {
    grew = false;
    for (VmState from : std::set<VmState>(reached)) {
      for (int i = 0; i < kVmEvents; ++i) {
        auto step = Next(from, EventAt(i));
        if (step && reached.insert(step->state).second) grew = true;
      }
    }
  }
  EXPECT_EQ(reached.size(), std::size(kAllStates));
  for (VmState from : kAllStates) {
    if (!IsTransitional(from)) continue;
    bool leaves = false;
    for (int i = 0; i < kVmEvents; ++i) {
      auto step = Next(from, EventAt(i));
      leaves |= step && (step->removes || !IsTransitional(step->state));
    }
    EXPECT_TRUE(leaves) << ToString(from) << " has no way out";
  }
}

TEST(LifecycleTest, MemoryAndMeteringFollowTheStates) {
  for (VmState s : kAllStates) {
    if (s == VmState::kRunning) {
      EXPECT_EQ(Classify(s), StateClass::kRunning);
    } else if (s == VmState::kSuspended) {
      EXPECT_EQ(Classify(s), StateClass::kSuspended);
    } else {
      EXPECT_EQ(Classify(s), IsTransitional(s) ? StateClass::kTransition : StateClass::kStopped);
    }
    // Only a VM with a VMM holds memory; deleting ends one that is already going.
    EXPECT_EQ(HoldsMemory(s),
              s == VmState::kRunning || (IsTransitional(s) && s != VmState::kDeleting));
  }
}

}  // namespace
}  // namespace hearth
