#include "common/ready_threads.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>

namespace hearth {
namespace {

using namespace std::chrono_literals;

TEST(ReadyThreadsTest, JobsRunAtTheChosenPriorityAndMayChangeItForTheirOwnTime) {
  ReadyThreads threads(1, 5);  // a nice value anyone may set
  for (int round = 0; round < 3; ++round) {
    std::promise<int> seen;
    threads.Run([&] {
      seen.set_value(getpriority(PRIO_PROCESS, 0));
      setpriority(PRIO_PROCESS, 0, 7);  // the next job starts at 5 again
    });
    EXPECT_EQ(seen.get_future().get(), 5) << round;
  }
}

TEST(ReadyThreadsTest, MoreJobsThanKeptThreadsAllRunAtOnce) {
  ReadyThreads threads(2, 0);
  constexpr int kJobs = 8;
  std::latch all_running(kJobs);
  std::atomic<int> done{0};
  for (int i = 0; i < kJobs; ++i) {
    threads.Run([&] {
      all_running.count_down();
      all_running.wait();  // deadlocks unless every job has a thread of its own
      ++done;
    });
  }
  for (auto until = std::chrono::steady_clock::now() + 5s;
       done.load() < kJobs && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(done.load(), kJobs);
}

}  // namespace
}  // namespace hearth
