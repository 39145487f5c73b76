// Threads kept waiting for work that must start at once. Handing a job to a sleeping thread wakes
// it within microseconds; a newly created thread is queued behind the running ones instead (the
// scheduler places new tasks after them), which on a host with busy cores was measured at 2-4 ms
// before a wake's job first ran. Idle threads wait at a chosen nice value, so the job starts at
// that priority; a job may change its thread's priority, the thread restores it before waiting
// again.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hearth {

// Sets the calling thread's nice value (Linux keeps it per thread; new threads inherit it). False
// where that is not allowed (no CAP_SYS_NICE for a raise).
bool SetThreadNice(int nice);

class ReadyThreads {
 public:
  // Starts `keep` idle threads at nice value `nice` (left as is where not allowed).
  ReadyThreads(int keep, int nice);
  // Ends the threads; the jobs handed over must have ended (their owner waits for them).
  ~ReadyThreads();
  ReadyThreads(const ReadyThreads&) = delete;
  ReadyThreads& operator=(const ReadyThreads&) = delete;

  // Runs `job` on an idle thread, or on a new one when none is idle. Threads beyond `keep` end
  // once idle again.
  void Run(std::function<void()> job);

 private:
  void Loop();

  const int keep_;
  const int nice_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> jobs_;
  int idle_ = 0;
  int threads_ = 0;  // alive
  bool stop_ = false;
  std::condition_variable ended_;  // a thread ended (for the destructor)
};

}  // namespace hearth
