// Node lifecycle over the fake driver, whose VMMs are real processes: start/stop, supervision and
// the restart policy, cancelled starts, concurrent requests on one VM, and recovery by a second
// node over the same store (re-adoption, vanished processes, leftovers).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "fakes/node_fixture.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;
using testing::FakeDriver;
using testing::FakeNetwork;

class NodeLifecycleTest : public testing::NodeFixture {
 protected:
  NodeLifecycleTest() {
    options_.restart_backoff = 10ms;
    NewNode();
  }

  VmRecord Create(const std::string& name, RestartPolicy restart = RestartPolicy::kOnFailure,
                  int publish = 0) {
    CreateRequest r;
    r.name = name;
    r.spec.kernel = "/k/vmlinux";
    r.spec.restart = restart;
    if (publish) r.spec.publish = {PortMapping{publish, 80, Protocol::kTcp}};
    auto vm = node_->Create(r);
    EXPECT_TRUE(vm) << vm.error().message;
    return *vm;
  }

  // Waits until the VM is in `state` (and no longer changing), or fails the test.
  VmRecord WaitFor(const std::string& name, VmState state, std::chrono::milliseconds limit = 5s) {
    Eventually(
        [&] {
          auto vm = node_->Get(name);
          return vm && vm->state == state;
        },
        limit);
    auto vm = node_->Get(name);
    if (!vm || vm->state != state) {
      ADD_FAILURE() << name << " is " << (vm ? ToString(vm->state) : "gone") << ", expected "
                    << ToString(state) << (vm ? " (" + vm->state_reason + ")" : "");
    }
    return vm ? *vm : VmRecord{};
  }

  // Waits until the VM runs on a process other than `old_pid` (a restart), or fails the test.
  VmRecord WaitForRestart(const std::string& name, std::optional<int64_t> old_pid) {
    Eventually([&] {
      VmRecord now = *node_->Get(name);
      return now.state == VmState::kRunning && now.pid != old_pid;
    });
    VmRecord vm = *node_->Get(name);
    EXPECT_EQ(vm.state, VmState::kRunning);
    EXPECT_NE(vm.pid, old_pid);
    return vm;
  }

  std::vector<std::string> EventTypes(const std::string& name) {
    std::vector<std::string> out;
    auto events = node_->Events(name, 1000);
    for (const auto& e : *events) out.push_back(e.type);
    return out;
  }

  size_t ProcessesOf(const VmRecord& vm) {
    return hv::FindProcesses(paths_.qmp_socket(vm.id).string()).size();
  }
};

TEST_F(NodeLifecycleTest, TheGuestsAntiSpoofingRulesAreInPlaceBeforeItsVmmRuns) {
  std::vector<net::Guest> at_launch;
  driver_.on_launch = [&](const hv::MachineSpec&) { at_launch = network_.rules().guests; };
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  std::vector<net::Guest> expected = {
      net::Guest{net::TapName(vm.id), "172.30.0.2", net::GuestMac({"172.30.0.2", "172.30.0.1"})}};
  EXPECT_EQ(at_launch, expected);
  EXPECT_EQ(network_.rules().guests, expected);
}

TEST_F(NodeLifecycleTest, StartRunsTheVmAndStopEndsIt) {
  VmRecord vm = Create("web", RestartPolicy::kOnFailure, 18080);
  EXPECT_EQ(vm.ip, "") << "an address is taken at the first start";
  auto starting = node_->Start("web", false);
  ASSERT_TRUE(starting) << starting.error().message;
  EXPECT_EQ(starting->state, VmState::kStarting);
  EXPECT_EQ(starting->ip, "172.30.0.2");
  VmRecord running = WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(running.pid.has_value());
  EXPECT_EQ(running.backend, "fake");
  EXPECT_TRUE(hv::IsAlive({*running.pid, running.pid_start}));
  EXPECT_EQ(network_.taps(), std::set<std::string>{net::TapName(vm.id)});
  ASSERT_EQ(network_.rules().publish.size(), 1u);
  EXPECT_EQ(network_.rules().publish[0].guest_ip, "172.30.0.2");
  // A start of a running VM changes nothing (idempotent); a delete without --force is refused.
  auto again = node_->Start("web", false);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *node_->Get("web"));
  EXPECT_EQ(again->version, running.version) << "no write";
  EXPECT_FALSE(node_->Delete("web", false));

  auto stopping = node_->Stop("web", false);
  ASSERT_TRUE(stopping) << stopping.error().message;
  VmRecord stopped = WaitFor("web", VmState::kStopped);
  EXPECT_FALSE(stopped.pid.has_value());
  EXPECT_FALSE(hv::IsAlive({*running.pid, running.pid_start}));
  EXPECT_EQ(ProcessesOf(vm), 0u);
  auto stop_again = node_->Stop("web", true);
  ASSERT_TRUE(stop_again) << stop_again.error().message;
  EXPECT_EQ(stop_again->version, stopped.version) << "a stop of a stopped VM writes nothing";
  auto types = EventTypes("web");
  EXPECT_EQ(types, (std::vector<std::string>{"created", "starting", "launched", "started",
                                             "stopping", "stopped"}));
}

TEST_F(NodeLifecycleTest, StopKillsAGuestThatIgnoresTheShutdownRequest) {
  options_.stop_timeout = 100ms;
  NewNode();
  Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  driver_.obeys_shutdown = false;
  ASSERT_TRUE(node_->Stop("web", false));
  WaitFor("web", VmState::kStopped);
  auto events = *node_->Events("web", 1);
  EXPECT_NE(events.back().message.find("did not power off"), std::string::npos)
      << events.back().message;
}

TEST_F(NodeLifecycleTest, AVmmThatDiesIsRestartedOnFailure) {
  Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord first = WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(hv::SignalProcess({*first.pid, first.pid_start}, SIGKILL));
  // Seen within a second, restarted after the backoff, up again with a new process.
  VmRecord again = WaitForRestart("web", first.pid);
  ASSERT_EQ(again.state, VmState::kRunning);
  auto events = *node_->Events("web", 100);
  auto exited =
      std::find_if(events.begin(), events.end(), [](const Event& e) { return e.type == "exited"; });
  ASSERT_NE(exited, events.end());
  EXPECT_NE(exited->message.find("killed by signal 9"), std::string::npos) << exited->message;
  EXPECT_NE(exited->message.find("restarting in"), std::string::npos) << exited->message;
}

TEST_F(NodeLifecycleTest, RestartNeverLeavesTheVmFailedWithTheReason) {
  Create("web", RestartPolicy::kNever);
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord vm = WaitFor("web", VmState::kRunning);
  hv::SignalProcess({*vm.pid, vm.pid_start}, SIGKILL);
  VmRecord failed = WaitFor("web", VmState::kFailed);
  EXPECT_NE(failed.state_reason.find("killed by signal 9"), std::string::npos)
      << failed.state_reason;
  EXPECT_FALSE(failed.pid.has_value());
  EXPECT_EQ(driver_.launches.load(), 1);
}

TEST_F(NodeLifecycleTest, TheConsoleQuotedInAnExitIsEscapedAndBounded) {
  Create("web", RestartPolicy::kNever);
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord vm = WaitFor("web", VmState::kRunning);
  {
    // What a guest can print: a 10 MB line, then a retitle, a clear screen, colours, a C1 CSI and
    // a byte that is not UTF-8.
    std::ofstream console(paths_.console_log(vm.id), std::ios::app | std::ios::binary);
    console << std::string(10 << 20, 'A') << "\r\n";
    console << "\x1b]0;owned\x07\x1b[2J\x1b[31mKernel panic\xc2\x9b\xff\x1b[0m\r\n";
  }
  hv::SignalProcess({*vm.pid, vm.pid_start}, SIGKILL);
  VmRecord failed = WaitFor("web", VmState::kFailed);
  auto events = *node_->Events("web", 100);
  auto exited =
      std::find_if(events.begin(), events.end(), [](const Event& e) { return e.type == "exited"; });
  ASSERT_NE(exited, events.end());
  for (const std::string& text : {failed.state_reason, exited->message}) {
    EXPECT_LE(text.size(), 1024u);
    EXPECT_TRUE(std::none_of(text.begin(), text.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    })) << text;
    EXPECT_NE(text.find("\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mKernel panic\\u009b\\xff"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("AAAA...["), std::string::npos) << "the long line, cut: " << text;
  }
}

TEST_F(NodeLifecycleTest, ACrashLoopEndsFailed) {
  options_.crash_loop_limit = 2;
  NewNode();
  Create("web");
  driver_.boot = FakeDriver::Boot::kExit;  // every boot dies
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord failed = WaitFor("web", VmState::kFailed);
  EXPECT_NE(failed.state_reason.find("crash loop: restarted 2 times"), std::string::npos)
      << failed.state_reason;
  EXPECT_EQ(driver_.launches.load(), 3);  // the start and two restarts
}

TEST_F(NodeLifecycleTest, StopCancelsAStartThatHangs) {
  VmRecord vm = Create("web");
  driver_.boot = FakeDriver::Boot::kHang;
  ASSERT_TRUE(node_->Start("web", false));
  driver_.WaitFor([&] { return driver_.launches.load() > 0; }, 2s);
  auto r = node_->Stop("web", true);
  ASSERT_TRUE(r) << r.error().message;
  VmRecord stopped = WaitFor("web", VmState::kStopped);
  EXPECT_EQ(ProcessesOf(vm), 0u);
  EXPECT_NE(node_->Events("web", 1)->back().message.find("cancelled"), std::string::npos);
}

TEST_F(NodeLifecycleTest, WaitSettledAnswersWithTheVmOnceItLeavesItsTransition) {
  Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  auto running = node_->WaitSettled("web", 5s);
  ASSERT_TRUE(running) << running.error().message;
  EXPECT_EQ(running->state, VmState::kRunning);
  ASSERT_TRUE(node_->Suspend("web"));
  auto suspended = node_->WaitSettled("web", 5s);
  ASSERT_TRUE(suspended);
  EXPECT_EQ(suspended->state, VmState::kSuspended);
  ASSERT_TRUE(node_->Resume("web"));
  EXPECT_EQ(node_->WaitSettled("web", 5s)->state, VmState::kRunning);
  ASSERT_TRUE(node_->Stop("web", false));
  EXPECT_EQ(node_->WaitSettled("web", 5s)->state, VmState::kStopped);
  // A settled VM is answered at once.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(node_->WaitSettled("web", 5s)->state, VmState::kStopped);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);

  // One that stays in transition is answered as it is after the limit.
  driver_.boot = FakeDriver::Boot::kHang;
  ASSERT_TRUE(node_->Start("web", false));
  t0 = std::chrono::steady_clock::now();
  auto starting = node_->WaitSettled("web", 200ms);
  ASSERT_TRUE(starting);
  EXPECT_EQ(starting->state, VmState::kStarting);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  // A hearthd shutting down releases every waiter at once, whether it waits already or not.
  std::thread release([&] { node_->ReleaseWaiters(); });
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(node_->WaitSettled("web", 10s)->state, VmState::kStarting);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  release.join();
  ASSERT_TRUE(node_->Stop("web", true));
  WaitFor("web", VmState::kStopped);
  ASSERT_TRUE(node_->Delete("web", false));
  auto gone = node_->WaitSettled("web", 5s);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Code::kNotFound);
}

TEST_F(NodeLifecycleTest, AStopDuringStartWinsEvenIfTheGuestComesUpMeanwhile) {
  VmRecord vm = Create("web");
  driver_.ignore_cancel = true;
  driver_.boot_ms = 100;
  ASSERT_TRUE(node_->Start("web", false));
  auto r = node_->Stop("web", true);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->state, VmState::kStarting);
  VmRecord stopped = WaitFor("web", VmState::kStopped);
  EXPECT_FALSE(stopped.pid.has_value());
  EXPECT_EQ(ProcessesOf(vm), 0u);
}

TEST_F(NodeLifecycleTest, SuspendSavesStateEndsTheProcessAndResumeBringsItBack) {
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord running = WaitFor("web", VmState::kRunning);
  auto r = node_->Suspend("web");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->state, VmState::kSuspending);
  VmRecord suspended = WaitFor("web", VmState::kSuspended);
  ASSERT_TRUE(suspended.snapshot.has_value());
  EXPECT_GT(suspended.snapshot->bytes, 0);
  EXPECT_FALSE(suspended.pid.has_value());
  EXPECT_EQ(ProcessesOf(vm), 0u) << "a suspended VM has no process";
  EXPECT_TRUE(std::filesystem::exists(paths_.snapshot_dir(vm.id) / "manifest.json"));
  EXPECT_EQ(node_->Info().memory_running.value, 0) << "and holds no admitted memory";
  auto suspend_again = node_->Suspend("web");
  ASSERT_TRUE(suspend_again) << suspend_again.error().message;
  EXPECT_EQ(suspend_again->version, suspended.version) << "already suspended: nothing written";
  // Hardware edits would not fit the saved state.
  EditRequest edit;
  edit.fields = nlohmann::json{{"memory_mib", 512}};
  EXPECT_FALSE(node_->Edit("web", edit));

  ASSERT_TRUE(node_->Resume("web"));
  VmRecord resumed = WaitFor("web", VmState::kRunning);
  EXPECT_NE(resumed.pid, running.pid);
  EXPECT_FALSE(resumed.snapshot.has_value());
  EXPECT_FALSE(std::filesystem::exists(paths_.snapshot_dir(vm.id))) << "spent";
  auto resume_again = node_->Resume("web");
  ASSERT_TRUE(resume_again) << resume_again.error().message;
  EXPECT_EQ(resume_again->version, resumed.version) << "already running: nothing written";
  auto types = EventTypes("web");
  EXPECT_EQ(std::vector<std::string>(types.end() - 4, types.end()),
            (std::vector<std::string>{"suspending", "suspended", "resuming", "resumed"}));
}

TEST_F(NodeLifecycleTest, StartResumesASuspendedVmUnlessFreshAndStopDiscardsTheState) {
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  ASSERT_EQ(node_->Start("web", false)->state, VmState::kResuming);
  WaitFor("web", VmState::kRunning);

  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  ASSERT_EQ(node_->Start("web", true)->state, VmState::kStarting) << "--fresh cold-boots";
  EXPECT_FALSE(std::filesystem::exists(paths_.snapshot_dir(vm.id)));
  WaitFor("web", VmState::kRunning);

  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  auto stopped = node_->Stop("web", false);
  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_EQ(stopped->state, VmState::kStopped);
  EXPECT_FALSE(stopped->snapshot.has_value());
  EXPECT_FALSE(std::filesystem::exists(paths_.snapshot_dir(vm.id)));
}

TEST_F(NodeLifecycleTest, AFailedResumeKeepsTheSavedStateForARetry) {
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  driver_.fail_resume = true;
  ASSERT_TRUE(node_->Resume("web"));
  Eventually([&] { return !node_->Get("web")->state_reason.empty(); });
  VmRecord vm2 = *node_->Get("web");
  EXPECT_EQ(vm2.state, VmState::kSuspended);
  EXPECT_NE(vm2.state_reason.find("resume failed"), std::string::npos);
  EXPECT_TRUE(vm2.snapshot.has_value());
  driver_.fail_resume = false;
  ASSERT_TRUE(node_->Resume("web"));
  WaitFor("web", VmState::kRunning);
}

TEST_F(NodeLifecycleTest, AFailedSuspendLetsTheGuestRunOn) {
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord running = WaitFor("web", VmState::kRunning);
  driver_.fail_suspend = true;
  ASSERT_TRUE(node_->Suspend("web"));
  Eventually([&] { return node_->Get("web")->state == VmState::kRunning; });
  VmRecord after = *node_->Get("web");
  EXPECT_EQ(after.state, VmState::kRunning);
  EXPECT_EQ(after.pid, running.pid) << "the same VMM runs on";
  EXPECT_NE(after.state_reason.find("suspend failed"), std::string::npos) << after.state_reason;
  EXPECT_FALSE(after.snapshot.has_value());
  EXPECT_EQ(ProcessesOf(vm), 1u);
  EXPECT_FALSE(std::filesystem::exists(paths_.snapshot_staging(vm.id)));
  EXPECT_EQ(EventTypes("web").back(), "suspend_failed");
  driver_.fail_suspend = false;
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
}

TEST_F(NodeLifecycleTest, ASnapshotIsRestoredOnlyIntoTheMachineAndHypervisorItCameFrom) {
  VmRecord vm = Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  {
    std::lock_guard lock(driver_.mu);
    driver_.version = "fake 2.0";
  }
  auto refused = node_->Resume("web");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kFailedPrecondition);
  EXPECT_NE(refused.error().message.find("'fake 1.0'"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("--fresh"), std::string::npos);
  EXPECT_EQ(node_->Get("web")->state, VmState::kSuspended) << "nothing changed";
  {
    std::lock_guard lock(driver_.mu);
    driver_.version = "fake 1.0";
  }
  // A torn or altered device state is refused as well.
  {
    std::fstream state(paths_.snapshot_dir(vm.id) / "state", std::ios::in | std::ios::out);
    state.put('F');  // same size, other content
  }
  refused = node_->Start("web", false);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("SHA-256"), std::string::npos) << refused.error().message;
  ASSERT_TRUE(node_->Start("web", /*fresh=*/true));
  WaitFor("web", VmState::kRunning);
}

TEST_F(NodeLifecycleTest, BootAndResumeSetTheGuestClockOnceTheVmRuns) {
  Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  driver_.WaitFor([&] { return driver_.clock_syncs.load() > 0; }, 5s);
  EXPECT_EQ(driver_.clock_syncs.load(), 1) << "after the cold boot";
  ASSERT_TRUE(node_->Suspend("web"));
  WaitFor("web", VmState::kSuspended);
  ASSERT_TRUE(node_->Resume("web"));
  WaitFor("web", VmState::kRunning);
  driver_.WaitFor([&] { return driver_.clock_syncs.load() > 1; }, 5s);
  EXPECT_EQ(driver_.clock_syncs.load(), 2) << "after the resume";
  std::lock_guard lock(driver_.mu);
  EXPECT_TRUE(driver_.paused.empty()) << "the restored guest was continued";
}

TEST_F(NodeLifecycleTest, BootTimeoutFailsTheStart) {
  options_.boot_timeout = 100ms;
  NewNode();
  VmRecord vm = Create("web");
  driver_.boot = FakeDriver::Boot::kHang;
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord failed = WaitFor("web", VmState::kFailed);
  EXPECT_NE(failed.state_reason.find("did not report ready"), std::string::npos);
  EXPECT_EQ(ProcessesOf(vm), 0u);
}

TEST_F(NodeLifecycleTest, DeleteForceEndsTheProcessAndLeavesNothing) {
  VmRecord vm = Create("web", RestartPolicy::kOnFailure, 18080);
  ASSERT_TRUE(node_->Start("web", false));
  WaitFor("web", VmState::kRunning);
  ASSERT_TRUE(node_->Delete("web", true));
  EXPECT_FALSE(node_->Get("web"));
  EXPECT_EQ(ProcessesOf(vm), 0u);
  EXPECT_TRUE(network_.taps().empty());
  EXPECT_TRUE(network_.rules().publish.empty());
  EXPECT_FALSE(std::filesystem::exists(paths_.vm_dir(vm.id)));
}

// Many clients hammer one VM with every kind of request. Whatever interleaving happens, the VM
// ends in a settled state that matches reality: a running VM has exactly its one live process,
// any other state none, and the store agrees with what the node serves.
TEST_F(NodeLifecycleTest, ConcurrentRequestsOnOneVmLeaveItConsistent) {
  driver_.boot_ms = 3;
  for (int round = 0; round < 3; ++round) {
    VmRecord vm = Create("busy");
    std::atomic<bool> go{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t) {
      clients.emplace_back([&, t] {
        std::mt19937 rng(t * 7919 + round);
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < 60; ++i) {
          switch (rng() % 8) {
            case 0:
              node_->Start("busy", false);
              break;
            case 1:
              node_->Stop("busy", false);
              break;
            case 2:
              node_->Stop("busy", true);
              break;
            case 3: {
              EditRequest e;
              e.fields = nlohmann::json{{"memory_mib", 128 + 2 * static_cast<int>(rng() % 64)}};
              node_->Edit("busy", e);
              break;
            }
            case 4:
              node_->Get("busy");
              break;
            case 5:
              if (i > 50) node_->Delete("busy", true);
              break;
            case 6:
              node_->Suspend("busy");
              break;
            case 7:
              node_->Resume("busy");
              break;
          }
          // Jitter, so that the clients' requests interleave differently on every round.
          for (int spin = static_cast<int>(rng() % 64); spin > 0; --spin) std::this_thread::yield();
        }
      });
    }
    go = true;
    for (auto& c : clients) c.join();
    // Let the last transition settle.
    // Let the last transition settle, and what it ended exit.
    auto consistent = [&] {
      Result<VmRecord> vm_now = node_->Get("busy");
      if (!vm_now) return ProcessesOf(vm) == 0;
      size_t want = vm_now->state == VmState::kRunning ? 1 : 0;
      return !IsTransitional(vm_now->state) && ProcessesOf(vm) == want;
    };
    Eventually(consistent, 10s);
    Result<VmRecord> now = node_->Get("busy");
    if (!now) {
      EXPECT_EQ(ProcessesOf(vm), 0u);
      EXPECT_FALSE(*store_.GetVm("busy"));
      continue;
    }
    ASSERT_FALSE(IsTransitional(now->state)) << ToString(now->state);
    auto stored = store_.GetVm("busy");
    ASSERT_TRUE(stored && *stored);
    EXPECT_EQ(**stored, *now);
    if (now->state == VmState::kRunning) {
      ASSERT_TRUE(now->pid.has_value());
      EXPECT_TRUE(hv::IsAlive({*now->pid, now->pid_start}));
      EXPECT_EQ(ProcessesOf(vm), 1u);
    } else {
      EXPECT_FALSE(now->pid.has_value());
      EXPECT_EQ(ProcessesOf(vm), 0u) << ToString(now->state);
    }
    ASSERT_TRUE(node_->Delete("busy", true));
    EXPECT_EQ(ProcessesOf(vm), 0u);
  }
}

TEST_F(NodeLifecycleTest, ANewNodeReadoptsRunningVmsAndKeepsSupervisingThem) {
  Create("web");
  ASSERT_TRUE(node_->Start("web", false));
  VmRecord before = WaitFor("web", VmState::kRunning);
  NewNode();  // the old node goes away; its VMM keeps running
  VmRecord after = *node_->Get("web");
  EXPECT_EQ(after.state, VmState::kRunning);
  EXPECT_EQ(after.pid, before.pid);
  EXPECT_EQ(EventTypes("web").back(), "adopted");
  // The new node supervises it: a crash is seen and restarted.
  hv::SignalProcess({*before.pid, before.pid_start}, SIGKILL);
  WaitForRestart("web", before.pid);
  auto types = EventTypes("web");
  EXPECT_NE(std::find(types.begin(), types.end(), "exited"), types.end());
}

TEST_F(NodeLifecycleTest, AProcessThatVanishedWhileNoNodeRanIsRestartedByPolicy) {
  Create("web");
  Create("off", RestartPolicy::kNever);
  ASSERT_TRUE(node_->Start("web", false));
  ASSERT_TRUE(node_->Start("off", false));
  VmRecord web = WaitFor("web", VmState::kRunning);
  VmRecord off = WaitFor("off", VmState::kRunning);
  node_.reset();
  hv::SignalProcess({*web.pid, web.pid_start}, SIGKILL);
  hv::SignalProcess({*off.pid, off.pid_start}, SIGKILL);
  hv::WaitForExit({*web.pid, web.pid_start}, 2s);
  hv::WaitForExit({*off.pid, off.pid_start}, 2s);
  NewNode();
  WaitForRestart("web", web.pid);
  VmRecord failed = WaitFor("off", VmState::kFailed);
  EXPECT_NE(failed.state_reason.find("vanished while hearthd was down"), std::string::npos)
      << failed.state_reason;
}

TEST_F(NodeLifecycleTest, RecoveryRemovesLeftoversThatNoVmOwns) {
  VmRecord kept = Create("kept");
  // A VM directory, a VMM process and a tap from a VM that never got recorded.
  hv::MachineSpec ghost;
  ghost.vm_id = "vm-00000000deadbeef";
  ghost.name = "ghost";
  hv::UseLayout(ghost, paths_, ghost.vm_id);
  auto orphan = driver_.Launch(ghost);
  ASSERT_TRUE(orphan);
  ASSERT_TRUE(network_.EnsureTap({net::TapName(ghost.vm_id), {}, ""}));
  ASSERT_TRUE(network_.EnsureTap({net::TapName(kept.id), {}, ""}));
  NewNode();
  EXPECT_TRUE(hv::WaitForExit(*orphan, 2s));
  EXPECT_FALSE(std::filesystem::exists(ghost.vm_dir));
  EXPECT_EQ(network_.taps(), std::set<std::string>{net::TapName(kept.id)});
  EXPECT_TRUE(node_->Get("kept"));
}

}  // namespace
}  // namespace hearth::node
