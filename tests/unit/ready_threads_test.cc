#include "common/ready_threads.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <latch>
#include <mutex>

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
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < kJobs; ++i) {
    threads.Run([&] {
      all_running.count_down();
      all_running.wait();  // deadlocks unless every job has a thread of its own
      std::lock_guard lock(mu);
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 5s, [&] { return done == kJobs; })) << done << " of " << kJobs;
}

}  // namespace
}  // namespace hearth
