// The node's side of wake on packet, with a fake waker: a suspended VM with wake on-packet has
// its tap watched, a wake resumes it (as a `woken` event) and hands the tap and the frames to the
// restore, and a stopped VM's tap is let go.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <thread>

#include "fakes/node_fixture.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;

class NodeWakeTest : public testing::NodeFixture {
 protected:
  NodeWakeTest() { NewNode(); }

  VmRecord Suspended(const std::string& name, WakeMode wake) {
    CreateRequest r;
    r.name = name;
    r.spec.kernel = "/k/vmlinux";
    r.spec.wake = wake;
    EXPECT_TRUE(node_->Create(r));
    EXPECT_TRUE(node_->Start(name, false));
    WaitFor(name, VmState::kRunning);
    EXPECT_TRUE(node_->Suspend(name));
    return WaitFor(name, VmState::kSuspended);
  }
  VmRecord WaitFor(const std::string& name, VmState state) {
    Eventually([&] {
      auto now = node_->Get(name);
      return !now || now->state == state;
    });
    auto vm = node_->Get(name);
    EXPECT_TRUE(vm && vm->state == state) << ToString(state);
    return vm ? *vm : VmRecord{};
  }
  std::string LastEventType(const std::string& name) {
    auto events = node_->Events(name, 1);
    return events && !events->empty() ? events->back().type : "";
  }
};

TEST_F(NodeWakeTest, AWakeResumesTheVmWithTheFramesThatWokeIt) {
  Suspended("web", WakeMode::kOnPacket);
  EXPECT_TRUE(waker_.watching("web"));
  waker_.Keep("web", {"frame"});
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
  EXPECT_FALSE(waker_.watching("web")) << "the tap went to the restored VMM";
  EXPECT_EQ(LastEventType("web"), "woken");
  // Asleep again: watched again.
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  EXPECT_TRUE(waker_.watching("web"));
  // A plain resume is a `resumed`; a stop lets the tap go.
  ASSERT_TRUE(node_->Resume("web"));
  WaitFor("web", VmState::kRunning);
  EXPECT_EQ(LastEventType("web"), "resumed");
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  ASSERT_TRUE(node_->Stop("web", false));
  EXPECT_FALSE(waker_.watching("web"));
}

TEST_F(NodeWakeTest, OnlyVmsThatWakeOnPacketAreWatchedAndAWakeOfAnotherStateIsIgnored) {
  Suspended("never", WakeMode::kNever);
  EXPECT_FALSE(waker_.watching("never"));
  int launches = driver_.launches.load();
  node_->OnWake("never", std::chrono::steady_clock::now());
  EXPECT_FALSE(node_->Busy("never")) << "a stray wake starts nothing";
  EXPECT_FALSE(Eventually([&] { return node_->Get("never")->state != VmState::kSuspended; }, 100ms))
      << "a stray wake changes nothing";
  EXPECT_EQ(driver_.launches.load(), launches);
  // Edited to wake on packet while asleep: watched from then on.
  EditRequest edit;
  edit.fields = nlohmann::json{{"wake", "on-packet"}};
  ASSERT_TRUE(node_->Edit("never", edit));
  EXPECT_TRUE(waker_.watching("never"));
}

TEST_F(NodeWakeTest, SuspendedVmsAreWatchedAgainAfterARestart) {
  Suspended("web", WakeMode::kOnPacket);
  NewNode();  // a new hearthd over the same store
  EXPECT_TRUE(waker_.watching("web"));
}

TEST_F(NodeWakeTest, ADriverThatOpensTheTapByNameGetsItReleasedRightBeforeTheLoad) {
  driver_.opens_tap_by_name = true;  // as Firecracker: attaching fails while hearthd holds the tap
  VmRecord vm = Suspended("web", WakeMode::kOnPacket);
  {
    std::lock_guard lock(driver_.mu);
    EXPECT_EQ(driver_.launched[vm.id].tap_fd, -1) << "no tap fd for a driver that cannot take it";
  }
  int held = waker_.fd("web");
  ASSERT_GE(held, 0);
  bool open_at_load = true;
  driver_.on_load = [&](const hv::MachineSpec&) { open_at_load = fcntl(held, F_GETFD) != -1; };
  waker_.Keep("web", {"frame"});
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
  EXPECT_EQ(driver_.tap_releases.load(), 1);
  EXPECT_FALSE(open_at_load) << "the held tap must be closed before the load";
  {
    std::lock_guard lock(driver_.mu);
    EXPECT_EQ(driver_.restore_tap_fds.back(), -1);
  }
  EXPECT_EQ(LastEventType("web"), "woken");
  // Asleep again: the tap is held (and watched) again.
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  EXPECT_TRUE(waker_.watching("web"));
}

TEST_F(NodeWakeTest, AFailedLoadAfterTheReleaseLeavesTheVmSuspendedWatchedAndItsSnapshotKept) {
  driver_.opens_tap_by_name = true;
  Suspended("web", WakeMode::kOnPacket);
  driver_.fail_load = true;
  node_->OnWake("web", std::chrono::steady_clock::now());
  // The VM may read `suspended` before the resume job has run: wait for its outcome.
  Eventually([&] { return LastEventType("web") == "failed"; });
  VmRecord vm = WaitFor("web", VmState::kSuspended);
  EXPECT_EQ(driver_.tap_releases.load(), 1);
  EXPECT_TRUE(vm.snapshot.has_value());
  EXPECT_NE(vm.state_reason.find("the fake's load failed"), std::string::npos) << vm.state_reason;
  EXPECT_TRUE(waker_.watching("web")) << "the next packet can wake it again";
  driver_.fail_load = false;
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
}

TEST_F(NodeWakeTest, ADriverThatTakesTheTapFdGetsTheHeldOneAndNoReleaseCall) {
  Suspended("web", WakeMode::kOnPacket);
  int held = waker_.fd("web");
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
  std::lock_guard lock(driver_.mu);
  EXPECT_EQ(driver_.restore_tap_fds.back(), held);
  EXPECT_EQ(driver_.tap_releases.load(), 0);
}

TEST_F(NodeWakeTest, AWakeRecordsWhereItsTimeWent) {
  Suspended("web", WakeMode::kOnPacket);
  waker_.Keep("web", {"frame one", "frame two"});
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
  auto events = node_->Events("web", 1);
  ASSERT_TRUE(events && !events->empty());
  const Event& woken = events->back();
  ASSERT_EQ(woken.type, "woken");
  for (const char* key : {"latency_ms", "seen_to_restore_ms", "restore_ms", "hold_ms", "replay_ms",
                          "own_ms", "frames", "dropped_filtered", "dropped_overflow"}) {
    EXPECT_TRUE(woken.measures.count(key)) << key;
  }
  EXPECT_EQ(woken.measures.at("frames"), 2);
  const auto& m = woken.measures;
  EXPECT_NEAR(m.at("own_ms"), m.at("seen_to_restore_ms") + m.at("hold_ms") + m.at("replay_ms"),
              1e-9);
  EXPECT_GE(m.at("latency_ms"), m.at("own_ms"));
  // The move to `resuming` was recorded before the guest ran, and once.
  auto all = node_->Events("web", 4);
  ASSERT_TRUE(all && all->size() >= 2);
  EXPECT_EQ((*all)[all->size() - 2].type, "resuming");
}

TEST_F(NodeWakeTest, AWakeWhoseRecordCannotBeWrittenNeverRunsTheGuest) {
  Suspended("web", WakeMode::kOnPacket);
  int launches = driver_.launches.load();
  store_.FailWrites(Error{Code::kUnavailable, "disk full"});
  node_->OnWake("web", std::chrono::steady_clock::now());
  // The restore began beside the write; the write failed, so the loaded VMM was ended unrun.
  // The job ends with writes still failing; only then does the store work again.
  EXPECT_TRUE(
      Eventually([&] { return driver_.launches.load() > launches && !node_->Busy("web"); }));
  store_.FailWrites(std::nullopt);
  auto vm = WaitFor("web", VmState::kSuspended);
  EXPECT_FALSE(vm.pid.has_value());
  EXPECT_TRUE(hv::FindProcesses(dir_.path().string()).empty())
      << "no VMM runs for a VM that stayed asleep";
  EXPECT_TRUE(waker_.watching("web")) << "the next packet tries again";
  // And it does, once the store works again.
  node_->OnWake("web", std::chrono::steady_clock::now());
  WaitFor("web", VmState::kRunning);
}

}  // namespace
}  // namespace hearth::node
