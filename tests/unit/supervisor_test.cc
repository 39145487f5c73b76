// VMM processes and their supervision, with real (sleep) processes: identity by pid + start time,
// exits reported through pidfds within milliseconds with their status, and the log capping that
// keeps console files bounded while a writer appends.
#include "hv/supervisor.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <condition_variable>
#include <csignal>
#include <fstream>
#include <thread>

#include "fakes/fake_host_system.h"
#include "hv/console_log.h"
#include "support/temp_dir.h"

namespace hearth::hv {
namespace {

using namespace std::chrono_literals;

struct Exits {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<ProcessId, ExitStatus>> seen;
  std::chrono::steady_clock::time_point last;

  Supervisor::OnExit Callback() {
    return [this](const ProcessId& p, const ExitStatus& s) {
      std::lock_guard lock(mu);
      seen.emplace_back(p, s);
      last = std::chrono::steady_clock::now();
      cv.notify_all();
    };
  }
  bool WaitFor(size_t n, std::chrono::milliseconds limit = 2s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return seen.size() >= n; });
  }
};

TEST(ProcessTest, SpawnedProcessIsIdentifiedByPidAndStartTime) {
  auto p = Spawn({"sleep", "30"}, {});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(IsAlive(*p));
  EXPECT_FALSE(IsAlive(ProcessId{p->pid, p->start_time + 1})) << "a recycled pid is not the VM";
  EXPECT_EQ(getsid(static_cast<pid_t>(p->pid)), p->pid) << "its own session: outlives hearthd";
  ASSERT_TRUE(SignalProcess(*p, SIGKILL));
  EXPECT_TRUE(WaitForExit(*p, 2s));
  EXPECT_FALSE(IsAlive(*p));
}

TEST(ProcessTest, ExecFailureIsAnErrorNamingTheProgram) {
  auto p = Spawn({"/nonexistent/qemu"}, {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnavailable);
  EXPECT_NE(p.error().message.find("/nonexistent/qemu"), std::string::npos);
}

TEST(SupervisorTest, ReportsExitsWithinMillisecondsAndTheirStatus) {
  Exits exits;
  Supervisor supervisor(exits.Callback());
  auto killed = Spawn({"sleep", "30"}, {});
  auto failed = Spawn({"sh", "-c", "sleep 0.2; exit 3"}, {});
  ASSERT_TRUE(killed && failed);
  ASSERT_TRUE(supervisor.Watch(*killed));
  ASSERT_TRUE(supervisor.Watch(*failed));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(SignalProcess(*killed, SIGKILL));
  ASSERT_TRUE(exits.WaitFor(1));
  auto latency = std::chrono::duration_cast<std::chrono::microseconds>(exits.last - t0);
  std::cout << "exit seen " << latency.count() << " us after the kill\n";
  EXPECT_LT(latency, 1s);
  ASSERT_TRUE(exits.WaitFor(2));
  std::lock_guard lock(exits.mu);
  EXPECT_EQ(exits.seen[0].first, *killed);
  EXPECT_EQ(exits.seen[0].second.signal, SIGKILL);
  EXPECT_FALSE(exits.seen[0].second.clean());
  EXPECT_EQ(exits.seen[1].first, *failed);
  EXPECT_EQ(exits.seen[1].second.code, 3);
  EXPECT_EQ(exits.seen[1].second.Describe(), "exited with code 3");
  EXPECT_EQ(supervisor.watched(), 0u);
}

TEST(SupervisorTest, AProcessAlreadyGoneIsReportedToo) {
  Exits exits;
  Supervisor supervisor(exits.Callback());
  auto p = Spawn({"true"}, {});
  ASSERT_TRUE(p);
  // Its pidfd turns readable once it has exited: a zombie until reaped.
  ASSERT_TRUE(WaitForExit(*p, 2s));
  ASSERT_FALSE(IsAlive(*p));
  ASSERT_TRUE(supervisor.Watch(*p));
  ASSERT_TRUE(exits.WaitFor(1));
  std::lock_guard lock(exits.mu);
  EXPECT_TRUE(exits.seen[0].second.clean()) << exits.seen[0].second.Describe();
}

// Counts the supervisor's ticks.
struct Ticks {
  std::mutex mu;
  std::condition_variable cv;
  int count = 0;

  Supervisor::OnTick Callback() {
    return [this] {
      std::lock_guard lock(mu);
      ++count;
      cv.notify_all();
    };
  }
  bool WaitFor(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return count >= n; });
  }
  int seen() {
    std::lock_guard lock(mu);
    return count;
  }
};

TEST(SupervisorTest, TicksEveryIntervalOfTheHostsSteadyClock) {
  testing::FakeHostSystem host;
  Exits exits;
  Ticks ticks;
  Supervisor supervisor(host, exits.Callback(), ticks.Callback(), 5s);
  ASSERT_TRUE(host.AwaitWaiters(1)) << "the supervisor waits for its first tick";
  host.Advance(4s);
  ASSERT_TRUE(host.AwaitWaiters(1));
  EXPECT_EQ(ticks.seen(), 0) << "4 s of 5 passed";
  host.Advance(1s);
  ASSERT_TRUE(ticks.WaitFor(1));
  // The next tick is due 5 s after this one.
  ASSERT_TRUE(host.AwaitWaiters(1));
  host.Advance(5s);
  ASSERT_TRUE(ticks.WaitFor(2));
  ASSERT_TRUE(host.AwaitWaiters(1));
  EXPECT_EQ(ticks.seen(), 2);

  // Exits are reported between ticks, on the same thread, without the clock moving.
  auto p = Spawn({"true"}, {});
  ASSERT_TRUE(p);
  ASSERT_TRUE(supervisor.Watch(*p));
  ASSERT_TRUE(exits.WaitFor(1));
  EXPECT_EQ(ticks.seen(), 2);
}

TEST(ConsoleLogTest, CapKeepsTheNewestBytesWhileAWriterAppends) {
  testing::TempDir dir;
  auto path = dir / "console.log";
  const int64_t cap = 64 * 1024;
  // An appending writer, like QEMU's file chardev with append=on.
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(AppendLine(path, "line " + std::to_string(i)));
  ASSERT_TRUE(CapLog(path, cap));
  ASSERT_TRUE(AppendLine(path, "after the cap"));
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_LE(st.st_blocks * 512, cap + 8192) << "disk use is bounded";
  std::string tail = ReadTail(path, 1 << 20);
  EXPECT_LE(static_cast<int64_t>(tail.size()), cap);
  EXPECT_NE(tail.find("line 19999\nafter the cap\n"), std::string::npos);
  EXPECT_EQ(tail.find("\nline 10\n"), std::string::npos) << "the oldest lines are gone";
  EXPECT_EQ(LastLines(path, 2), "line 19999 | after the cap");
}

TEST(ConsoleLogTest, SmallOrMissingLogsAreLeftAlone) {
  testing::TempDir dir;
  EXPECT_TRUE(CapLog(dir / "missing.log", 1024));
  ASSERT_TRUE(AppendLine(dir / "small.log", "hello"));
  EXPECT_TRUE(CapLog(dir / "small.log", 1024));
  EXPECT_EQ(ReadTail(dir / "small.log", 100), "hello\n");
}

}  // namespace
}  // namespace hearth::hv
