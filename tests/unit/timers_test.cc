// When timers fall due (model/timers.h): pure functions of the record and the last activity.
#include "model/timers.h"

#include <gtest/gtest.h>

namespace hearth {
namespace {

using namespace std::chrono_literals;

const Timestamp kT0{std::chrono::hours(24 * 365 * 56)};

VmRecord Running(Timestamp since) {
  VmRecord vm;
  vm.name = "web";
  vm.state = VmState::kRunning;
  vm.running_since = since;
  return vm;
}

TEST(TimersTest, NoTimerWithoutATimerOrARun) {
  VmRecord vm = Running(kT0);
  EXPECT_FALSE(NextTimer(vm, std::nullopt));
  vm.spec.timers.stop_after = 30s;
  ASSERT_TRUE(NextTimer(vm, std::nullopt));
  for (VmState s : {VmState::kCreated, VmState::kStarting, VmState::kSuspending,
                    VmState::kSuspended, VmState::kStopping, VmState::kStopped, VmState::kFailed}) {
    vm.state = s;
    EXPECT_FALSE(NextTimer(vm, std::nullopt)) << ToString(s);
  }
  vm.state = VmState::kRunning;
  vm.running_since.reset();
  EXPECT_FALSE(NextTimer(vm, std::nullopt)) << "no run to count from";
}

TEST(TimersTest, StopAfterCountsFromRunningSince) {
  VmRecord vm = Running(kT0 + 5s);
  vm.spec.timers.stop_after = 30s;
  vm.spec.timers.on_timer = TimerAction::kStop;
  EXPECT_EQ(NextTimer(vm, std::nullopt),
            (DueTimer{TimerKind::kStopAfter, TimerAction::kStop, kT0 + 35s}));
  EXPECT_EQ(NextTimer(vm, kT0 + 20s)->at, kT0 + 35s) << "activity does not matter";
}

TEST(TimersTest, StopAtAppliesOnlyToARunThatBeganBeforeIt) {
  VmRecord vm = Running(kT0);
  vm.spec.timers.stop_at = kT0 + 1h;
  EXPECT_EQ(NextTimer(vm, std::nullopt),
            (DueTimer{TimerKind::kStopAt, TimerAction::kSuspend, kT0 + 1h}));
  vm.running_since = kT0 + 1h;
  EXPECT_FALSE(NextTimer(vm, std::nullopt)) << "began at T, not before";
  vm.running_since = kT0 + 2h;
  EXPECT_FALSE(NextTimer(vm, std::nullopt)) << "started after T";
}

TEST(TimersTest, IdleTimeoutCountsFromTheLastActivity) {
  VmRecord vm = Running(kT0);
  vm.spec.timers.idle_timeout = 10s;
  EXPECT_EQ(NextTimer(vm, std::nullopt)->at, kT0 + 10s);
  EXPECT_EQ(NextTimer(vm, kT0 + 7s)->at, kT0 + 17s);
  EXPECT_EQ(NextTimer(vm, kT0 - 1h)->at, kT0 + 10s) << "activity of an earlier run is ignored";
  EXPECT_EQ(NextTimer(vm, kT0)->kind, TimerKind::kIdleTimeout);
}

TEST(TimersTest, TheEarliestWinsAndTiesGoStopAtStopAfterIdle) {
  VmRecord vm = Running(kT0);
  vm.spec.timers.stop_at = kT0 + 20s;
  vm.spec.timers.stop_after = 15s;
  vm.spec.timers.idle_timeout = 10s;
  EXPECT_EQ(NextTimer(vm, std::nullopt)->kind, TimerKind::kIdleTimeout);
  EXPECT_EQ(NextTimer(vm, kT0 + 8s)->kind, TimerKind::kStopAfter);
  EXPECT_EQ(NextTimer(vm, kT0 + 30s)->kind, TimerKind::kStopAfter);
  vm.spec.timers.stop_after = 20s;
  EXPECT_EQ(NextTimer(vm, kT0 + 30s)->kind, TimerKind::kStopAt) << "tie: stop-at first";
  vm.spec.timers.stop_at.reset();
  vm.spec.timers.idle_timeout = 20s;
  EXPECT_EQ(NextTimer(vm, std::nullopt)->kind, TimerKind::kStopAfter) << "tie: stop-after first";
}

TEST(TimersTest, APastTimerIsStillReturned) {
  VmRecord vm = Running(kT0);
  vm.spec.timers.stop_after = 1s;
  EXPECT_EQ(NextTimer(vm, std::nullopt)->at, kT0 + 1s);  // due long ago: fires late, not never
}

TEST(TimersTest, AHugeDurationIsDueAtTheLatestTimeNotAtOnce) {
  VmRecord vm = Running(kT0);
  // 106751991167d in milliseconds is just below INT64_MAX: since + d used to wrap negative.
  vm.spec.timers.stop_after = std::chrono::hours(24) * 106751991167LL;
  auto next = NextTimer(vm, std::nullopt);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->at, kLatestTime);
  EXPECT_GT(next->at, kT0);
  EXPECT_EQ(FormatTime(next->at), "9999-12-31T23:59:59.999Z");
  vm.spec.timers.stop_after.reset();
  vm.spec.timers.idle_timeout = std::chrono::hours(24) * 3'000'000;  // past year 9999
  next = NextTimer(vm, kT0 + 1h);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->at, kLatestTime);
}

TEST(TimersTest, DescribesFirings) {
  Timers t;
  t.stop_after = 30s;
  t.idle_timeout = 5min;
  EXPECT_EQ(DescribeFiring({TimerKind::kStopAfter, TimerAction::kSuspend, kT0}, t),
            "stop-after 30s reached (due " + FormatTime(kT0) + "): suspending");
  EXPECT_EQ(DescribeFiring({TimerKind::kIdleTimeout, TimerAction::kStop, kT0 + 5min}, t),
            "idle-timeout 5m reached (no packets since " + FormatTime(kT0) + "): stopping");
  EXPECT_EQ(DescribeFiring({TimerKind::kStopAt, TimerAction::kSuspend, kT0}, t),
            "stop-at " + FormatTime(kT0) + " reached: suspending");
  EXPECT_EQ(ToString(TimerKind::kIdleTimeout), "idle-timeout");
}

TEST(TimersTest, RunningSinceFollowsTheState) {
  VmRecord before;
  before.state = VmState::kStarting;
  VmRecord next = before;
  next.state = VmState::kRunning;
  TrackRunningSince(before, next, kT0);
  EXPECT_EQ(next.running_since, kT0) << "became running";

  before = next;
  next.pid = 7;
  TrackRunningSince(before, next, kT0 + 1h);
  EXPECT_EQ(next.running_since, kT0) << "stays running: kept (e.g. re-adoption)";

  before = next;
  next.state = VmState::kSuspending;
  TrackRunningSince(before, next, kT0 + 2h);
  EXPECT_EQ(next.running_since, kT0) << "being suspended: the run is not over yet";
  VmRecord failed_suspend = next;
  failed_suspend.state = VmState::kRunning;
  TrackRunningSince(next, failed_suspend, kT0 + 3h);
  EXPECT_EQ(failed_suspend.running_since, kT0) << "a failed suspend: the same run goes on";
  before = next;
  next.state = VmState::kSuspended;
  TrackRunningSince(before, next, kT0 + 3h);
  EXPECT_FALSE(next.running_since) << "suspended";

  before = failed_suspend;
  next = failed_suspend;
  next.state = VmState::kStopping;
  TrackRunningSince(before, next, kT0 + 3h);
  EXPECT_FALSE(next.running_since) << "left running for good";

  before = next;
  before.state = VmState::kResuming;
  next = before;
  next.state = VmState::kRunning;
  TrackRunningSince(before, next, kT0 + 4h);
  EXPECT_EQ(next.running_since, kT0 + 4h) << "a resume is a new run";

  before.state = VmState::kRunning;  // a record from a hearthd that did not keep running_since
  before.running_since.reset();
  next = before;
  TrackRunningSince(before, next, kT0 + 5h);
  EXPECT_EQ(next.running_since, kT0 + 5h);
}

}  // namespace
}  // namespace hearth
