// Node timers over the fake driver and network, on a fake clock: stop-after, stop-at and
// idle-timeout fire at their time (not a tick early) with either action, each firing is an event,
// edits take effect on a running VM, a timer that fell due while no hearthd ran fires after
// Recover, and a refused action is retried later rather than at once.
#include <gtest/gtest.h>

#include <thread>

#include "fakes/node_fixture.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class NodeTimersTest : public testing::NodeFixture {
 protected:
  NodeTimersTest() { NewNode(); }

  // Creates VM `name` with `timers` (JSON as in the API), starts it and waits until it runs.
  VmRecord Run(const std::string& name, const json& timers) {
    CreateRequest r;
    r.name = name;
    r.spec.kernel = "/k/vmlinux";
    auto applied = ApplySpecJson(json{{"timers", timers}}, r.spec);
    EXPECT_TRUE(applied) << applied.error().message;
    auto created = node_->Create(r);
    EXPECT_TRUE(created) << created.error().message;
    auto started = node_->Start(name, false);
    EXPECT_TRUE(started) << started.error().message;
    VmRecord vm = WaitFor(name, VmState::kRunning);
    EXPECT_EQ(vm.running_since, clock_.Now());
    return vm;
  }

  VmRecord WaitFor(const std::string& name, VmState state) {
    Eventually([&] {
      auto vm = node_->Get(name);
      return vm && vm->state == state;
    });
    auto vm = node_->Get(name);
    if (!vm || vm->state != state) {
      ADD_FAILURE() << name << " is " << (vm ? ToString(vm->state) : "gone") << ", expected "
                    << ToString(state);
    }
    return vm ? *vm : VmRecord{};
  }

  std::vector<Event> TimerEvents(const std::string& name) {
    std::vector<Event> out;
    auto events = node_->Events(name, 1000);
    for (const auto& e : *events) {
      if (e.type == "timer") out.push_back(e);
    }
    return out;
  }

  std::vector<std::string> EventTypes(const std::string& name) {
    std::vector<std::string> out;
    auto events = node_->Events(name, 1000);
    for (const auto& e : *events) out.push_back(e.type);
    return out;
  }

  // Fires what is due now: nothing, for VM `name`, which runs on without a new timer event.
  void ExpectNothingDue(const std::string& name) {
    size_t before = TimerEvents(name).size();
    EXPECT_EQ(node_->FireDueTimers(), 0);
    EXPECT_EQ(node_->Get(name)->state, VmState::kRunning);
    EXPECT_EQ(TimerEvents(name).size(), before);
  }

  std::string Tap(const VmRecord& vm) { return net::TapName(vm.id); }
};

TEST_F(NodeTimersTest, StopAfterSuspendsAtItsTimeNotATickEarly) {
  VmRecord vm = Run("web", {{"stop_after", "30s"}});
  Timestamp due = *vm.running_since + 30s;
  EXPECT_EQ(node_->NextTimer(vm), (DueTimer{TimerKind::kStopAfter, TimerAction::kSuspend, due}));
  clock_.Advance(30s - 1ms);
  ExpectNothingDue("web");

  clock_.Advance(1ms);
  node_->FireDueTimers();
  VmRecord suspended = WaitFor("web", VmState::kSuspended);
  EXPECT_TRUE(suspended.snapshot);
  EXPECT_FALSE(suspended.running_since);
  EXPECT_FALSE(node_->NextTimer(suspended));
  auto timers = TimerEvents("web");
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].time, due);
  EXPECT_EQ(timers[0].message, "stop-after 30s reached (due " + FormatTime(due) + "): suspending");
  auto types = EventTypes("web");
  EXPECT_EQ(std::vector<std::string>(types.end() - 3, types.end()),
            (std::vector<std::string>{"timer", "suspending", "suspended"}));

  // A resume is a new run: the timer counts from it again.
  clock_.Advance(1h);
  ASSERT_TRUE(node_->Resume("web"));
  VmRecord resumed = WaitFor("web", VmState::kRunning);
  EXPECT_EQ(resumed.running_since, clock_.Now());
  ExpectNothingDue("web");
}

TEST_F(NodeTimersTest, StopAfterWithTheStopActionShutsTheGuestDown) {
  VmRecord vm = Run("web", {{"stop_after", "2m"}, {"on_timer", "stop"}});
  clock_.Advance(2min);
  node_->FireDueTimers();
  VmRecord stopped = WaitFor("web", VmState::kStopped);
  EXPECT_FALSE(stopped.snapshot);
  auto events = *node_->Events("web", 3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "timer");
  EXPECT_NE(events[0].message.find("): stopping"), std::string::npos) << events[0].message;
  EXPECT_EQ(events[1].type, "stopping");
  EXPECT_EQ(events[1].message, "guest shutdown") << "a graceful stop, as the API's";
  EXPECT_EQ(events[2].type, "stopped");
}

TEST_F(NodeTimersTest, StopAtFiresForARunThatBeganBeforeIt) {
  Timestamp at = clock_.Now() + 1min;
  Run("web", {{"stop_at", FormatTime(at)}});
  clock_.Advance(1min - 1ms);
  ExpectNothingDue("web");
  clock_.Advance(1ms);
  node_->FireDueTimers();
  WaitFor("web", VmState::kSuspended);
  auto timers = TimerEvents("web");
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].time, at);
  EXPECT_EQ(timers[0].message, "stop-at " + FormatTime(at) + " reached: suspending");
}

TEST_F(NodeTimersTest, StopAtLeavesARunThatBeganAfterIt) {
  CreateRequest r;
  r.name = "late";
  r.spec.kernel = "/k/vmlinux";
  r.spec.timers.stop_at = clock_.Now() + 1min;
  ASSERT_TRUE(node_->Create(r));
  clock_.Advance(2min);
  ASSERT_TRUE(node_->Start("late", false));
  VmRecord vm = WaitFor("late", VmState::kRunning);
  EXPECT_FALSE(node_->NextTimer(vm));
  ExpectNothingDue("late");
  clock_.Advance(24h);
  ExpectNothingDue("late");
}

TEST_F(NodeTimersTest, IdleTimeoutIsResetByTrafficAndFiresAfterAQuietSpell) {
  VmRecord vm = Run("web", {{"idle_timeout", "10s"}, {"on_timer", "stop"}});
  Timestamp t0 = *vm.running_since;
  ExpectNothingDue("web");  // reads the counters at t0
  clock_.Advance(6s);
  network_.AddTraffic(Tap(vm));
  ExpectNothingDue("web");  // sees the packets at t0 + 6s
  EXPECT_EQ(node_->NextTimer(vm)->at, t0 + 16s);
  clock_.Advance(9s);  // t0 + 15s: past the first deadline, not the second
  ExpectNothingDue("web");
  network_.SetCounters(Tap(vm), {5, 0});  // only the guest sent: traffic too
  ExpectNothingDue("web");
  EXPECT_EQ(node_->NextTimer(vm)->at, t0 + 25s);
  clock_.Advance(10s - 1ms);
  ExpectNothingDue("web");
  clock_.Advance(1ms);
  node_->FireDueTimers();
  WaitFor("web", VmState::kStopped);
  auto timers = TimerEvents("web");
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].time, t0 + 25s);
  EXPECT_EQ(timers[0].message,
            "idle-timeout 10s reached (no packets since " + FormatTime(t0 + 15s) + "): stopping");
}

TEST_F(NodeTimersTest, EditsOfARunningVmsTimersTakeEffect) {
  VmRecord vm = Run("web", json::object());
  EXPECT_FALSE(node_->NextTimer(vm));
  clock_.Advance(1h);
  EditRequest edit;
  edit.fields = {{"timers", {{"stop_after", "90m"}, {"idle_timeout", "5m"}}}};
  auto edited = node_->Edit("web", edit);
  ASSERT_TRUE(edited) << edited.error().message;
  // stop-after counts from the start; the idle timeout from the edit (packets before it were not
  // watched).
  EXPECT_EQ(node_->NextTimer(*edited)->kind, TimerKind::kIdleTimeout);
  node_->FireDueTimers();
  EXPECT_EQ(node_->NextTimer(*edited)->at, clock_.Now() + 5min);
  edit.fields = {{"timers", {{"idle_timeout", nullptr}}}};
  edited = node_->Edit("web", edit);
  ASSERT_TRUE(edited);
  EXPECT_EQ(node_->NextTimer(*edited),
            (DueTimer{TimerKind::kStopAfter, TimerAction::kSuspend, *vm.running_since + 90min}));
  clock_.Advance(30min - 1ms);
  ExpectNothingDue("web");
  // Shortened below the time already run: due at once.
  edit.fields = {{"timers", {{"stop_after", "1h"}}}};
  ASSERT_TRUE(node_->Edit("web", edit));
  node_->FireDueTimers();
  WaitFor("web", VmState::kSuspended);
  ASSERT_EQ(TimerEvents("web").size(), 1u);
}

TEST_F(NodeTimersTest, ATimerThatFellDueWhileHearthdWasDownFiresAfterRecover) {
  VmRecord vm = Run("web", {{"stop_after", "1m"}});
  VmRecord idle = Run("quiet", {{"idle_timeout", "1m"}});
  node_.reset();  // hearthd goes away; the VMMs run on
  clock_.Advance(5min);
  NewNode();
  // No FireDueTimers here: the node's own thread fires what is due after Recover.
  WaitFor("web", VmState::kSuspended);
  auto timers = TimerEvents("web");
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].time, clock_.Now());
  // The message names the time it was due: running_since survived the restart.
  EXPECT_NE(timers[0].message.find("(due " + FormatTime(*vm.running_since + 1min) + ")"),
            std::string::npos)
      << timers[0].message;
  // Packets in hearthd's absence are unknown: idle time counts from the recovery.
  VmRecord adopted = *node_->Get("quiet");
  EXPECT_EQ(adopted.state, VmState::kRunning);
  EXPECT_EQ(adopted.running_since, idle.running_since);
  EXPECT_EQ(node_->NextTimer(adopted)->at, clock_.Now() + 1min);
  ExpectNothingDue("quiet");
  clock_.Advance(1min);
  node_->FireDueTimers();
  WaitFor("quiet", VmState::kSuspended);
}

TEST_F(NodeTimersTest, ARefusedActionIsRetriedLaterNotAtOnce) {
  VmRecord vm = Run("web", {{"stop_after", "10s"}});
  store_.FailWrites(Error{Code::kUnavailable, "disk full"});
  clock_.Advance(10s);
  node_->FireDueTimers();  // fires; the suspend cannot be recorded, so it is refused
  store_.FailWrites(std::nullopt);
  EXPECT_EQ(node_->Get("web")->state, VmState::kRunning);
  EXPECT_EQ(node_->FireDueTimers(), 0) << "no retry at once";
  EXPECT_EQ(node_->NextTimer(vm)->at, clock_.Now() + 30s);
  clock_.Advance(30s);
  node_->FireDueTimers();
  WaitFor("web", VmState::kSuspended);
}

TEST_F(NodeTimersTest, ShutdownStopsTheTimerThread) {
  Run("web", {{"idle_timeout", "1s"}});
  EXPECT_TRUE(node_->TimersRunning());
  node_->Shutdown();
  node_->Shutdown();
  // The thread is joined: nothing is left to fire, however late it gets.
  EXPECT_FALSE(node_->TimersRunning());
  clock_.Advance(1h);
  EXPECT_EQ(node_->Get("web")->state, VmState::kRunning);
  EXPECT_TRUE(TimerEvents("web").empty());
}

}  // namespace
}  // namespace hearth::node
