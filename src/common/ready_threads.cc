#include "common/ready_threads.h"

#include <sys/resource.h>

namespace hearth {

bool SetThreadNice(int nice) { return setpriority(PRIO_PROCESS, 0, nice) == 0; }

ReadyThreads::ReadyThreads(int keep, int nice) : keep_(keep), nice_(nice) {
  std::lock_guard lock(mu_);
  for (int i = 0; i < keep_; ++i) {
    ++threads_;
    std::thread([this] { Loop(); }).detach();
  }
}

ReadyThreads::~ReadyThreads() {
  std::unique_lock lock(mu_);
  stop_ = true;
  work_.notify_all();
  ended_.wait(lock, [&] { return threads_ == 0; });
}

void ReadyThreads::Run(std::function<void()> job) {
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(job));
  // Idle threads that were woken but have not taken their job yet still count as idle.
  if (jobs_.size() <= static_cast<size_t>(idle_)) {
    work_.notify_one();
    return;
  }
  ++threads_;
  std::thread([this] { Loop(); }).detach();
}

void ReadyThreads::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_;
    lock.unlock();
    SetThreadNice(nice_);
    lock.lock();
    work_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) break;  // stopping
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;
    lock.lock();
    if (stop_ || idle_ >= keep_) break;  // enough wait already
  }
  --threads_;
  ended_.notify_all();
}

}  // namespace hearth
