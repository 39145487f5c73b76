// The HostSystem seam: the Linux implementation answers for this machine, and the fake's steady
// clock drives a thread waiting on a deadline without anyone sleeping.
#include "common/host_system.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "common/linux_host_system.h"
#include "fakes/fake_host_system.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;

TEST(LinuxHostSystemTest, AnswersForThisMachine) {
  HostSystem& host = LinuxHost();
  EXPECT_EQ(host.BootId(), ReadHostBootId());
  EXPECT_EQ(host.BootId().size(), 36u);
  EXPECT_EQ(host.CpuModel(), HostCpuModel());
  auto self = host.ProcessStartTime(getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(host.IsAlive({getpid(), *self}));
  auto echo = host.RunCommand({"echo", "hi"}, {});
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->out, "hi\n");
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  auto t0 = host.SteadyNow();
  EXPECT_FALSE(host.WaitUntil(cv, lock, t0 + 20ms, [] { return false; }));
  EXPECT_GE(host.SteadyNow() - t0, 20ms);
  EXPECT_TRUE(host.WaitUntil(cv, lock, t0 + 1h, [] { return true; }));
}

TEST(FakeHostSystemTest, BootCpuProcessesAndCommandsAreTheTests) {
  testing::FakeHostSystem host;
  host.SetBootId("boot-2");
  host.SetCpuModel("GenuineIntel family 6 model 85 stepping 7 (Xeon)");
  EXPECT_EQ(host.BootId(), "boot-2");
  EXPECT_EQ(host.CpuModel(), "GenuineIntel family 6 model 85 stepping 7 (Xeon)");

  ProcessId vmm = host.AddProcess("qemu-system-x86_64 -name /var/lib/hearth/vms/web");
  ProcessId other = host.AddProcess("sshd");
  EXPECT_TRUE(host.IsAlive(vmm));
  EXPECT_FALSE(host.IsAlive({vmm.pid, vmm.start_time + 1})) << "a recycled pid";
  EXPECT_EQ(host.FindProcesses("/vms/web"), std::vector<ProcessId>{vmm});
  ASSERT_TRUE(host.SignalProcess(vmm, SIGKILL));
  EXPECT_FALSE(host.IsAlive(vmm));
  EXPECT_TRUE(host.WaitForExit(vmm, 0ms));
  EXPECT_TRUE(host.FindProcesses("/vms/web").empty());
  host.SetSignalsEnd(false);
  ASSERT_TRUE(host.SignalProcess(other, SIGTERM));
  EXPECT_TRUE(host.IsAlive(other)) << "ignores SIGTERM";
  EXPECT_EQ(host.signals().size(), 2u);

  host.ScriptCommand("ip link", Fail(Code::kInternal, "`ip link` exited with status 1"));
  host.ScriptCommand("ip link show", CommandOutput{"1: lo\n", ""});
  EXPECT_EQ(host.RunCommand({"ip", "link", "show"}, {})->out, "1: lo\n");
  EXPECT_FALSE(host.RunCommand({"ip", "link", "del", "tap0"}, {}));
  EXPECT_TRUE(host.RunCommand({"true"}, {}));
  EXPECT_EQ(host.commands().size(), 3u);
  EXPECT_EQ(host.commands()[1], (std::vector<std::string>{"ip", "link", "del", "tap0"}));
}

TEST(FakeHostSystemTest, AdvancingTheClockWakesAThreadWaitingOnADeadline) {
  testing::FakeHostSystem host;
  std::mutex mu;
  std::condition_variable cv;
  bool woke = false, stop = false;
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    const auto deadline = host.SteadyNow() + 10s;
    bool stopped = host.WaitUntil(cv, lock, deadline, [&] { return stop; });
    woke = !stopped;
  });
  ASSERT_TRUE(host.AwaitWaiters(1));
  const auto t0 = host.SteadyNow();
  host.Advance(9s);
  EXPECT_EQ(host.SteadyNow() - t0, 9s);
  EXPECT_EQ(host.waiters(), 1u) << "the deadline is 1 s away";
  host.Advance(1s);
  waiter.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(host.waiters(), 0u);
}

TEST(FakeHostSystemTest, AProcessEndingWakesWaitForExitBeforeItsTimeout) {
  testing::FakeHostSystem host;
  ProcessId p = host.AddProcess("firecracker --id vm-1");
  bool exited = false;
  std::thread waiter([&] { exited = host.WaitForExit(p, 5s); });
  ASSERT_TRUE(host.AwaitWaiters(1));
  host.EndProcess(p);
  waiter.join();
  EXPECT_TRUE(exited);

  ProcessId stuck = host.AddProcess("firecracker --id vm-2");
  bool timed_out = false;
  std::thread timer([&] { timed_out = !host.WaitForExit(stuck, 5s); });
  ASSERT_TRUE(host.AwaitWaiters(1));
  host.Advance(5s);
  timer.join();
  EXPECT_TRUE(timed_out);
}

}  // namespace
}  // namespace hearth
